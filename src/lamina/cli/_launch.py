"""The `lamina` entry point, kept lean: `lamina run` starts here without click.

Start-up is a cost every `lamina run --rm IMAGE true` pays before runc starts anything, and
click alone (with the `inspect`, `gettext`, `uuid` and `datetime` it loads) costs about as
much CPU as runc's whole run. So `main` parses a `run` command line itself, from the same
table the click command is made of (`RUN_OPTIONS`), and hands everything else — any other
command, `--help`, `--version`, and any `run` line it does not fully understand (an
unknown or malformed option, a missing image) — to click, which then parses the same words
and reports its own errors. Both paths end in `run_container`, one implementation.

This module imports nothing beyond the standard library's lightest modules: the API is
loaded only once a command is known to run.
"""

from __future__ import annotations

import os
import sys
from _thread import allocate_lock

from lamina import _lightctx as contextlib
from lamina.errors import LaminaError

# Not `typing`'s, nor `pathlib`, `contextlib` or `collections.abc` at run time: each costs
# milliseconds of every `lamina run` (tests/integration/runtime's import guard).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from importlib.machinery import ModuleSpec
    from pathlib import Path
    from typing import Any, NoReturn, TypeVar

    from lamina.api import Lamina, RunHost, RunOptions

    T = TypeVar("T")

# kind: "flag" (True when given), "value" (the last one given), "multi" (a tuple of every
# one given), "int", "path" (a multi of paths), or a tuple of the values it may take.
# (flags, parameter name, kind, help): `lamina run`'s options, in `--help`'s order.
RUN_OPTIONS: tuple[tuple[tuple[str, ...], str, Any, str], ...] = (
    (("--rm",), "remove", "flag", "Remove the container when it exits."),
    (("-d", "--detach"), "detach", "flag", "Run in the background; print the ID."),
    (("-i", "--interactive"), "interactive", "flag", "Keep stdin open (pass it on)."),
    (("-t", "--tty"), "tty", "flag", "Allocate a pseudo-terminal."),
    (("--name",), "name", "value", "Name the container."),
    (("-e", "--env"), "env", "multi", "Set K=V (K alone: from this environment)."),
    (("--env-file",), "env_file", "path", "Read env."),
    (("-w", "--workdir"), "workdir", "value", "Working directory inside the container."),
    (("-u", "--user"), "user", "value", "USER[:GROUP], by name or number."),
    (("--entrypoint",), "entrypoint", "value", "Override the image's ENTRYPOINT ('' clears it)."),
    (("--network",), "network", ("host", "none"), "Network (default host)."),
    (("-v", "--volume"), "volumes", "multi", "HOST:CTR[:ro] bind mount."),
    (("--read-only",), "read_only", "flag", "Mount the root file system read-only."),
    (("-h", "--hostname"), "hostname", "value", "Container host name."),
    (("--init",), "init", "flag", "Run an init (tini) as PID 1."),
    (("--stop-signal",), "stop_signal", "value", "Signal to stop the container."),
    (("--stop-timeout",), "stop_timeout", "int", "Seconds before SIGKILL on stop."),
    (("--security-opt",), "security_opts", "multi", "no-new-privileges."),
)
_BY_FLAG = {flag: (dest, kind) for flags, dest, kind, _ in RUN_OPTIONS for flag in flags}


def _defaults() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, dest, kind, _ in RUN_OPTIONS:
        out[dest] = False if kind == "flag" else () if kind in ("multi", "path") else None
    return out


def _take(params: dict[str, Any], dest: str, kind: Any, value: str) -> bool:
    """Store one option value as click would; False when click should judge it instead."""
    if kind in ("multi", "path"):
        if kind == "path" and not value:
            return False
        if kind == "path":
            from pathlib import Path  # (only when an --env-file is given: click's type)

            params[dest] = (*params[dest], Path(value))
        else:
            params[dest] = (*params[dest], value)
    elif kind == "int":
        digits = value[1:] if value[:1] in "+-" else value
        if not (digits.isascii() and digits.isdigit()):
            return False
        params[dest] = int(value)
    elif isinstance(kind, tuple):
        if value not in kind:
            return False
        params[dest] = value
    else:
        params[dest] = value
    return True


def _apply(
    params: dict[str, Any], flag: str, attached: str | None, args: list[str], i: int
) -> int | None:
    """Apply option `flag` (its value `attached` to it, else the word at `i`): the index
    of the next word, or None when click should judge the option instead."""
    known = _BY_FLAG.get(flag)
    if known is None:
        return None  # --help, or an option click will name
    dest, kind = known
    if kind == "flag":
        if attached is not None:
            return None
        params[dest] = True
        return i
    if attached is None:
        if i >= len(args):
            return None
        attached, i = args[i], i + 1
    return i if _take(params, dest, kind, attached) else None


def parse_run_args(args: list[str]) -> dict[str, Any] | None:
    """`lamina run`'s words (after `run`) as the click command's parameters, or None when
    anything is not plainly valid (click then parses them and says what is wrong)."""
    params = _defaults()
    i: int | None = 0
    while i is not None and i < len(args):
        word = args[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        i += 1
        if word.startswith("--"):
            flag, eq, value = word.partition("=")
            i = _apply(params, flag, value if eq else None, args, i)
            continue
        # A cluster of short options: flags, then at most one that takes a value (the
        # rest of the word, else the next word).
        for j in range(1, len(word)):
            flag = "-" + word[j]
            if _BY_FLAG.get(flag, ("", ""))[1] == "flag":
                i = _apply(params, flag, None, args, i)
            else:
                i = _apply(params, flag, word[j + 1 :] or None, args, i)
                break
            if i is None:
                break
    if i is None or i >= len(args):
        return None  # no image: click says "Missing argument"
    params["image"] = args[i]
    params["command"] = tuple(args[i + 1 :])
    return params


def parse_global(argv: list[str]) -> tuple[str | None, bool, list[str]] | None:
    """(--root, --debug, the rest from the command on) when `argv` (without the program
    name) runs `run` with only these global options before it; None otherwise."""
    root: str | None = None
    debug = False
    i = 0
    while i < len(argv) and argv[i] != "run":
        word = argv[i]
        if word == "--debug":
            debug = True
        elif word == "--root" and i + 1 < len(argv) and argv[i + 1]:
            root = argv[i + 1]
            i += 1
        elif word.startswith("--root=") and len(word) > len("--root="):
            root = word[len("--root=") :]
        else:
            return None
        i += 1
    if i >= len(argv):
        return None
    if root is None:
        env = os.environ.get("LAMINA_ROOT")
        if env is not None:
            if not env:
                return None  # what click makes of an empty variable is click's to say
            root = env
    if root is not None and os.path.isfile(root):
        return None  # click's "is a file"
    return root, debug, argv[i + 1 :]


def print_error(message: str, hint: str | None) -> None:
    """One error line (and its hint) on stderr, in colour where rich would use it."""
    # rich is imported only when there is something to render: start-up time is a
    # cost every command pays, and a cached build is measured in tens of milliseconds.
    from rich.console import Console
    from rich.text import Text

    stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    stderr.print(Text.assemble(("Error: ", "bold red"), message))
    if hint:
        stderr.print(Text.assemble(("hint: ", "dim"), hint))


def migration_progress(done: int, total: int, diff_id: str) -> None:
    """A store from before the lean model is migrated once, on first use: say so."""
    if done < total:
        print(f"\rmigrating the store: layer {done + 1}/{total} {diff_id[7:19]}",
              end="", file=sys.stderr, flush=True)  # fmt: skip
    else:
        print(f"\rmigrated the store: {total} layers unpacked{' ' * 20}", file=sys.stderr)


def fetch_notice(line: str) -> None:
    """A lazy layer (a registry holds it) is being fetched because something needs it."""
    print(f"lamina: {line}", file=sys.stderr, flush=True)


class Context:
    """What the global options select: the root (the API opened on first use) and --debug."""

    def __init__(self, root: str | Path | None, debug: bool) -> None:
        self.root = root
        self.debug = debug
        self._api: Lamina | None = None
        self._host: RunHost | None = None

    def host(self) -> Lamina | RunHost:
        """For `run`: the root opened light (`RunHost`: the container rows, not the whole
        store) where it can be, else the whole API; what dead processes left goes first."""
        if self._api is not None:
            return self._api
        if self._host is None:
            from lamina.api import RunHost

            host = RunHost.open(self.root, progress=migration_progress, notice=fetch_notice)
            if host is None:
                return self.api()
            self._host = host
            for line in host.recover():
                print(f"lamina: {line}", file=sys.stderr)
        return self._host

    def api(self) -> Lamina:
        # Imported here so `lamina --help` and usage errors stay fast.
        from lamina.api import Lamina

        if self._api is None:
            from pathlib import Path

            root = Path(self.root) if self.root is not None else None
            self._api = Lamina(root, progress=migration_progress)
            self._api.lazy_layers.notice = fetch_notice
            # What dead lamina processes left on this root goes first, one line each.
            for line in self._api.recover():
                print(f"lamina: {line}", file=sys.stderr)
        return self._api


def fail(exc: LaminaError, code: int) -> NoReturn:
    print_error(exc.message, exc.hint)
    sys.exit(code)


def reporting(call: Callable[[], T], failure: int) -> T:
    """`call()`; a process that could not start exits with Docker's code for it (125, 126,
    127: ContainerExit), any other LaminaError with `failure`, one line on stderr."""
    from lamina.api import ContainerExit

    try:
        return call()
    except ContainerExit as e:
        fail(e, e.code)
    except LaminaError as e:
        fail(e, failure)


def check_tty(interactive: bool, tty: bool, detach: bool) -> None:
    """Docker's check before attaching: `-it` with a stdin that is no terminal cannot give
    the container its terminal; one line and exit 1, before anything is created."""
    if interactive and tty and not detach and not os.isatty(0):
        print_error("the input device is not a TTY", None)
        sys.exit(1)


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    """Put the terminal in raw mode while a `-t` container is attached; restore it after."""
    if not enabled or not os.isatty(0):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(0)
    tty.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def run_options(params: dict[str, Any]) -> RunOptions:
    """The click command's parameters (`run`'s, `create`'s) as the API's options."""
    from lamina.api import RunOptions

    p = params
    return RunOptions(
        image=p["image"], command=p["command"], name=p["name"], detach=p.get("detach", False),
        remove=p["remove"], interactive=p["interactive"], tty=p["tty"], env=p["env"],
        env_files=p["env_file"], workdir=p["workdir"], user=p["user"],
        entrypoint=p["entrypoint"], network=p["network"], volumes=p["volumes"],
        read_only=p["read_only"], hostname=p["hostname"], init=p["init"],
        stop_signal=p["stop_signal"], stop_timeout=p["stop_timeout"],
        security_opts=p["security_opts"],
    )  # fmt: skip


def run_container(obj: Context, params: dict[str, Any]) -> None:
    """`lamina run` once its words are parameters (the click command's names): exits with
    the container's status (125 lamina failed, 126 not invokable, 127 not found)."""
    from lamina.api import Attach

    opts = run_options(params)
    check_tty(opts.interactive, opts.tty, opts.detach)
    attach = Attach(0 if opts.interactive else None, 1, 2)

    def attached() -> tuple[str, int | None]:
        with raw_terminal(opts.tty and opts.interactive and not opts.detach):
            return obj.host().containers.run(opts, attach)

    cid, code = reporting(attached, 125)
    if opts.detach:
        print(cid, flush=True)
        return
    sys.exit(code or 0)


def exit_now(code: object) -> None:
    """End a container command without the interpreter's teardown (module and object
    finalization, the database's checkpoint on close: tens of milliseconds of every
    `lamina run`). Nothing it started needs it: its records are committed, its output is
    written by the monitor or flushed here, and the monitor owns the container."""
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code or 0)


def _run_fast(parsed: tuple[str | None, bool, dict[str, Any]]) -> None:
    root, debug, params = parsed
    # A run command makes no garbage that needs the cycle collector before it exits (and
    # exits with os._exit): without it, loading the run path's modules takes about 5% fewer
    # instructions (the collector walks every young object the imports make). A monitor
    # it forks turns it back on (`lamina.runtime._monitor`): that process may live long.
    import gc

    gc.disable()
    try:
        run_container(Context(root, debug), params)
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 1
    except LaminaError as exc:  # from the API's opening (a bad root, a locked store)
        if debug or os.environ.get("LAMINA_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        print_error(exc.message, exc.hint)
        code = 1
    exit_now(code)


def load_site() -> None:
    """What `site` does when Python starts (site-packages and their `.pth` files, the user's
    site, `sitecustomize`), done now where Python started without it (`python -S`: the
    launcher `make venv` installs, `lamina.cli._script`). Nothing where it was done."""
    global _site_loaded
    with _lock:
        if _site_loaded:
            return
        if _SiteOnDemand in sys.meta_path:
            sys.meta_path.remove(_SiteOnDemand)
        try:
            import site

            site.main()
        finally:
            _site_loaded = True


# (Under -S, only `load_site` or the launcher, where lamina was not where it said, load it.)
_site_loaded = not sys.flags.no_site or "site" in sys.modules
_lock = allocate_lock()


class _SiteOnDemand:
    """Last of the import system's finders while `site` is not loaded: a top-level module
    that no other finder finds (click, rich, httpx: a command or an error message that needs
    them) loads `site` and is looked for again. `lamina run` needs none: it runs without."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if path is not None or _site_loaded:
            return None  # a submodule: its package was found, `site` adds nothing to that
        load_site()
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                return spec  # type: ignore[no-any-return]
        return None


def main() -> None:
    """Run the CLI: a LaminaError is one line (and a hint) on stderr and exit status 1."""
    if not _site_loaded and _SiteOnDemand not in sys.meta_path:
        sys.meta_path.append(_SiteOnDemand)
    front = parse_global(sys.argv[1:])
    if front is not None:
        params = parse_run_args(front[2])
        if params is not None:
            _run_fast((front[0], front[1], params))
            return
    load_site()  # click and every other command: as Python with `site` would run them
    from lamina.cli._main import main as click_main

    click_main()

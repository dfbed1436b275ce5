"""Metadata instructions as config changes, and history text as BuildKit writes it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lamina.dockerfile import (
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
    run_script,
    single_heredoc,
)
from lamina.oci import ImageConfig

DEFAULT_SHELL = ("/bin/sh", "-c")
# Docker's default PATH (lamina.runtime.DEFAULT_PATH, kept here so that a cached build
# does not load the runtime).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HISTORY_COMMENT = "buildkit.dockerfile.v0"


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\"}  # fmt: skip


def _go_quote(text: str) -> str:
    """Go's strconv.Quote: printable runes as they are, the rest escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code < 0xE000:  # not a valid rune: Go prints U+FFFD
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _go_list(items: Sequence[str]) -> str:
    """Go's `%q` of a []string, which BuildKit uses for CMD and ENTRYPOINT history."""
    return "[" + " ".join(_go_quote(s) for s in items) + "]"


def _go_duration(ns: int) -> str:
    """Go's time.Duration.String(): 0s, 250ms, 1.5µs, 1m30s, 2h0m0s."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def frac(value: int, digits: int) -> str:  # value / 10**digits, trailing zeros dropped
        whole, rest = divmod(value, 10**digits)
        tail = str(rest).rjust(digits, "0").rstrip("0")
        return f"{whole}.{tail}" if tail else str(whole)

    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{frac(u, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{frac(u, 6)}ms"
    secs, rest = divmod(u, 1_000_000_000)
    out = frac((secs % 60) * 1_000_000_000 + rest, 9) + "s"
    minutes, hours = (secs // 60) % 60, secs // 3600
    if secs >= 60:
        out = f"{minutes}m{out}"
    if hours:
        out = f"{hours}h{out}"
    return sign + out


# The fields of BuildKit's typed image (dockerspec.DockerOCIImage); all but these are
# dropped when it reads a base image, and the runtime ones are omitempty.
_IMAGE_FIELDS = (
    "created", "author", "architecture", "os", "os.version", "os.features", "variant",
    "config", "rootfs", "history",
)  # fmt: skip
_RUNTIME_FIELDS = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal", "ArgsEscaped", "Healthcheck", "OnBuild", "Shell",
)  # fmt: skip
_HEALTHCHECK_FIELDS = ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries")


def base_config(config: ImageConfig) -> ImageConfig:
    """A base image's config as BuildKit carries it into a build: read into its typed image
    and written back, so what other builders added (container_config, docker_version,
    Hostname, Image, ...) is gone and empty fields are left out."""
    doc = config.to_json()
    out: dict[str, Any] = {
        k: doc[k] for k in _IMAGE_FIELDS
        if k in doc and (doc[k] or k in ("architecture", "os", "config", "rootfs"))
    }  # fmt: skip
    runtime: dict[str, Any] = doc["config"] if isinstance(doc.get("config"), dict) else {}
    kept = {k: runtime[k] for k in _RUNTIME_FIELDS if runtime.get(k)}
    if isinstance(kept.get("Healthcheck"), dict):
        check = kept["Healthcheck"]
        kept["Healthcheck"] = {k: check[k] for k in _HEALTHCHECK_FIELDS if check.get(k)}
    out["config"] = kept
    return ImageConfig(out)


def shell_of(config: ImageConfig) -> tuple[str, ...]:
    shell = config.container_field("Shell")
    return tuple(shell) if shell else DEFAULT_SHELL


def command_argv(command: Sequence[str], shell_form: bool, config: ImageConfig) -> list[str]:
    """Exec form as written; shell form wrapped in the stage's SHELL."""
    if shell_form:
        return [*shell_of(config), command[0] if command else ""]
    return list(command)


def run_argv(run: Run, config: ImageConfig) -> list[str]:
    """What RUN executes (and its history shows): a lone heredoc starting with #! is
    mounted at /dev/pipes/NAME and run from there, as BuildKit's dispatchRun does."""
    if not run.shell_form:
        return list(run.command)
    doc = single_heredoc(run)
    if doc is not None and doc.content.startswith("#!"):
        return [*shell_of(config), f"/dev/pipes/{doc.name}"]
    return [*shell_of(config), run_script(run)]


def _env_list(config: ImageConfig, pairs: Sequence[tuple[str, str]]) -> list[str]:
    """BuildKit's addEnv: a variable already set is replaced where it stands (`ENV PATH=...`
    keeps PATH first), a new one goes last."""
    env: list[str] = list(config.container_field("Env") or [])
    for key, value in pairs:
        at = next((i for i, e in enumerate(env) if e.partition("=")[0] == key), None)
        if at is None:
            env.append(f"{key}={value}")
        else:
            env[at] = f"{key}={value}"
    return env


def apply_metadata(config: ImageConfig, inst: Instruction, cmd_set: bool) -> ImageConfig:
    """The config after a metadata instruction (RUN, COPY, ADD and ARG leave it alone)."""
    if isinstance(inst, Env):
        return config.with_container_config(Env=_env_list(config, inst.pairs))
    if isinstance(inst, Label):
        labels = dict(config.container_field("Labels") or {})
        labels.update(inst.pairs)
        return config.with_container_config(Labels=labels)
    if isinstance(inst, Cmd):
        return config.with_container_config(Cmd=command_argv(inst.command, inst.shell_form, config))
    if isinstance(inst, Entrypoint):
        changes: dict[str, Any] = {
            "Entrypoint": command_argv(inst.command, inst.shell_form, config)
        }
        if not cmd_set:
            changes["Cmd"] = None
        return config.with_container_config(**changes)
    if isinstance(inst, Expose):
        ports = dict(config.container_field("ExposedPorts") or {})
        ports.update({p: {} for p in inst.ports})
        return config.with_container_config(ExposedPorts=ports)
    if isinstance(inst, Volume):
        volumes = dict(config.container_field("Volumes") or {})
        volumes.update({p: {} for p in inst.paths})
        return config.with_container_config(Volumes=volumes)
    if isinstance(inst, User):
        user = inst.user if inst.group is None else f"{inst.user}:{inst.group}"
        return config.with_container_config(User=user)
    if isinstance(inst, Workdir):
        return config.with_container_config(WorkingDir=inst.path)
    if isinstance(inst, Shell):
        return config.with_container_config(Shell=list(inst.argv))
    if isinstance(inst, Stopsignal):
        from lamina.runtime import parse_signal

        parse_signal(inst.signal)  # refused as moby's and BuildKit's dispatchers refuse it
        return config.with_container_config(StopSignal=inst.signal)
    if isinstance(inst, Healthcheck):
        check: dict[str, Any] = {"Test": list(inst.test)}
        for name, value in (
            ("Interval", inst.interval_ns),
            ("Timeout", inst.timeout_ns),
            ("StartPeriod", inst.start_period_ns),
            ("StartInterval", inst.start_interval_ns),
            ("Retries", inst.retries),
        ):
            if value:
                check[name] = value
        return config.with_container_config(Healthcheck=check)
    if isinstance(inst, Maintainer):  # BuildKit's dispatchMaintainer: image.Author, no label
        return config.with_fields(author=inst.name)
    if isinstance(inst, Onbuild):
        triggers = list(config.container_field("OnBuild") or [])
        triggers.append(inst.trigger)
        return config.with_container_config(OnBuild=triggers)
    return config


def created_by(inst: Instruction, config: ImageConfig, args: Sequence[tuple[str, str]] = ()) -> str:
    """The history `created_by` for `inst` as BuildKit writes it, with lamina's name where
    BuildKit puts its own (`RUN /bin/sh -c make # lamina`); config = the config before it."""
    if isinstance(inst, Run):
        argv = run_argv(inst, config)
        prefix = ""
        if args:
            prefix = f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in args) + " "
        return "RUN " + prefix + " ".join(argv) + " # lamina"
    if isinstance(inst, Copy):
        # BuildKit's convert_copy.go: --parents, --chown, --chmod (never --from), the path
        # sources, then each heredoc source as <<NAME, then the destination.
        words = ["ADD" if inst.is_add else "COPY"]
        if inst.parents:
            words.append("--parents")
        for flag, value in (("--chown", inst.chown), ("--chmod", inst.chmod)):
            if value:
                words.append(f"{flag}={value}")
        words.extend(s for s in inst.sources if not s.startswith("<<"))
        words.extend(f"<<{d.name}" for d in inst.heredocs)
        words.append(inst.dest)
        return " ".join(words) + " # lamina"
    if isinstance(inst, Env):
        return "ENV " + " ".join(f"{k}={v}" for k, v in inst.pairs)
    if isinstance(inst, Arg):
        return "ARG " + " ".join(k if v is None else f"{k}={v}" for k, v in inst.args)
    if isinstance(inst, Label):
        return "LABEL " + " ".join(f"{k}={v}" for k, v in inst.pairs)
    if isinstance(inst, Cmd):
        return "CMD " + _go_list(command_argv(inst.command, inst.shell_form, config))
    if isinstance(inst, Entrypoint):
        return "ENTRYPOINT " + _go_list(command_argv(inst.command, inst.shell_form, config))
    if isinstance(inst, Expose):
        return "EXPOSE [" + " ".join(inst.ports) + "]"  # BuildKit: Sprintf("%v") of the list
    if isinstance(inst, Volume):
        return "VOLUME [" + " ".join(inst.paths) + "]"
    if isinstance(inst, User):
        return "USER " + (inst.user if inst.group is None else f"{inst.user}:{inst.group}")
    if isinstance(inst, Workdir):
        return "WORKDIR " + inst.path
    if isinstance(inst, Shell):
        return "SHELL [" + " ".join(inst.argv) + "]"
    if isinstance(inst, Stopsignal):
        return "STOPSIGNAL " + inst.signal
    if isinstance(inst, Healthcheck):
        # BuildKit: fmt.Sprintf("HEALTHCHECK %+v", the config's HealthcheckConfig)
        return (
            f"HEALTHCHECK {{Test:[{' '.join(inst.test)}] Interval:{_go_duration(inst.interval_ns)}"
            f" Timeout:{_go_duration(inst.timeout_ns)}"
            f" StartPeriod:{_go_duration(inst.start_period_ns)}"
            f" StartInterval:{_go_duration(inst.start_interval_ns)} Retries:{inst.retries}}}"
        )
    if isinstance(inst, Onbuild):
        return "ONBUILD " + inst.trigger
    if isinstance(inst, Maintainer):
        return "MAINTAINER " + inst.name
    return type(inst).__name__.upper()

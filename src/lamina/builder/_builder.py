"""The executor: fold each needed stage's instructions over an image state.

Stages the target needs run at once in threads (the target in the calling thread, so
Ctrl-C and SIGTERM reach the step that runs there); a stage waits for the stages it
uses. Layer steps (RUN, COPY, ADD, WORKDIR) look their cache key up first; a hit
reuses the recorded layer without reading, mounting or running anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from lamina._rmtree import remove_tree
from lamina.dockerfile import (
    BuildPlan,
    Cmd,
    ContextFile,
    Copy,
    Entrypoint,
    Instruction,
    Location,
    Onbuild,
    PlannedInstruction,
    Run,
    StagePlan,
    Workdir,
    load_dockerignore,
    parse,
    plan,
    read_dockerfile,
)
from lamina.errors import InvalidInputError, LaminaError, NotFoundError
from lamina.oci import History, ImageConfig, Platform
from lamina.store import LayerOrigin, LayerRecord, Lease, Store

from ._image import (
    ImageState,
    commit_image,
    ensure_snapshots,
    layer_from_dir,
    layer_from_entries,
)
from ._keys import StepInputs, explain_miss, instruction_text
from ._meta import (
    DEFAULT_PATH,
    HISTORY_COMMENT,
    apply_metadata,
    base_config,
    created_by,
    run_argv,
)
from ._options import (
    BuildEvent,
    BuildOptions,
    BuildResult,
    CacheStep,
    EventSink,
    Resolver,
    timestamp,
)
from ._steps import CopyStep, RunStep, workdir_layer


class Builder:
    """One build: parse and plan, run the stages, commit the image under one lease."""

    def __init__(
        self, store: Store, opts: BuildOptions, resolve: Resolver, on_event: EventSink | None
    ) -> None:
        self.store = store
        self.opts = opts
        self.resolve = resolve
        self._on_event = on_event
        self._lock = threading.Lock()
        self._next_step = 0
        self._cancel = threading.Event()
        self._futures: dict[int, Future[ImageState]] = {}
        self.steps = 0
        self.cached = 0
        # What the result depends on in the context, for a later build to re-check
        # by stat alone (see BuildResult.context_files); an ADD of a URL depends on
        # more than the context, so such a build is never replayed.
        self.context_files: list[ContextFile] = []
        self.replayable = True
        # Every layer step's cache entry, for exporting the cache (--cache-to).
        self.cache_steps: list[CacheStep] = []
        self.context = opts.context_dir.resolve()
        # This build's own runc state dir: an interrupted build kills exactly its containers.
        self.runc_state = store.root / "runc-builds" / secrets.token_hex(8)
        self.lease: Lease
        self.bp: BuildPlan
        # Per stage: how many of its layers its first FROM image gave, and that image.
        self._bases: dict[int, tuple[int, str]] = {}
        # Each built stage's declared ARGs, inherited by a stage built FROM it.
        self._stage_args: dict[int, tuple[tuple[str, str | None], ...]] = {}
        self._spread = False  # snapshots/ marked (once per build)

    def observe(self, files: Sequence[ContextFile]) -> None:
        """Remember context entries a step read (stage threads call this concurrently)."""
        with self._lock:
            self.context_files.extend(files)

    # -- events ----------------------------------------------------------------------

    def emit(self, kind: str, step: int, text: str, seconds: float = 0.0) -> None:
        if self._on_event is not None:
            with self._lock:
                self._on_event(BuildEvent(kind, step, text, seconds))  # type: ignore[arg-type]

    def _number(self) -> int:
        with self._lock:
            self._next_step += 1
            return self._next_step

    # -- the build -------------------------------------------------------------------

    def load_plan(self) -> BuildPlan:
        path = self.opts.dockerfile_path()
        df = parse(read_dockerfile(path), filename=path.name)
        return plan(df, build_args=dict(self.opts.build_args), target=self.opts.target,
                    platform=self.opts.platform)  # fmt: skip

    def build(self) -> BuildResult:
        if not self.context.is_dir():
            raise NotFoundError(f"build context {self.opts.context_dir} is not a directory")
        self.bp = self.load_plan()
        for warning in self.bp.warnings:
            self.emit("warning", 0, str(warning))
        self.ignore = load_dockerignore(self.context, self.opts.dockerfile_path())
        from lamina.runtime import write_owner

        # Owned by this process: if it dies, the next lamina command kills what runs here.
        self.runc_state.mkdir(parents=True, mode=0o700)
        write_owner(self.runc_state)
        with self.store.lease() as lease:
            self.lease = lease
            target = self.bp.target
            others = [s for s in self.bp.stages if s.index != target.index]
            pool = ThreadPoolExecutor(max_workers=len(others)) if others else None
            try:
                for s in others:
                    assert pool is not None
                    self._futures[s.index] = pool.submit(self._build_stage, s)
                state = self._build_stage(target)
            except BaseException:
                self._cancel.set()
                if pool is not None:
                    from ._run import kill_containers

                    kill_containers(self.runc_state)
                raise
            finally:
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
                remove_tree(self.runc_state)
            created = self._stable_created(state.config)
            config = state.config.with_fields(created=created)
            if self.opts.labels:
                labels = dict(config.container_config.get("Labels") or {})
                config = config.with_container_config(Labels={**labels, **self.opts.labels})
            final = ImageState(config, state.layers, state.key)
            record = commit_image(self.store, lease, final, self.opts.tags)
            self.store.file_index.put_base(record.id, *self._bases[target.index])
        self.emit("image", 0, record.id)
        return BuildResult(
            record, self.steps, self.cached, tuple(self.context_files), self.replayable,
            tuple(self.cache_steps), target.index,
        )  # fmt: skip

    def _stable_created(self, config: ImageConfig) -> str:
        """The newest time in `config`'s history, so that a fully cached rebuild of the same
        steps makes the same config, hence the same image ID (as BuildKit does)."""
        if self.opts.source_date_epoch is not None:
            return timestamp(self.opts.source_date_epoch, 0.0)
        return config.last_created() or config.created or timestamp(None, time.time())

    def stage_state(self, index: int) -> ImageState:
        return self._futures[index].result()

    def source_state(self, ref: str) -> ImageState:
        """`--from=` a stage (name or index) of this plan, else an image in the store."""
        try:
            stage = self.bp.stage(int(ref) if ref.isdigit() else ref)
        except InvalidInputError:
            return self.image_state(ref)
        if stage.index == self.bp.target.index:
            raise InvalidInputError(f"--from={ref} refers to the stage being built")
        return self.stage_state(stage.index)

    def image_state(self, ref: str) -> ImageState:
        record = self.resolve(ref)
        return ImageState(self.store.image_config(record), record.layers, record.id)

    def _base(self, sp: StagePlan) -> ImageState:
        if sp.base_stage is not None:
            return self.stage_state(sp.base_stage)
        if sp.is_scratch:
            config = ImageConfig.new(os=sp.platform.os, architecture=sp.platform.architecture)
            if sp.platform.variant:
                config = config.with_fields(variant=sp.platform.variant)
            # BuildKit's emptyImage: the default PATH and WorkingDir "/".
            config = config.with_container_config(Env=[f"PATH={DEFAULT_PATH}"], WorkingDir="/")
            return ImageState(config, (), f"scratch:{sp.platform}")
        base = self.image_state(sp.from_.image)
        base = ImageState(base_config(base.config), base.layers, base.key)
        got = Platform(base.config.os, base.config.architecture,
                       str(base.config.to_json().get("variant", "")))  # fmt: skip
        if not same_platform(got, sp.platform):
            raise InvalidInputError(
                f"{sp.from_.image} is a {got} image, and this stage builds for {sp.platform}",
                hint="the store holds one platform per image name: import or load a base "
                "image for the target platform, or build FROM scratch",
            )
        return base

    def _build_stage(self, sp: StagePlan) -> ImageState:
        number = self._number()
        name = sp.name or f"stage-{sp.index}"
        try:
            state = self._base(sp)
        except (InvalidInputError, NotFoundError) as exc:  # BuildKit names the FROM line
            raise _located(exc, sp.from_.loc) from exc.__cause__
        self._bases[sp.index] = (
            self._bases[sp.base_stage] if sp.base_stage is not None
            else (len(state.layers), "scratch" if sp.is_scratch else sp.from_.image)
        )  # fmt: skip
        cc = state.config.container_config
        env = list(cc.get("Env") or [])
        if not any(e.startswith("PATH=") for e in env):
            # As BuildKit and buildah do: an image without PATH gets the default one.
            env.append(f"PATH={DEFAULT_PATH}")
            state = ImageState(state.config.with_container_config(Env=env), state.layers,
                               state.key)  # fmt: skip
            cc["Env"] = env
        base_args = self._stage_args[sp.base_stage] if sp.base_stage is not None else ()
        steps = self.bp.plan_stage(
            sp,
            cc.get("Env") or [],
            base_workdir=cc.get("WorkingDir") or "/",
            base_onbuild=cc.get("OnBuild") or [],
            base_args=base_args,
        )
        self._stage_args[sp.index] = steps[-1].stage_args if steps else base_args
        total = len(steps) + 1
        self.emit("step", number, f"[{name} 1/{total}] FROM {sp.from_.image}")
        # A child runs its base's ONBUILD triggers and does not pass them on.
        config = state.config.with_container_config(OnBuild=None)
        state = ImageState(config, state.layers, state.key)
        cmd_set = False
        # The target's last layer is never a lower dir in this build: a COPY there need not
        # be materialized as a snapshot (a later build unpacks it if it ever needs it).
        layer_steps = [i for i, s in enumerate(steps, start=2)
                       if isinstance(s.instruction, Run | Copy | Workdir)]  # fmt: skip
        last_layer = layer_steps[-1] if layer_steps and sp.index == self.bp.target.index else -1
        for i, step in enumerate(steps, start=2):
            if self._cancel.is_set():
                raise LaminaError("build cancelled")
            cmd_set = cmd_set or isinstance(step.instruction, Cmd)
            text = step.loc.text if step.loc is not None else type(step.instruction).__name__
            label = f"[{name} {i}/{total}] {text.strip()}"
            try:
                state = self._step(sp, i, step, state, label, cmd_set, i != last_layer)
            except (InvalidInputError, NotFoundError) as exc:
                raise _located(exc, step.loc) from exc.__cause__
        return state

    # -- one step --------------------------------------------------------------------

    def _step(
        self,
        sp: StagePlan,
        index: int,
        step: PlannedInstruction,
        state: ImageState,
        label: str,
        cmd_set: bool,
        needs_snapshot: bool = True,
    ) -> ImageState:
        inst = step.instruction
        config = state.config
        args = tuple(step.args)
        if not isinstance(inst, Run | Copy | Workdir):
            created = self._stable_created(config)
            history = History(created, created_by(inst, config, args), HISTORY_COMMENT)
            config = apply_metadata(config, inst, cmd_set)
            if isinstance(inst, Cmd):  # BuildKit's dispatchCmd: Docker's image spec field
                config = config.with_container_config(ArgsEscaped=True)
            if isinstance(inst, Cmd | Entrypoint) and not inst.command:
                # `CMD []`: BuildKit's OCI ImageConfig omits an empty Cmd/Entrypoint.
                config = config.with_container_config(**{type(inst).__name__: None})
            if not isinstance(inst, Onbuild):  # BuildKit's dispatchOnbuild commits no history
                config = config.with_layer(None, history)
            key = StepInputs(state.key, instruction_text(inst), args, step.env).key()
            return ImageState(config, state.layers, key)
        if isinstance(inst, Run) and not same_platform(sp.platform, self.bp.build_platform):
            where = f"{step.loc}: " if step.loc is not None else ""
            raise InvalidInputError(
                f"{where}RUN cannot run for {sp.platform}: this machine runs "
                f"{self.bp.build_platform} only",
                hint="a build for another platform may use FROM, COPY, ADD and metadata "
                "instructions; RUN needs that platform's machine",
            )
        number = self._number()
        started = time.monotonic()
        self.emit("step", number, label)
        with self._scratch("step") as scratch:
            runner = self._runner(inst, step, state, scratch, number)
            inputs = (
                runner.inputs()
                if runner is not None
                else StepInputs(state.key, instruction_text(inst), args, step.env)
            )
            key = inputs.key()
            with self._lock:
                self.steps += 1
            hit = None if self.opts.no_cache else self._cached(key)
            if hit is not None:
                layer, created = hit
                with self._lock:
                    self.cached += 1
                self.emit("cached", number, "CACHED")
            else:
                if isinstance(runner, CopyStep) and runner.shortcut:
                    inputs = runner.inputs(full=True)  # file by file, to say what changed
                step_id = self._step_id(sp, index)
                previous = self.store.get_cache(step_id)
                why = (
                    "--no-cache: the build cache is not used"
                    if self.opts.no_cache
                    else explain_miss(previous.value if previous else None, inputs)
                )
                self.emit("miss", number, why)
                created = timestamp(self.opts.source_date_epoch, time.time())
                layer = self._execute(runner, inst, state, scratch, needs_snapshot)
                self._record(key, step_id, inputs, layer, created)
                self.emit("done", number, "DONE", time.monotonic() - started)
        if layer is not None:
            self._record_origin(sp, step, layer)
        history = History(created, created_by(inst, config, _run_args(step)), HISTORY_COMMENT)
        config = apply_metadata(config, inst, cmd_set)
        config = config.with_layer(layer.diff_id if layer else None, history)
        state_key = key
        if isinstance(runner, CopyStep) and runner.linked:
            # The layer's key ignores the parent; the image state still follows from both.
            state_key = "sha256:" + hashlib.sha256(f"{state.key}\0{key}".encode()).hexdigest()
        new = state.with_step(config, layer, state_key)
        with self._lock:
            self.cache_steps.append(
                CacheStep(sp.index, key, state.key, new.layers if layer else (), created)
            )
        return new

    def _record_origin(self, sp: StagePlan, step: PlannedInstruction, layer: LayerRecord) -> None:
        """Remember the Dockerfile line that made `layer`, for `lamina analyze`."""
        if step.loc is None:
            return
        path = self.opts.dockerfile_path().resolve()
        inside = path.is_relative_to(self.context)
        shown = str(path.relative_to(self.context)) if inside else str(path)
        origin = LayerOrigin(shown, step.loc.start_line, sp.name or str(sp.index),
                             " ".join(step.loc.text.split()))  # fmt: skip
        self.store.file_index.put_origin(layer.diff_id, origin)

    def _execute(
        self,
        runner: RunStep | CopyStep | None,
        inst: Instruction,
        state: ImageState,
        scratch: Path,
        needs_snapshot: bool,
    ) -> LayerRecord | None:
        """Run a step that missed the cache and make its layer (None: nothing changed)."""
        lowerdirs = ensure_snapshots(self.store, self.lease, state.layers)
        sde = self.opts.source_date_epoch
        if isinstance(runner, CopyStep):
            result = runner.execute(lowerdirs, direct=not needs_snapshot)
            if runner.direct is not None:
                layer = layer_from_entries(self.store, self.lease, result, runner.direct,
                                           source_date_epoch=sde,
                                           previous=runner.previous_files())  # fmt: skip
                runner.remember_layer(layer.diff_id)
                return layer
            return layer_from_dir(self.store, self.lease, result, overlay_upper=False,
                                  source_date_epoch=sde)  # fmt: skip
        if isinstance(runner, RunStep):
            upper = runner.execute(lowerdirs)
            return layer_from_dir(self.store, self.lease, upper, overlay_upper=True,
                                  source_date_epoch=sde)  # fmt: skip
        assert isinstance(inst, Workdir)
        user = state.config.container_config.get("User") or ""
        made = workdir_layer(inst.path, lowerdirs, scratch, self._view, user)
        if made is None:
            return None
        return layer_from_dir(self.store, self.lease, made, overlay_upper=False,
                              source_date_epoch=sde)  # fmt: skip

    def _runner(
        self,
        inst: Instruction,
        step: PlannedInstruction,
        state: ImageState,
        scratch: Path,
        number: int,
    ) -> RunStep | CopyStep | None:
        if isinstance(inst, Run):
            argv = run_argv(inst, state.config)
            return RunStep(self, inst, step, state, scratch, number, argv)
        if isinstance(inst, Copy):
            return CopyStep(self, inst, step, state, scratch)
        return None

    def _cached(self, key: str) -> tuple[LayerRecord | None, str] | None:
        record = self.store.get_cache(key)
        if record is None or not isinstance(record.value, dict):
            return None
        value = record.value
        raw = value.get("layer")
        layer = LayerRecord(**raw) if isinstance(raw, dict) else None
        # A lazy layer (a registry holds it) is a hit too: fetched if a later step needs it.
        if layer is not None and not self.store.layer_available(layer.diff_id):
            return None
        return layer, str(value.get("created", ""))

    def _record(
        self,
        key: str,
        step_id: str,
        inputs: StepInputs,
        layer: LayerRecord | None,
        created: str,
    ) -> None:
        value = {"layer": asdict(layer) if layer else None, "created": created}
        # The snapshot is the layer (no blob is made while building).
        snapshots = [layer.diff_id] if layer else []
        self.store.put_cache(key, value, snapshots=snapshots)
        self.store.put_cache(step_id, inputs.to_json())

    def _step_id(self, sp: StagePlan, index: int) -> str:
        where = self.opts.origin or f"{self.context}\0{self.opts.dockerfile_path()}"
        ident = f"{where}\0{sp.index}\0{index}"
        return "explain:" + hashlib.sha256(ident.encode()).hexdigest()

    # -- scratch space and read-only views --------------------------------------------

    @contextlib.contextmanager
    def _scratch(self, kind: str) -> Iterator[Path]:
        # Beside the snapshots (one file system): a result directory is renamed, not copied.
        from lamina.runtime import write_owner
        from lamina.snapshots import spread_new_directories

        # Each step's files land in a block group of their own (ext4), not beside what
        # earlier steps just deleted: see spread_new_directories.
        if not self._spread:
            spread_new_directories(self.store.snapshots_dir)
            self._spread = True
        path = Path(tempfile.mkdtemp(prefix=f".tmp-{kind}-", dir=self.store.snapshots_dir))
        try:
            # Mounts live in here while a step runs: a later command unmounts them if we die.
            write_owner(path)
            yield path
        finally:
            # A step's killed process may still be writing into its upper dir for a moment
            # after an interrupt: a removal racing it finds a directory not yet empty.
            for attempt in range(20):
                remove_tree(path)
                if not path.exists():
                    break
                time.sleep(0.05 * (attempt + 1))

    @contextlib.contextmanager
    def _view(
        self, lowerdirs: list[Path], scratch: Path, name: str = "view"
    ) -> Iterator[Path | None]:
        """The image (`lowerdirs` bottom first) mounted read-only, or None when it is empty."""
        from lamina.snapshots import mounted, overlay_mount

        if not lowerdirs:
            yield None
            return
        target = scratch / name
        target.mkdir()
        with mounted(overlay_mount(lowerdirs[::-1]), target):
            yield target


def same_platform(a: Platform, b: Platform) -> bool:
    """Same OS and architecture, and same variant when both name one (arm64 is arm64/v8)."""
    if (a.os, a.architecture) != (b.os, b.architecture):
        return False
    return not a.variant or not b.variant or a.variant == b.variant


def _located(exc: LaminaError, loc: Location | None) -> LaminaError:
    """`exc` with the step's Dockerfile line in front, as BuildKit names the failed line
    (a message that already starts with file:line is left as it is)."""
    if loc is None or re.match(r"\S+:\d+: ", exc.message):
        return exc
    exc.message = f"{loc}: {exc.message}"
    exc.args = (exc.message, *exc.args[1:])
    return exc


def _run_args(step: PlannedInstruction) -> tuple[tuple[str, str], ...]:
    """The build args a RUN's history lists, as BuildKit's runCommandString: every ARG
    declared so far, with the value the step's environment gives it (ENV overrides an ARG),
    an ARG without a value as `K=`."""
    if not isinstance(step.instruction, Run):
        return ()
    env = dict(step.env)
    return tuple((k, env.get(k, v or "")) for k, v in step.stage_args)


def build(
    store: Store, opts: BuildOptions, resolve: Resolver, on_event: EventSink | None = None
) -> BuildResult:
    """Build the Dockerfile in `opts` and record the image with its tags; see BuildOptions."""
    return Builder(store, opts, resolve, on_event).build()

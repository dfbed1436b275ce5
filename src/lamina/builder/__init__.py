"""Build: run a Dockerfile's plan into an image — cache keys, context hashing, executor.

    result = build(store, BuildOptions(context_dir, tags=("docker.io/library/app:latest",)),
                   resolve=lambda ref: store.resolve(ref), on_event=print)
    result.image.id        # sha256:… (the config digest, Docker's image ID)

Each needed stage folds its instructions over an ImageState (config + layers + cache
key). Metadata instructions change the config and add a history entry with
``empty_layer``. RUN runs under runc over an overlay of the stage's snapshots plus a
fresh upper dir, which becomes the layer and, renamed, its snapshot. COPY/ADD and a
WORKDIR that must create its directory stage what they add in a directory that
becomes the layer and snapshot the same way. Layer steps are keyed by
``StepInputs.key()`` (parent key, expanded instruction, args, env, platform, and a
checksum of COPY sources that ignores mtimes); a hit reuses the recorded layer.
Context files are hashed through the store's stat cache (``digest_context_files``),
whose identity is git's index fields (size, mtime, ctime, inode, dev, mode, owner).
``COPY --link`` keys its layer without the parent (the copy lands on an empty tree),
so a rebuilt base reuses it; ``ADD`` of a git repository keys on the commit that
``git ls-remote`` resolves (``_git``); ``RUN --mount=from=`` on the mounted content.
Secrets (file or ``env=``) and the ssh-agent relay (``_ssh``) never enter a key.

Progress goes to ``on_event`` as BuildEvent values (kinds: step, cached, miss, output,
done, warning, image). A failing RUN raises StepFailedError (a ToolError) naming the
step, its Dockerfile line, the exit code and the last lines of output; no image is
recorded, earlier steps stay cached, every mount is gone.

This package does not know the API or the CLI: FROM and ``--from`` images are found
through the ``resolve`` callable it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lamina._lazy import lazy_names

if TYPE_CHECKING:
    from lamina.builder._builder import Builder, build
    from lamina.builder._image import ImageState, commit_image, ensure_snapshots, layer_from_dir
    from lamina.builder._keys import StepInputs, explain_miss, instruction_text
    from lamina.builder._meta import HISTORY_COMMENT, apply_metadata, created_by
    from lamina.builder._options import (
        BuildEvent,
        BuildOptions,
        BuildResult,
        CacheStep,
        EventSink,
        Resolver,
        StepFailedError,
        timestamp,
    )
    from lamina.builder._sources import digest_context_files, file_sha256

# Loaded on first use: `lamina build` checks whether a build can be replayed before it
# needs the frontend and the executor, and start-up time is most of a cached build.
_WHERE = {
    "BuildEvent": "_options",
    "BuildOptions": "_options",
    "BuildResult": "_options",
    "Builder": "_builder",
    "CacheStep": "_options",
    "EventSink": "_options",
    "HISTORY_COMMENT": "_meta",
    "ImageState": "_image",
    "Resolver": "_options",
    "StepFailedError": "_options",
    "StepInputs": "_keys",
    "apply_metadata": "_meta",
    "build": "_builder",
    "commit_image": "_image",
    "created_by": "_meta",
    "digest_context_files": "_sources",
    "ensure_snapshots": "_image",
    "explain_miss": "_keys",
    "file_sha256": "_sources",
    "instruction_text": "_keys",
    "layer_from_dir": "_image",
    "timestamp": "_options",
}


__all__ = [
    "HISTORY_COMMENT",
    "BuildEvent",
    "BuildOptions",
    "BuildResult",
    "Builder",
    "CacheStep",
    "EventSink",
    "ImageState",
    "Resolver",
    "StepFailedError",
    "StepInputs",
    "apply_metadata",
    "build",
    "commit_image",
    "created_by",
    "digest_context_files",
    "ensure_snapshots",
    "explain_miss",
    "file_sha256",
    "instruction_text",
    "layer_from_dir",
    "timestamp",
]

__getattr__, __dir__ = lazy_names(
    __name__,
    {name: f"{__name__}.{module}" for name, module in _WHERE.items()},
    __all__,
    globals(),
)

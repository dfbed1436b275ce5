"""`open_archive`: which on-disk source a path is (OCI layout dir or tar, docker-archive)."""

from __future__ import annotations

import os
import stat

from lamina.errors import InvalidInputError, NotFoundError
from lamina.layers import Compression, sniff_compression
from lamina.oci import Platform
from lamina.transport._docker_archive import DockerArchiveSource, repo_tags_by_config
from lamina.transport._members import DirFiles, Files, TarFiles
from lamina.transport._oci_layout import OciLayoutSource

ArchiveReader = OciLayoutSource | DockerArchiveSource
"""What `open_archive` returns: either on-disk source."""


def open_archive(
    path: str | os.PathLike[str], *, platform: Platform | None = None, name: str | None = None
) -> ArchiveReader:
    """Open a docker-archive or OCI layout (directory or tar) and list its images.

    An OCI index is preferred when the archive has one (Docker 25+ writes both), with
    manifest.json's RepoTags added to the names. Raises NotFoundError (no such path, a
    missing member or blob), InvalidInputError (not an archive, hostile content) or
    DigestMismatchError (content that is not what its digest says). Messages name the
    archive `name` when given (what the user gave, where `path` is a copy or stdin's fd).
    """
    text = os.fspath(path)
    shown = name or text
    try:
        info = os.stat(text)
    except FileNotFoundError:
        raise NotFoundError(f"{shown}: no such file or directory") from None
    files: Files
    if stat.S_ISDIR(info.st_mode):
        files, fmt = DirFiles(text), "oci-dir"
    elif stat.S_ISREG(info.st_mode):
        with open(text, "rb") as stream:
            head = stream.read(8)
        if sniff_compression(head) is not Compression.NONE:
            raise InvalidInputError(
                f"{shown}: a compressed file, not a tar archive",
                hint="decompress it first (gunzip, zstd -d) and load the tar",
            )
        files, fmt = TarFiles(text, name), "oci-archive"
    else:
        raise InvalidInputError(f"{shown}: neither a file nor a directory")
    try:
        has_docker = files.exists("manifest.json")
        if files.exists("index.json"):
            layout = OciLayoutSource(text, files, fmt, platform)
            if has_docker:
                layout.add_names(repo_tags_by_config(files))
                layout.format = "docker-archive" if fmt == "oci-archive" else fmt
            return layout
        if has_docker:
            return DockerArchiveSource(text, files)
        raise InvalidInputError(
            f"{shown}: neither an OCI layout (no index.json) nor a docker-archive "
            "(no manifest.json)"
        )
    except BaseException:
        files.close()
        raise

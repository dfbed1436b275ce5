"""Real-world Dockerfiles built by lamina and by buildah (Debian's, `--isolation chroot`, the
same busybox base), compared: the image config, the history and the root file system (every
path's type, mode, owner, size, content, link target, hardlink grouping, and the times Docker
defines: a source's or an archive entry's mtime, `touch -d`).

buildah follows Docker's classic builder, or rules of its own, in places. Docker's documented
behaviour (the Dockerfile reference, BuildKit's code and tests) decides: where buildah differs,
the case names the field or path, says why, asserts Docker's value on lamina and leaves buildah
out of that one comparison. Everything else must be the same in both images.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lamina.api import Lamina, build_image

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOURCE_TIME = 1_500_000_000  # the context files' mtime (COPY keeps it: fsutil's copy)
ARCHIVE_TIME = 1_600_000_000  # the tar entries' mtime (ADD keeps it: moby's untar)
CONFIG_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
)
# buildah's RUN leaves the mount points it made; BuildKit removes them (executor's
# MountStubsCleaner), and so does lamina.
BUILDAH_STUBS = {"dev", "proc", "sys", "run", "etc/hosts", "etc/hostname", "etc/resolv.conf"}


def _tar(compression: str = "") -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, kind, payload, mode in (
            ("pkg", tarfile.DIRTYPE, b"", 0o755),
            ("pkg/bin", tarfile.DIRTYPE, b"", 0o750),
            ("pkg/bin/tool", tarfile.REGTYPE, b"#!/bin/sh\necho tool\n", 0o755),
            ("pkg/README", tarfile.REGTYPE, b"readme\n", 0o644),
            ("pkg/link", tarfile.SYMTYPE, b"bin/tool", 0o777),
            ("pkg/hard", tarfile.LNKTYPE, b"pkg/README", 0o644),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.uid, info.gid = (
                kind,
                mode,
                ARCHIVE_TIME,
                1234,
                5678,
            )
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = payload.decode()
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload) if payload else None)
    raw = data.getvalue()
    if compression == "gz":
        return gzip.compress(raw, mtime=0)
    if compression == "bz2":
        return bz2.compress(raw)
    return lzma.compress(raw) if compression == "xz" else raw


CONTEXT = {
    "src/one.txt": b"one\n",
    "src/two.txt": b"two\n",
    "src/nested/deep.txt": b"deep\n",
    "src/nested/more/x.md": b"x\n",
    "top.txt": b"top\n",
    "README.md": b"readme\n",
    "app.py": b"print('hi')\n",
    "config/a.conf": b"a=1\n",
    "config/b.conf": b"b=2\n",
    "config/skip.tmp": b"tmp\n",
}


@dataclass
class Case:
    dockerfile: str
    files: dict[str, bytes] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    # Docker's values, asserted on lamina (and on buildah unless in buildah_config_differs).
    config: dict[str, Any] = field(default_factory=dict)
    buildah_config_differs: dict[str, str] = field(default_factory=dict)  # field -> why
    # created_by and empty_layer of this Dockerfile's steps (after the base image's), as
    # BuildKit writes them, lamina's name in place of `# buildkit`.
    history: list[tuple[str, bool]] | None = None
    # path -> (type letter, mode, uid, gid, content or link target or None), on lamina.
    paths: dict[str, tuple[str, int, int, int, bytes | str | None]] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    buildah_paths_differ: dict[str, str] = field(default_factory=dict)  # path -> why
    links: list[list[str]] | None = None  # hardlink groups, on lamina
    buildah_links_differ: str = ""
    buildah: bool = True  # False: buildah 1.28 cannot build it (heredocs)
    base_steps: int = 1  # history entries of the final stage's base (busybox: 1; scratch: 0)
    prepare: Callable[[Path], None] | None = None  # more context: links, modes, owners


CASES: dict[str, Case] = {}

CASES["args-env"] = Case(
    """\
ARG BASE=busybox
ARG VERSION=1.0
ARG UNUSED
FROM ${BASE} AS base
ARG VERSION
ARG BUILD_NO=7
ARG EMPTY=
ENV APP_VERSION=${VERSION} BUILD=${BUILD_NO:-0} FLAG=${EMPTY:+set} DEF=${EMPTY:-dflt}
ENV SAME=1 USES_SAME=${SAME:-unset}
ENV SPACED="a b  c" ESC=\\$HOME QUOTED='$VERSION'
RUN echo "$VERSION $BUILD_NO $APP_VERSION [$FLAG] $DEF $USES_SAME" > /args.txt
RUN env | grep -E '^(VERSION|BUILD_NO|EMPTY|UNUSED)=' | sort > /argenv.txt || true
LABEL version=$VERSION
""",
    build_args={"VERSION": "2.5"},
    config={
        # Dockerfile reference, ENV: values of one ENV are substituted with the variables'
        # values before it (USES_SAME sees no SAME yet).
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_VERSION=2.5",
            "BUILD=7",
            "FLAG=",
            "DEF=dflt",
            "SAME=1",
            "USES_SAME=unset",
            "SPACED=a b  c",
            "ESC=$HOME",
            "QUOTED=$VERSION",
        ],
        "Labels": {"version": "2.5"},
    },
    history=[
        ("ARG VERSION=2.5", True),
        ("ARG BUILD_NO=7", True),
        ("ARG EMPTY=", True),
        ("ENV APP_VERSION=2.5 BUILD=7 FLAG= DEF=dflt", True),
        ("ENV SAME=1 USES_SAME=unset", True),
        ("ENV SPACED=a b  c ESC=$HOME QUOTED=$VERSION", True),
        (
            'RUN |3 VERSION=2.5 BUILD_NO=7 EMPTY= /bin/sh -c echo "$VERSION $BUILD_NO $APP_VERSION'
            ' [$FLAG] $DEF $USES_SAME" > /args.txt # lamina',
            False,
        ),
        (
            "RUN |3 VERSION=2.5 BUILD_NO=7 EMPTY= /bin/sh -c env | grep -E "
            "'^(VERSION|BUILD_NO|EMPTY|UNUSED)=' | sort > /argenv.txt || true # lamina",
            False,
        ),
        ("LABEL version=2.5", True),
    ],
    paths={
        "args.txt": ("f", 0o644, 0, 0, b"2.5 7 2.5 [] dflt unset\n"),
        "argenv.txt": ("f", 0o644, 0, 0, b"BUILD_NO=7\nEMPTY=\nVERSION=2.5\n"),
    },
)

CASES["workdir-chain"] = Case(
    """\
FROM busybox
ENV BASEDIR=/opt
WORKDIR $BASEDIR/app
WORKDIR sub
WORKDIR ../other/./deep
RUN pwd > here.txt
WORKDIR /
WORKDIR srv
COPY top.txt .
COPY top.txt ./copy/
""",
    config={"WorkingDir": "/srv"},
    history=[
        ("ENV BASEDIR=/opt", True),
        ("WORKDIR /opt/app", False),
        ("WORKDIR /opt/app/sub", False),
        ("WORKDIR /opt/app/other/deep", False),
        ("RUN /bin/sh -c pwd > here.txt # lamina", False),
        ("WORKDIR /", True),
        ("WORKDIR /srv", False),
        ("COPY top.txt . # lamina", False),
        ("COPY top.txt ./copy/ # lamina", False),
    ],
    paths={
        # Dockerfile reference, WORKDIR: "If the WORKDIR doesn't exist, it will be created even
        # if it's not used in any subsequent Dockerfile instruction."
        "opt/app/sub": ("d", 0o755, 0, 0, None),
        "opt/app/other/deep/here.txt": ("f", 0o644, 0, 0, b"/opt/app/other/deep\n"),
        "srv/top.txt": ("f", 0o644, 0, 0, b"top\n"),
        "srv/copy/top.txt": ("f", 0o644, 0, 0, b"top\n"),
    },
)

CASES["user-chown"] = Case(
    """\
FROM busybox
USER app:staff
RUN id > /tmp/id.txt && touch /tmp/made-by-app
COPY --chown=app:staff top.txt /home/app/owned.txt
COPY top.txt /home/app/rootowned.txt
COPY --chown=1000 src /home/app/src
WORKDIR /home/app/work
RUN touch inwork
USER 1000:50
RUN id > /tmp/id2.txt
USER root
RUN chown -R 1000:50 /tmp/id.txt
""",
    config={"User": "root", "WorkingDir": "/home/app/work"},
    paths={
        "tmp/id.txt": ("f", 0o644, 1000, 50, b"uid=1000(app) gid=50(staff) groups=50(staff)\n"),
        "tmp/made-by-app": ("f", 0o644, 1000, 50, b""),
        "home/app/owned.txt": ("f", 0o644, 1000, 50, b"top\n"),
        # COPY without --chown: root, whatever USER is (Dockerfile reference, COPY --chown).
        "home/app/rootowned.txt": ("f", 0o644, 0, 0, b"top\n"),
        # "a UID without GID will use the same numeric UID as the GID"
        "home/app/src/one.txt": ("f", 0o644, 1000, 1000, b"one\n"),
        # BuildKit's WORKDIR mkdir runs as the USER (convert.go dispatchWorkdir WithUser).
        "home/app/work": ("d", 0o755, 1000, 50, None),
        "home/app/work/inwork": ("f", 0o644, 1000, 50, b""),
    },
)

CASES["copy-globs"] = Case(
    """\
FROM busybox
COPY *.txt /globbed/
COPY src /src-contents
COPY src/ /src-slash/
COPY src/*.txt /txt-only/
COPY src/nested/ /deep
COPY config/*.conf README.md /mixed/
COPY ./app.py /usr/local/bin/app
COPY src/n?sted /qmark/
COPY [tc]op.txt /class/
COPY src/one.txt /newdir/
COPY src/one.txt /nonslash
""",
    paths={
        "globbed/top.txt": ("f", 0o644, 0, 0, b"top\n"),
        # "If <src> is a directory, the entire contents of the directory are copied"
        "src-contents/one.txt": ("f", 0o644, 0, 0, b"one\n"),
        "src-contents/nested/more/x.md": ("f", 0o644, 0, 0, b"x\n"),
        "src-slash/two.txt": ("f", 0o644, 0, 0, b"two\n"),
        "deep/deep.txt": ("f", 0o644, 0, 0, b"deep\n"),
        "mixed/a.conf": ("f", 0o644, 0, 0, b"a=1\n"),
        "mixed/README.md": ("f", 0o644, 0, 0, b"readme\n"),
        "usr/local/bin/app": ("f", 0o644, 0, 0, b"print('hi')\n"),
        "qmark/deep.txt": ("f", 0o644, 0, 0, b"deep\n"),
        "class/top.txt": ("f", 0o644, 0, 0, b"top\n"),
        "newdir/one.txt": ("f", 0o644, 0, 0, b"one\n"),
        "nonslash": ("f", 0o644, 0, 0, b"one\n"),
    },
    absent=("txt-only/nested", "mixed/skip.tmp", "src-contents/src", "globbed/src"),
)

CASES["chmod"] = Case(
    """\
FROM busybox
COPY --chmod=0755 app.py /bin/app
COPY --chmod=600 config /etc/app/
COPY --chmod=0750 --chown=app:staff src /srv/src
ADD --chmod=0640 top.txt /added.txt
""",
    history=[
        ("COPY --chmod=0755 app.py /bin/app # lamina", False),
        ("COPY --chmod=600 config /etc/app/ # lamina", False),
        ("COPY --chown=app:staff --chmod=0750 src /srv/src # lamina", False),
        ("ADD --chmod=0640 top.txt /added.txt # lamina", False),
    ],
    paths={
        "bin/app": ("f", 0o755, 0, 0, b"print('hi')\n"),
        "etc/app/a.conf": ("f", 0o600, 0, 0, b"a=1\n"),
        "added.txt": ("f", 0o640, 0, 0, b"top\n"),
        "srv/src/one.txt": ("f", 0o750, 1000, 50, b"one\n"),
        # BuildKit: an octal --chmod applies to the copied directories too, and to the
        # directories it creates above the destination (fsutil copy.go, "copy: fix custom
        # chmod for parent directories"; BuildKit's testCopyChmod). buildah leaves them 0755.
        "etc/app": ("d", 0o600, 0, 0, None),
        "srv": ("d", 0o750, 1000, 50, None),
        "srv/src": ("d", 0o750, 1000, 50, None),
        "srv/src/nested": ("d", 0o750, 1000, 50, None),
    },
    buildah_paths_differ={
        p: "BuildKit applies --chmod to directories (fsutil copy)"
        for p in ("etc/app", "srv", "srv/src")
    },
)

CASES["add-archives"] = Case(
    """\
FROM busybox
RUN mkdir -p /opt/existing && echo keep > /opt/existing/k
ADD plain.tar /plain/
ADD comp.tar.gz /gz
ADD comp.tar.bz2 /bz/
ADD comp.tar.xz /xz/
ADD plain.tar /opt/existing/
ADD top.txt /added/
ADD notar.gz /notar/
""",
    files={
        "plain.tar": _tar(),
        "comp.tar.gz": _tar("gz"),
        "comp.tar.bz2": _tar("bz2"),
        "comp.tar.xz": _tar("xz"),
        "notar.gz": gzip.compress(b"plain text\n", mtime=0),
    },
    paths={
        # The archive's own owners, modes and links (Dockerfile reference, ADD: "unpacked
        # as a directory", as `tar -x`).
        **{
            f"{d}/pkg/bin/tool": ("f", 0o755, 1234, 5678, b"#!/bin/sh\necho tool\n")
            for d in ("plain", "gz", "bz", "xz", "opt/existing")
        },
        "gz/pkg/bin": ("d", 0o750, 1234, 5678, None),
        "xz/pkg/link": ("l", 0o777, 1234, 5678, "bin/tool"),
        "opt/existing/k": ("f", 0o644, 0, 0, b"keep\n"),
        "added/top.txt": ("f", 0o644, 0, 0, b"top\n"),
        # A gzip that holds no tar is copied, not decompressed.
        "notar/notar.gz": ("f", 0o644, 0, 0, gzip.compress(b"plain text\n", mtime=0)),
    },
    links=[
        [f"{d}/pkg/README", f"{d}/pkg/hard"] for d in ("bz", "gz", "opt/existing", "plain", "xz")
    ],
)

CASES["dockerignore"] = Case(
    """\
FROM busybox
COPY . /ctx/
""",
    files={
        ".dockerignore": b"**/*.tmp\n*.md\n!README.md\nsrc/nested\n!src/nested/more\n.git\n"
        b"secret*\n# comment\n",
        "secret.key": b"s\n",
        ".git/HEAD": b"ref\n",
        "docs/guide.md": b"g\n",
        "a.tmp": b"t\n",
    },
    paths={
        "ctx/README.md": ("f", 0o644, 0, 0, b"readme\n"),
        "ctx/docs/guide.md": ("f", 0o644, 0, 0, b"g\n"),  # `*.md` is the top level only
        "ctx/src/nested/more/x.md": ("f", 0o644, 0, 0, b"x\n"),
        "ctx/.dockerignore": ("f", 0o644, 0, 0, None),
        "ctx/Dockerfile": ("f", 0o644, 0, 0, None),
    },
    absent=(
        "ctx/secret.key",
        "ctx/.git",
        "ctx/a.tmp",
        "ctx/config/skip.tmp",
        "ctx/src/nested/deep.txt",
    ),
)

CASES["dockerignore-patterns"] = Case(
    """\
FROM busybox
COPY . /ctx/
""",
    files={
        ".dockerignore": b"/abs\n./b.txt\n**/node_modules\n*/temp*\ntemp?\n**/*.txt\n"
        b"!**/keep.txt\nmy file\n\\!bang\n[a-b].txt\ndocs/\nbuild\n!build/keep\n.env\n"
        b"Dockerfile\n.dockerignore\n",
        "keep.txt": b"k",
        "dir/keep.txt": b"dk",
        "dir/x.txt": b"dx",
        "dir/sub/temp1": b"t",
        "node_modules/m/index.js": b"m",
        "app/node_modules/n.js": b"n",
        "app/src/main.js": b"s",
        "temp1": b"t1",
        "tempx": b"tx",
        "abs": b"abs",
        "sub/abs": b"sabs",
        "my file": b"sp",
        "!bang": b"bang",
        "docs/a.md": b"md",
        "build/out.bin": b"o",
        "build/keep/k": b"kk",
        ".env": b"secret",
        ".env.example": b"ex",
    },
    # moby's patternmatcher: a pattern is anchored at the context's root (a leading / or ./
    # changes nothing), `*` stays within one level, `**` spans any, a later `!` re-includes,
    # and the Dockerfile and .dockerignore can be left out too.
    paths={
        "ctx/keep.txt": ("f", 0o644, 0, 0, b"k"),
        "ctx/dir/keep.txt": ("f", 0o644, 0, 0, b"dk"),
        "ctx/dir/sub/temp1": ("f", 0o644, 0, 0, b"t"),
        "ctx/sub/abs": ("f", 0o644, 0, 0, b"sabs"),
        "ctx/app/src/main.js": ("f", 0o644, 0, 0, b"s"),
        "ctx/build/keep/k": ("f", 0o644, 0, 0, b"kk"),
        "ctx/.env.example": ("f", 0o644, 0, 0, b"ex"),
    },
    absent=(
        "ctx/abs",
        "ctx/b.txt",
        "ctx/top.txt",
        "ctx/dir/x.txt",
        "ctx/node_modules",
        "ctx/app/node_modules",
        "ctx/temp1",
        "ctx/tempx",
        "ctx/my file",
        "ctx/!bang",
        "ctx/docs",
        "ctx/build/out.bin",
        "ctx/.env",
        "ctx/Dockerfile",
        "ctx/.dockerignore",
    ),
)

CASES["heredocs"] = Case(
    """\
# syntax=docker/dockerfile:1
FROM busybox
RUN <<EOF
set -e
mkdir -p /hd
echo "line1" > /hd/one
echo "$HOME" > /hd/home
EOF
RUN <<EOT sh
echo viash > /hd/sh
EOT
COPY <<EOF /hd/copied.txt
hello ${HOSTNAME:-x}
  indented
EOF
COPY <<-EOF /hd/tabs.txt
\ttabbed
\tEOF
COPY <<A <<B /hd/multi/
first
A
second
B
RUN cat <<X > /hd/cat.txt
catted
X
RUN <<EOF
#!/bin/sh
echo shebang > /hd/shebang
EOF
""",
    buildah=False,  # buildah 1.28's parser reads a heredoc's lines as instructions
    history=[
        (
            'RUN /bin/sh -c set -e\nmkdir -p /hd\necho "line1" > /hd/one\necho "$HOME" > /hd/home\n'
            " # lamina",
            False,
        ),
        ("RUN /bin/sh -c <<EOT sh\necho viash > /hd/sh\nEOT # lamina", False),
        ("COPY <<EOF /hd/copied.txt # lamina", False),
        ("COPY <<EOF /hd/tabs.txt # lamina", False),
        ("COPY <<A <<B /hd/multi/ # lamina", False),
        ("RUN /bin/sh -c cat <<X > /hd/cat.txt\ncatted\nX # lamina", False),
        # BuildKit's dispatchRun: a heredoc with a shebang is mounted at /dev/pipes and run.
        ("RUN /bin/sh -c /dev/pipes/EOF # lamina", False),
    ],
    paths={
        "hd/one": ("f", 0o644, 0, 0, b"line1\n"),
        "hd/home": ("f", 0o644, 0, 0, b"/root\n"),
        "hd/sh": ("f", 0o644, 0, 0, b"viash\n"),
        "hd/copied.txt": ("f", 0o644, 0, 0, b"hello x\n  indented\n"),
        "hd/tabs.txt": ("f", 0o644, 0, 0, b"tabbed\n"),
        "hd/multi/A": ("f", 0o644, 0, 0, b"first\n"),
        "hd/multi/B": ("f", 0o644, 0, 0, b"second\n"),
        "hd/cat.txt": ("f", 0o644, 0, 0, b"catted\n"),
        "hd/shebang": ("f", 0o644, 0, 0, b"shebang\n"),
    },
)

CASES["shell"] = Case(
    """\
FROM busybox
SHELL ["/bin/sh", "-ec"]
RUN echo "$0 $-" > /shell1.txt
SHELL ["/bin/sh", "-c"]
RUN echo plain > /shell2.txt
SHELL ["/bin/sh", "-xc"]
CMD echo from cmd
""",
    config={"Shell": ["/bin/sh", "-xc"], "Cmd": ["/bin/sh", "-xc", "echo from cmd"]},
    # Dockerfile reference, SHELL: it "affects shell forms of RUN, CMD and ENTRYPOINT";
    # buildah writes CMD's shell form with /bin/sh -c.
    buildah_config_differs={"Cmd": "SHELL applies to CMD's shell form"},
    history=[
        ("SHELL [/bin/sh -ec]", True),
        ('RUN /bin/sh -ec echo "$0 $-" > /shell1.txt # lamina', False),
        ("SHELL [/bin/sh -c]", True),
        ("RUN /bin/sh -c echo plain > /shell2.txt # lamina", False),
        ("SHELL [/bin/sh -xc]", True),
        ('CMD ["/bin/sh" "-xc" "echo from cmd"]', True),
    ],
    paths={"shell1.txt": ("f", 0o644, 0, 0, b"/bin/sh ce\n")},  # -e is on
)

CASES["entrypoint-cmd"] = Case(
    """\
FROM busybox AS withcmd
CMD ["sleep", "1"]
FROM withcmd AS ep
ENTRYPOINT ["/bin/echo", "hi"]
FROM ep AS epshell
ENTRYPOINT echo shell form
FROM epshell
CMD ["--flag"]
""",
    # ENTRYPOINT resets an inherited CMD (BuildKit's dispatchEntrypoint: `if !d.cmdSet`).
    config={"Entrypoint": ["/bin/sh", "-c", "echo shell form"], "Cmd": ["--flag"]},
    history=[
        ('CMD ["sleep" "1"]', True),
        ('ENTRYPOINT ["/bin/echo" "hi"]', True),
        ('ENTRYPOINT ["/bin/sh" "-c" "echo shell form"]', True),
        ('CMD ["--flag"]', True),
    ],
)

CASES["entrypoint-resets-cmd"] = Case(
    """\
FROM busybox AS a
CMD echo parent
FROM a
ENTRYPOINT ["/bin/sh", "-c"]
""",
    config={"Entrypoint": ["/bin/sh", "-c"], "Cmd": None},
)

CASES["metadata"] = Case(
    """\
FROM busybox
EXPOSE 80/tcp 53/udp 8080
EXPOSE 443
VOLUME ["/data", "/var/log/app"]
VOLUME /cache
LABEL org.opencontainers.image.title="My App" \\
      org.opencontainers.image.version=1.2 multi="a b" empty=""
LABEL "quoted key"=v
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=4 CMD wget -qO- :80 || exit 1
MAINTAINER someone@example.com
""",
    config={
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8080/tcp": {}, "443/tcp": {}},
        "Volumes": {"/data": {}, "/var/log/app": {}, "/cache": {}},
        "Labels": {
            "org.opencontainers.image.title": "My App",
            "org.opencontainers.image.version": "1.2",
            "multi": "a b",
            "empty": "",
            "quoted key": "v",
        },
        "StopSignal": "SIGQUIT",
        "Healthcheck": {
            "Test": ["CMD-SHELL", "wget -qO- :80 || exit 1"],
            "Interval": 5_000_000_000,
            "Timeout": 3_000_000_000,
            "StartPeriod": 10_000_000_000,
            "Retries": 4,
        },
    },
    history=[
        # BuildKit's parseExpose sorts the words; dispatchExpose prints the parsed list.
        ("EXPOSE [53/udp 80/tcp 8080/tcp]", True),
        ("EXPOSE [443/tcp]", True),
        ("VOLUME [/data /var/log/app]", True),
        ("VOLUME [/cache]", True),
        (
            "LABEL org.opencontainers.image.title=My App org.opencontainers.image.version=1.2 "
            "multi=a b empty=",
            True,
        ),
        ("LABEL quoted key=v", True),
        ("STOPSIGNAL SIGQUIT", True),
        (
            "HEALTHCHECK {Test:[CMD-SHELL wget -qO- :80 || exit 1] Interval:5s "
            "Timeout:3s StartPeriod:10s StartInterval:0s Retries:4}",
            True,
        ),
        ("MAINTAINER someone@example.com", True),
    ],
)

CASES["healthcheck-none"] = Case(
    """\
FROM busybox AS a
HEALTHCHECK CMD ["true"]
STOPSIGNAL 9
FROM a
HEALTHCHECK NONE
""",
    config={"Healthcheck": {"Test": ["NONE"]}, "StopSignal": "9"},
)

CASES["onbuild-stage"] = Case(
    """\
FROM busybox AS parent
ONBUILD RUN echo triggered > /onbuild.txt
ONBUILD COPY top.txt /from-onbuild.txt
ONBUILD ENV TRIG=1
FROM parent AS child
RUN cat /onbuild.txt
FROM child
""",
    # The triggers ran once, in `child`, and are gone from its config; BuildKit's
    # dispatchOnbuild writes no history entry (buildah writes `ONBUILD ...` ones).
    config={
        "OnBuild": None,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TRIG=1"],
    },
    history=[
        ("RUN /bin/sh -c echo triggered > /onbuild.txt # lamina", False),
        ("COPY top.txt /from-onbuild.txt # lamina", False),
        ("ENV TRIG=1", True),
        ("RUN /bin/sh -c cat /onbuild.txt # lamina", True),  # no change: README, on purpose
    ],
    paths={
        "onbuild.txt": ("f", 0o644, 0, 0, b"triggered\n"),
        "from-onbuild.txt": ("f", 0o644, 0, 0, b"top\n"),
    },
)

CASES["run-mounts"] = Case(
    """\
FROM busybox AS data
RUN mkdir /out && echo fromstage > /out/f
FROM busybox
RUN --mount=type=cache,target=/cache echo c > /cache/x && ls /cache > /cachelist
RUN --mount=type=bind,source=src,target=/mnt/src cat /mnt/src/one.txt > /boundcopy
RUN --mount=type=bind,from=data,source=/out,target=/o cat /o/f > /fromstage
RUN --mount=type=tmpfs,target=/scratch touch /scratch/gone && ls -a /scratch > /tmpfslist
""",
    paths={
        "cachelist": ("f", 0o644, 0, 0, b"x\n"),
        "boundcopy": ("f", 0o644, 0, 0, b"one\n"),
        "fromstage": ("f", 0o644, 0, 0, b"fromstage\n"),
        "tmpfslist": ("f", 0o644, 0, 0, b".\n..\ngone\n"),
    },
    # Nothing of a mount stays in the image, nor the mount points made for it (BuildKit's
    # MountStubsCleaner removes them with their created parents).
    absent=("cache", "mnt", "o", "scratch"),
    buildah_paths_differ={"mnt": "BuildKit removes the mount points it made"},
)

CASES["links"] = Case(
    """\
FROM busybox
RUN mkdir -p /l && echo data > /l/file && ln /l/file /l/hard && ln -s file /l/sym && \\
    ln -s /nonexistent /l/dangling && ln -s /l /ldir
RUN ln /l/file /l/hard2
COPY src /csrc
""",
    paths={
        "l/sym": ("l", 0o777, 0, 0, "file"),
        "l/dangling": ("l", 0o777, 0, 0, "/nonexistent"),
        "ldir": ("l", 0o777, 0, 0, "/l"),
        "l/hard": ("f", 0o644, 0, 0, b"data\n"),
    },
    # The second RUN's layer holds l/file again (overlayfs copies it up to link it) and
    # l/hard2 linked to it; unpacked over the first, l/hard keeps the old inode.
    links=[["l/file", "l/hard2"]],
    buildah_links_differ="buildah's vfs diff does not carry l/file into the second layer",
)

CASES["whiteouts"] = Case(
    """\
FROM busybox
RUN mkdir -p /d/sub /e && echo a > /d/sub/a && echo b > /d/b && echo f > /f && echo x > /e/x
RUN rm -rf /d && mkdir -p /d/sub && echo new > /d/sub/n && rm /f && rm /e/x && rm /etc/group
RUN echo f-again > /f && rmdir /e
""",
    paths={"d/sub/n": ("f", 0o644, 0, 0, b"new\n"), "f": ("f", 0o644, 0, 0, b"f-again\n")},
    absent=("d/b", "d/sub/a", "e", "etc/group"),
)

CASES["modes-owners-times"] = Case(
    """\
FROM busybox
RUN echo x > /m && chmod 4755 /m && mkdir /sticky && chmod 1777 /sticky && chown 1000:50 /m
RUN touch -d "2001-02-03 04:05:06" /m && chmod 2750 /sticky && echo y > /gid && chown 123:456 /gid
RUN chmod 0600 /etc/passwd && chown 1000 /bin/busybox && touch -d "1969-07-20 20:17:40" /old
RUN echo big > /bigid && chown 3000000:2100000 /bigid && mkdir /nodir && chmod 000 /nodir
""",
    paths={
        "m": ("f", 0o755, 1000, 50, b"x\n"),  # chown(2) cleared the set-uid bit chmod set
        "sticky": ("d", 0o2750, 0, 0, None),
        "gid": ("f", 0o644, 123, 456, b"y\n"),
        "etc/passwd": ("f", 0o600, 0, 0, None),
        "bin/busybox": ("f", 0o755, 1000, 0, None),
        "bigid": ("f", 0o644, 3_000_000, 2_100_000, b"big\n"),
        "nodir": ("d", 0o000, 0, 0, None),
    },
    # A time before 1970 is kept (a PAX mtime in the layer, as Go's archive/tar writes it);
    # buildah's layer says 0.
    buildah_paths_differ={"old": "an mtime before 1970 is kept"},
)

CASES["multistage-scratch"] = Case(
    """\
ARG TAG=latest
FROM busybox:${TAG} AS builder
WORKDIR /build
RUN echo compiled > app && mkdir lib && echo so > lib/libx.so
FROM busybox AS second
RUN echo s > /s
FROM scratch AS final
COPY --from=builder /build/app /app
COPY --from=0 /build/lib /lib/
COPY --from=second /s /s
COPY --from=busybox /bin/busybox /bin/busybox
ENTRYPOINT ["/app"]
""",
    # BuildKit's emptyImage: WorkingDir "/" and the default PATH for FROM scratch
    # (buildah leaves WorkingDir empty).
    config={
        "WorkingDir": "/",
        "Entrypoint": ["/app"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    },
    buildah_config_differs={"WorkingDir": "BuildKit's emptyImage sets WorkingDir /"},
    history=[
        ("COPY /build/app /app # lamina", False),
        ("COPY /build/lib /lib/ # lamina", False),
        ("COPY /s /s # lamina", False),
        ("COPY /bin/busybox /bin/busybox # lamina", False),
        ('ENTRYPOINT ["/app"]', True),
    ],
    paths={"app": ("f", 0o644, 0, 0, b"compiled\n"), "lib/libx.so": ("f", 0o644, 0, 0, b"so\n")},
    absent=("build", "tmp", "etc"),
    base_steps=0,
)

CASES["env-in-instructions"] = Case(
    """\
FROM busybox
ENV DIR=/srv FILE=top.txt PORT=9000 OWNER=app NAME=svc
COPY $FILE ${DIR}/
COPY --chown=${OWNER}:${OWNER} ${FILE} $DIR/owned
WORKDIR ${DIR}/${NAME}
EXPOSE ${PORT}/tcp
USER ${OWNER}
LABEL name=$NAME literal=\\$NAME
STOPSIGNAL SIGTERM
VOLUME ${DIR}/vol
""",
    config={
        "WorkingDir": "/srv/svc",
        "User": "app",
        "ExposedPorts": {"9000/tcp": {}},
        "Labels": {"name": "svc", "literal": "$NAME"},
        "StopSignal": "SIGTERM",
        "Volumes": {"/srv/vol": {}},
    },
    history=[
        ("ENV DIR=/srv FILE=top.txt PORT=9000 OWNER=app NAME=svc", True),
        ("COPY top.txt /srv/ # lamina", False),
        ("COPY --chown=app:app top.txt /srv/owned # lamina", False),
        ("WORKDIR /srv/svc", False),
        ("EXPOSE [9000/tcp]", True),
        ("USER app", True),
        ("LABEL name=svc literal=$NAME", True),
        ("STOPSIGNAL SIGTERM", True),
        ("VOLUME [/srv/vol]", True),
    ],
    paths={"srv/owned": ("f", 0o644, 1000, 1000, b"top\n"), "srv/svc": ("d", 0o755, 0, 0, None)},
    # BuildKit's dispatchVolume only sets the config; buildah makes the directory.
    absent=("srv/vol",),
    buildah_paths_differ={"srv/vol": "VOLUME makes no directory"},
)

CASES["run-environment"] = Case(
    """\
FROM busybox
ARG PROXYLIKE=1
ENV FOO=bar
RUN env | grep -v -E '^(HOSTNAME)=' | sort > /env.txt
RUN ["/bin/sh", "-c", "echo exec form $FOO > /exec.txt"]
RUN echo 'a' \\
    'b' > /cont.txt
USER app
RUN echo $HOME > /tmp/home.txt
""",
    history=[
        ("ARG PROXYLIKE=1", True),
        ("ENV FOO=bar", True),
        (
            "RUN |1 PROXYLIKE=1 /bin/sh -c env | grep -v -E '^(HOSTNAME)=' | sort > /env.txt"
            " # lamina",
            False,
        ),
        # an exec-form RUN is printed as its words joined (BuildKit's runCommandString)
        ("RUN |1 PROXYLIKE=1 /bin/sh -c echo exec form $FOO > /exec.txt # lamina", False),
        ("RUN |1 PROXYLIKE=1 /bin/sh -c echo 'a'     'b' > /cont.txt # lamina", False),
        ("USER app", True),
        ("RUN |1 PROXYLIKE=1 /bin/sh -c echo $HOME > /tmp/home.txt # lamina", False),
    ],
    paths={
        # a build arg reaches RUN's environment, HOME comes from /etc/passwd
        "env.txt": (
            "f",
            0o644,
            0,
            0,
            b"FOO=bar\nHOME=/root\nPATH=/usr/local/sbin:/usr/local/bin:"
            b"/usr/sbin:/usr/bin:/sbin:/bin\nPROXYLIKE=1\nPWD=/\nSHLVL=1\n",
        ),
        "exec.txt": ("f", 0o644, 0, 0, b"exec form bar\n"),
        "cont.txt": ("f", 0o644, 0, 0, b"a b\n"),
        "tmp/home.txt": ("f", 0o644, 1000, 1000, b"/home/app\n"),
    },
)

CASES["copy-onto-existing"] = Case(
    """\
FROM busybox
RUN mkdir -p /target/keep && echo k > /target/keep/k && echo old > /target/one.txt
COPY src/ /target/
COPY src /target2
COPY top.txt /target/keep
""",
    paths={
        "target/one.txt": ("f", 0o644, 0, 0, b"one\n"),
        "target/keep/k": ("f", 0o644, 0, 0, b"k\n"),
        "target/keep/top.txt": ("f", 0o644, 0, 0, b"top\n"),
        "target2/nested/deep.txt": ("f", 0o644, 0, 0, b"deep\n"),
    },
)

CASES["symlinked-destinations"] = Case(
    """\
FROM busybox
RUN mkdir -p /usr/lib2 /real/app && ln -s usr/lib2 /lib2 && ln -s /real/app /app
COPY top.txt /lib2/
COPY src/ /app/
WORKDIR /app/sub
RUN pwd -P > /where && echo x > made
ADD plain.tar /lib2/
""",
    files={"plain.tar": _tar()},
    config={"WorkingDir": "/app/sub"},
    paths={
        "lib2": ("l", 0o777, 0, 0, "usr/lib2"),
        "app": ("l", 0o777, 0, 0, "/real/app"),
        "usr/lib2/top.txt": ("f", 0o644, 0, 0, b"top\n"),
        "real/app/one.txt": ("f", 0o644, 0, 0, b"one\n"),
        "real/app/sub/made": ("f", 0o644, 0, 0, b"x\n"),
        "where": ("f", 0o644, 0, 0, b"/real/app/sub\n"),
        "usr/lib2/pkg/README": ("f", 0o644, 1234, 5678, b"readme\n"),
    },
)

CASES["add-chown-archive"] = Case(
    """\
FROM busybox
ADD --chown=app:staff plain.tar /ext/
ADD --chown=app:staff top.txt /ext/top.txt
COPY --chown=app:staff plain.tar /ext/plain.tar
""",
    files={"plain.tar": _tar()},
    paths={
        "ext/pkg/bin/tool": ("f", 0o755, 1000, 50, b"#!/bin/sh\necho tool\n"),
        "ext/pkg/link": ("l", 0o777, 1000, 50, "bin/tool"),
        "ext/top.txt": ("f", 0o644, 1000, 50, b"top\n"),
        "ext/plain.tar": ("f", 0o644, 1000, 50, _tar()),
    },
    # BuildKit's unpack() untars with ChownOpts = the --chown user (solver/llbsolver/file/
    # unpack.go); buildah keeps the archive's owners.
    buildah_paths_differ={
        f"ext/pkg{p}": "ADD --chown applies to an unpacked archive"
        for p in ("", "/README", "/bin", "/bin/tool", "/hard", "/link")
    },
)

CASES["volume-then-run"] = Case(
    """\
FROM busybox
RUN mkdir -p /data && echo before > /data/before
VOLUME /data
RUN echo after > /data/after && echo changed > /data/before
""",
    config={"Volumes": {"/data": {}}},
    # Dockerfile reference, VOLUME: changes after the declaration "will be discarded when
    # using the legacy builder. When using Buildkit, the changes will instead be kept."
    paths={
        "data/after": ("f", 0o644, 0, 0, b"after\n"),
        "data/before": ("f", 0o644, 0, 0, b"changed\n"),
    },
    buildah_paths_differ={
        "data/after": "BuildKit keeps changes to a declared volume",
        "data/before": "BuildKit keeps changes to a declared volume",
    },
)

CASES["inherited-metadata"] = Case(
    """\
FROM busybox AS base
LABEL a=1 b=2
EXPOSE 80
ENV PATH=/opt/bin:$PATH LANG=C.UTF-8
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "true"]
VOLUME /v1
USER app
WORKDIR /home/app
FROM base
LABEL b=3 c=4
EXPOSE 443/tcp 80/tcp
ENV LANG=en_US.UTF-8 PATH=$PATH:/extra
VOLUME /v2
CMD []
""",
    config={
        "Labels": {"a": "1", "b": "3", "c": "4"},
        "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
        # An ENV of a variable the image has replaces it where it stands (BuildKit's
        # AddOrReplace); buildah moves it last.
        "Env": [
            "PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/extra",
            "LANG=en_US.UTF-8",
        ],
        "Entrypoint": ["/bin/sh"],
        "Cmd": None,
        "User": "app",
        "WorkingDir": "/home/app",
        "Volumes": {"/v1": {}, "/v2": {}},
    },
    buildah_config_differs={"Env": "BuildKit replaces a variable where it stands"},
)

CASES["escape-directive"] = Case(
    """\
# escape=`
from busybox
env KEY value with spaces
Env OTHER=1 `
    MORE=2
run echo "$KEY" > /key.txt && `
    # a comment inside continuation
    echo done >> /key.txt
copy ["my file.txt", "/dest dir/"]
LABEL path=C:\\x
""",
    files={"my file.txt": b"spaced\n"},
    # With `escape=\\``, a backslash is an ordinary character (buildah drops it).
    config={"Labels": {"path": "C:\\x"}},
    buildah_config_differs={"Labels": "the escape directive also applies to words"},
    paths={
        "key.txt": ("f", 0o644, 0, 0, b"value with spaces\ndone\n"),
        "dest dir/my file.txt": ("f", 0o644, 0, 0, b"spaced\n"),
    },
)

CASES["expose-ranges"] = Case(
    """\
FROM busybox
ARG PORT=7000
EXPOSE 8000-8002 ${PORT}/udp 9000/TCP
""",
    # BuildKit's parsePort expands a range and lowercases the protocol (buildah keeps both
    # as written).
    config={
        "ExposedPorts": {
            "7000/udp": {},
            "8000/tcp": {},
            "8001/tcp": {},
            "8002/tcp": {},
            "9000/tcp": {},
        }
    },
    buildah_config_differs={"ExposedPorts": "BuildKit expands port ranges"},
    history=[
        ("ARG PORT=7000", True),
        ("EXPOSE [7000/udp 8000/tcp 8001/tcp 8002/tcp 9000/tcp]", True),
    ],
)

CASES["copy-from-stage-links"] = Case(
    """\
FROM busybox AS b
RUN mkdir -p /out/d && echo f > /out/d/f && ln -s d/f /out/lnk && ln /out/d/f /out/d/hard && \\
    ln -s /out/d /out/dirlink && chmod 700 /out/d && chown 1000:50 /out/d/f
FROM busybox
COPY --from=b /out /copied
COPY --from=b /out/lnk /followed
COPY --from=b /out/dirlink /dl
COPY --from=b /out/d/* /star/
""",
    paths={
        "copied/lnk": ("l", 0o777, 0, 0, "d/f"),
        "copied/d": ("d", 0o700, 0, 0, None),
        "copied/d/f": ("f", 0o644, 1000, 50, b"f\n"),
        # a source that is a symlink is followed (the link's target is copied)
        "followed": ("f", 0o644, 1000, 50, b"f\n"),
        "dl/f": ("f", 0o644, 1000, 50, b"f\n"),
    },
    # The wildcard's matches are copied by one fsutil copier, whose inode map keeps them
    # linked; buildah copies them one by one.
    links=[["copied/d/f", "copied/d/hard"], ["dl/f", "dl/hard"], ["star/f", "star/hard"]],
    buildah_links_differ="BuildKit copies a wildcard's matches with one copier",
)

CASES["workdir-owner"] = Case(
    """\
FROM busybox
USER app:staff
WORKDIR /opt/appdir/deep
USER root
WORKDIR /opt/rootdir
WORKDIR /home/app
""",
    # BuildKit's WORKDIR mkdir (with parents) runs as the USER of the moment.
    paths={
        "opt": ("d", 0o755, 1000, 50, None),
        "opt/appdir/deep": ("d", 0o755, 1000, 50, None),
        "opt/rootdir": ("d", 0o755, 0, 0, None),
    },
)

CASES["proxy-args"] = Case(
    """\
FROM busybox
ARG DECLARED
RUN echo "[$DECLARED][$UNDECLARED][$HTTP_PROXY][$http_proxy]" > /a
""",
    build_args={"DECLARED": "d", "UNDECLARED": "u", "HTTP_PROXY": "http://proxy:3128"},
    # Undeclared build args reach nothing; a predefined proxy arg needs no ARG, stays out of
    # the history, and reaches RUN in both cases (BuildKit's proxyEnvList).
    history=[
        ("ARG DECLARED=d", True),
        (
            'RUN |1 DECLARED=d /bin/sh -c echo "[$DECLARED][$UNDECLARED][$HTTP_PROXY]'
            '[$http_proxy]" > /a # lamina',
            False,
        ),
    ],
    paths={"a": ("f", 0o644, 0, 0, b"[d][][http://proxy:3128][http://proxy:3128]\n")},
    buildah_paths_differ={"a": "BuildKit sets HTTP_PROXY and http_proxy alike"},
)


def _tar_of(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """A tar of (name, content, mode, uid) entries; a name ending in / is a directory."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content, mode, uid in entries:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mode, info.uid, info.gid, info.mtime = mode, uid, uid, ARCHIVE_TIME
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return data.getvalue()


CASES["add-archive-over-symlinks"] = Case(
    """\
FROM busybox
RUN mkdir -p /usr/sbin /opt/keep /real && mv /bin/busybox /usr/sbin/ && rm -r /bin && \\
    ln -s usr/sbin /bin && chmod 0700 /opt/keep && chown 123:456 /opt/keep && ln -s /real /lnk
ADD --chown=app:staff tree.tar /
""",
    files={
        "tree.tar": _tar_of(
            [
                ("bin/", b"", 0o750, 7),
                ("bin/newtool", b"n\n", 0o755, 7),
                ("opt/keep/tool", b"t\n", 0o755, 7),
                ("lnk/in-real", b"r\n", 0o644, 7),
            ]
        )
    },
    paths={
        # An entry replaces what the image has at its own path unless both are directories
        # (moby's Unpack: RemoveAll when `!fi.IsDir() || hdr.Typeflag != tar.TypeDir`): the
        # bin/ entry replaces the /bin symlink, it does not land in /usr/sbin.
        "bin": ("d", 0o750, 1000, 50, None),
        "bin/newtool": ("f", 0o755, 1000, 50, b"n\n"),
        "usr/sbin": ("d", 0o755, 0, 0, None),
        "usr/sbin/busybox": ("f", 0o755, 0, 0, None),
        # A directory only implied by an entry's path is not the archive's: an existing one
        # keeps its mode and owner (createImpliedDirectories makes missing ones only).
        "opt/keep": ("d", 0o700, 123, 456, None),
        "opt/keep/tool": ("f", 0o755, 1000, 50, b"t\n"),
        # ... and a symlink on an entry's parent path is followed, inside the image.
        "lnk": ("l", 0o777, 0, 0, "/real"),
        "real/in-real": ("f", 0o644, 1000, 50, b"r\n"),
    },
    absent=("usr/sbin/newtool",),
    buildah_paths_differ={
        p: "ADD --chown applies to an unpacked archive"
        for p in ("bin", "bin/newtool", "opt/keep/tool", "real/in-real")
    },
)

CASES["copy-onto-symlinks"] = Case(
    """\
FROM busybox
RUN echo target > /t && ln -s /t /link && ln -s /nowhere /dang && mkdir /dir && ln -s /dir /dirlink
COPY top.txt /link
COPY top.txt /dang
COPY top.txt /dirlink
""",
    # fsutil's Copy resolves the destination inside the image with continuity's RootPath,
    # its last component included: a symlink destination is written through, not replaced
    # (buildah replaces /link with the file and makes /nowhere a directory).
    paths={
        "link": ("l", 0o777, 0, 0, "/t"),
        "t": ("f", 0o644, 0, 0, b"top\n"),
        "dang": ("l", 0o777, 0, 0, "/nowhere"),
        "nowhere": ("f", 0o644, 0, 0, b"top\n"),
        "dir/top.txt": ("f", 0o644, 0, 0, b"top\n"),
    },
    buildah_paths_differ={
        p: "a symlink destination is resolved" for p in ("link", "t", "nowhere", "nowhere/top.txt")
    },
)


def _odd_context(ctx: Path) -> None:
    os.symlink("top.txt", ctx / "linkfile")
    os.symlink("src", ctx / "linkdir")
    os.symlink("/etc/passwd", ctx / "abslink")
    os.link(ctx / "top.txt", ctx / "hardtop")
    (ctx / "emptydir").mkdir()
    perms = ctx / "perms"
    (perms / "priv").mkdir(parents=True)
    (perms / "x").write_text("x")
    (perms / "priv" / "y").write_text("y")
    os.chown(perms / "x", 1234, 5678)  # before chmod: chown(2) clears set-uid
    os.chown(perms / "priv", 99, 99)
    os.chmod(perms / "x", 0o4711)
    os.chmod(perms / "priv", 0o700)
    os.chmod(perms / "priv" / "y", 0o600)


CASES["context-links-and-modes"] = Case(
    """\
FROM busybox
COPY . /ctx/
COPY linkfile /followed
COPY linkdir /followeddir
COPY perms/ /perms/
ADD perms /perms2
""",
    prepare=_odd_context,
    paths={
        # Symlinks inside a copied tree stay links; a source that is one is followed.
        "ctx/linkfile": ("l", 0o777, 0, 0, "top.txt"),
        "ctx/abslink": ("l", 0o777, 0, 0, "/etc/passwd"),
        "ctx/emptydir": ("d", 0o755, 0, 0, None),
        "followed": ("f", 0o644, 0, 0, b"top\n"),
        "followeddir/one.txt": ("f", 0o644, 0, 0, b"one\n"),
        # Modes are kept (set-uid included), owners become root.
        "perms/x": ("f", 0o4711, 0, 0, b"x"),
        "perms/priv": ("d", 0o700, 0, 0, None),
        "perms2/priv/y": ("f", 0o600, 0, 0, b"y"),
    },
    links=[["ctx/hardtop", "ctx/top.txt"]],
    # fsutil's copyFileInfo chowns before it chmods; buildah's chown clears the set-uid bit.
    buildah_paths_differ={
        p: "a set-uid bit is kept" for p in ("ctx/perms/x", "perms/x", "perms2/x")
    },
)

CASES["add-rootfs-tarball"] = Case(
    """\
FROM scratch
ADD rootfs.tar /
ADD rootfs.tar /sub/
ADD rootfs.tar /sub2
CMD ["/bin/x"]
""",
    files={
        "rootfs.tar": _tar_of(
            [
                ("./", b"", 0o700, 1234),
                ("./etc/", b"", 0o750, 0),
                ("./etc/f", b"f", 0o640, 0),
                ("./bin/", b"", 0o755, 0),
                ("./bin/x", b"x", 0o755, 0),
            ]
        )
    },
    base_steps=0,
    config={"Cmd": ["/bin/x"], "WorkingDir": "/"},
    history=[
        ("ADD rootfs.tar / # lamina", False),
        ("ADD rootfs.tar /sub/ # lamina", False),
        ("ADD rootfs.tar /sub2 # lamina", False),
        ('CMD ["/bin/x"]', True),
    ],
    # moby's Unpack skips the archive's "./" entry: the destination keeps the mode and owner
    # it was made with (buildah gives it the entry's 0700 and 1234).
    paths={
        "sub": ("d", 0o755, 0, 0, None),
        "sub2": ("d", 0o755, 0, 0, None),
        "etc": ("d", 0o750, 0, 0, None),
        "sub/etc/f": ("f", 0o640, 0, 0, b"f"),
        "bin/x": ("f", 0o755, 0, 0, b"x"),
    },
    buildah_paths_differ={"sub": "the ./ entry is skipped", "sub2": "the ./ entry is skipped"},
    buildah_config_differs={"WorkingDir": "BuildKit's emptyImage sets WorkingDir /"},
)

CASES["stage-names-any-case"] = Case(
    """\
FROM busybox AS Builder
RUN echo b > /b
FROM busybox
COPY --from=builder /b /b
COPY --from=BUILDER /b /b2
""",
    buildah=False,  # buildah 1.28 matches stage names case-sensitively and fails
    paths={"b": ("f", 0o644, 0, 0, b"b\n"), "b2": ("f", 0o644, 0, 0, b"b\n")},
)


# --- building and reading both images ---------------------------------------------------


def _tree(root: Path, started: float) -> tuple[dict[str, tuple[Any, ...]], list[list[str]]]:
    """path → (type letter, mode, uid, gid, size, content digest or link target, mtime or
    None when it is the build's own time), and the hardlink groups."""
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            extra: str = ""
            size = 0
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(path.read_bytes()).hexdigest()
                size = st.st_size
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            kind = (
                "d"
                if stat.S_ISDIR(st.st_mode)
                else "l"
                if stat.S_ISLNK(st.st_mode)
                else "f"
                if stat.S_ISREG(st.st_mode)
                else oct(stat.S_IFMT(st.st_mode))
            )
            # Docker defines a copied file's mtime (the source's) and an unpacked entry's;
            # a directory's, or a file a step wrote, is the time of the build.
            mtime = None if abs(st.st_mtime - started) < 3600 or kind == "d" else int(st.st_mtime)
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, extra, mtime)
    groups = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return out, groups


@dataclass
class Image:
    config: dict[str, Any]
    history: list[dict[str, Any]]
    tree: dict[str, tuple[Any, ...]]
    links: list[list[str]]


class Builds:
    """Each case built once per module by both tools, on demand."""

    def __init__(self, base: Path, rootfs: Path) -> None:
        self.base = base
        self.lam = Lamina(base / "lamina")
        self.lam.import_image(rootfs, "busybox")
        self.lam.save(["busybox"], base / "busybox-oci", fmt="oci-dir")
        image = self.buildah("pull", "-q", f"oci:{base / 'busybox-oci'}").strip().splitlines()[-1]
        self.buildah("tag", image, "docker.io/library/busybox:latest")
        self.done: dict[tuple[str, str], Image] = {}

    def buildah(self, *args: str) -> str:
        argv = [
            "buildah",
            "--root",
            str(self.base / "buildah"),
            "--runroot",
            str(self.base / "buildah-run"),
            "--storage-driver",
            "vfs",
            *args,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def context(self, name: str) -> Path:
        ctx = self.base / "ctx" / name
        if not ctx.exists():
            for rel, data in {**CONTEXT, **CASES[name].files}.items():
                (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
                (ctx / rel).write_bytes(data)
            (ctx / "Dockerfile").write_text(CASES[name].dockerfile)
            for dirpath, _, filenames in os.walk(ctx):
                for f in filenames:
                    os.utime(Path(dirpath) / f, (SOURCE_TIME, SOURCE_TIME))
            prepare = CASES[name].prepare
            if prepare is not None:
                prepare(ctx)
        return ctx

    def get(self, tool: str, name: str) -> Image:
        if (tool, name) not in self.done:
            self.done[tool, name] = (self._lamina if tool == "lamina" else self._buildah)(name)
        return self.done[tool, name]

    def _lamina(self, name: str) -> Image:
        started = time.time()
        build_image(self.lam, self.context(name), tags=[name], build_args=CASES[name].build_args)
        doc = self.lam.config(self.lam.resolve(name))._doc
        target = self.base / f"mnt-{name}"
        target.mkdir()
        self.lam.mount(name, target)
        try:
            tree, links = _tree(target, started)
        finally:
            self.lam.umount(target)
        return Image(doc.get("config", {}), doc.get("history", []), tree, links)

    def _buildah(self, name: str) -> Image:
        started = time.time()
        args = [f"--build-arg={k}={v}" for k, v in CASES[name].build_args.items()]
        # no --layers: buildah's layer cache, shared by the cases, once handed one case
        # another's layer
        self.buildah(
            "bud",
            "--format",
            "docker",
            "--isolation",
            "chroot",
            "--pull=never",
            "-q",
            *args,
            "-t",
            name,
            str(self.context(name)),
        )
        doc = json.loads(self.buildah("inspect", "--type", "image", name))["Docker"]
        container = self.buildah("from", "--pull=never", name).strip()
        try:
            tree, links = _tree(Path(self.buildah("mount", container).strip()), started)
        finally:
            self.buildah("rm", container)
        for stub in BUILDAH_STUBS:
            tree.pop(stub, None)
        return Image(doc.get("config", {}), doc.get("history", []), tree, links)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Builds]:
    b = Builds(tmp_path_factory.mktemp("parity"), busybox_rootfs)
    yield b
    b.lam.store.close()


def _value(config: dict[str, Any], name: str) -> Any:
    return config.get(name) or None  # absent, null, [] and {} all mean "not set"


def _kind_of(
    expected: tuple[str, int, int, int, bytes | str | None],
) -> Callable[[tuple[Any, ...]], bool]:
    kind, mode, uid, gid, content = expected

    def matches(got: tuple[Any, ...]) -> bool:
        if got[:4] != (kind, mode, uid, gid):
            return False
        if isinstance(content, bytes):
            return bool(got[5] == hashlib.sha256(content).hexdigest())
        return content is None or got[5] == content

    return matches


NAMES = sorted(CASES)
WITH_BUILDAH = [n for n in NAMES if CASES[n].buildah]


@pytest.mark.parametrize("name", NAMES)
def test_config_is_dockers(builds: Builds, name: str) -> None:
    case = CASES[name]
    ours = builds.get("lamina", name).config
    for key, want in case.config.items():
        assert _value(ours, key) == (want or None), key
    if not case.buildah:
        return
    theirs = dict(builds.get("buildah", name).config)
    theirs["Labels"] = {
        k: v for k, v in (theirs.get("Labels") or {}).items() if k != "io.buildah.version"
    }
    for key in CONFIG_FIELDS:
        if key not in case.buildah_config_differs:
            assert _value(ours, key) == _value(theirs, key), key
    for key in case.buildah_config_differs:  # the difference is real, not a stale entry
        assert _value(ours, key) != _value(theirs, key), key


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].history is not None])
def test_history_is_buildkits(builds: Builds, name: str) -> None:
    """created_by and empty_layer as BuildKit's dockerfile2llb writes them (commitToHistory;
    `# lamina` where BuildKit writes `# buildkit`), for the final stage's own steps."""
    history = builds.get("lamina", name).history[CASES[name].base_steps :]
    got = [(h.get("created_by", ""), bool(h.get("empty_layer"))) for h in history]
    assert got == CASES[name].history


@pytest.mark.parametrize("name", NAMES)
def test_tree_is_dockers(builds: Builds, name: str) -> None:
    case = CASES[name]
    ours = builds.get("lamina", name)
    for path, expected in case.paths.items():
        assert path in ours.tree, path
        assert _kind_of(expected)(ours.tree[path]), (path, ours.tree[path])
    for path in case.absent:
        assert path not in ours.tree, path
    if case.links is not None:
        assert ours.links == sorted(case.links)
    if not case.buildah:
        return
    theirs = builds.get("buildah", name)
    skip = set(case.buildah_paths_differ)
    mine = {k: v for k, v in ours.tree.items() if k not in skip}
    other = {k: v for k, v in theirs.tree.items() if k not in skip}
    assert sorted(mine.keys() ^ other.keys()) == []
    assert {k: (v, other[k]) for k, v in mine.items() if other[k] != v} == {}
    for path in skip:  # each named difference is real
        assert ours.tree.get(path) != theirs.tree.get(path), path
    if case.buildah_links_differ:
        assert ours.links != theirs.links
    else:
        assert ours.links == theirs.links


def test_copied_and_unpacked_files_keep_their_times(builds: Builds) -> None:
    """COPY keeps a source's mtime; ADD keeps an archive entry's (moby's untar): both are
    Docker's, so both tools agree on them (the tree comparison holds the rest)."""
    copied = builds.get("lamina", "copy-globs").tree["globbed/top.txt"]
    unpacked = builds.get("lamina", "add-archives").tree["xz/pkg/README"]
    touched = builds.get("lamina", "modes-owners-times").tree
    assert (copied[6], unpacked[6]) == (SOURCE_TIME, ARCHIVE_TIME)
    assert (touched["m"][6], touched["old"][6]) == (981173106, -14182940)  # `touch -d`, UTC

"""The same Dockerfiles built by lamina and by buildah give the same tree and config."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lamina.api import Lamina

pytestmark = pytest.mark.integration

CASES = {
    "copy-run-meta": """\
FROM busybox
ENV APP=/srv/app MODE=test
LABEL team=core tier=backend
WORKDIR /srv/app
COPY src/ ./
COPY top.txt /top.txt
COPY src/one.txt src/two.txt /pair/
RUN echo built > built.txt && mkdir -p /var/data && chmod 0750 /var/data
EXPOSE 8080/tcp 53/udp
USER app
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo hi"]
""",
    "whiteouts": """\
FROM busybox
RUN mkdir -p /d/sub && echo a > /d/sub/a && echo f > /f && echo keep > /keep
RUN rm -rf /d && mkdir /d && echo b > /d/b && rm /f && mkdir /f && rm /etc/group
RUN ln /keep /keep-link && ln -s /keep /keep-symlink
""",
    "multistage": """\
FROM busybox AS build
RUN mkdir /out && echo artifact > /out/a && echo other > /out/b
FROM busybox
COPY --from=build /out/ /opt/
COPY --from=build /out/a /single
""",
    "chown-chmod": """\
FROM busybox
COPY --chown=app:staff top.txt /home/app/
COPY --chown=1000:1000 src /home/app/src
COPY --chmod=0751 top.txt /exec.sh
""",
}
BUILDAH_STUBS = {"dev", "proc", "sys", "run", "etc/hosts", "etc/hostname", "etc/resolv.conf"}
CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts")


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """path → (type, mode, uid, gid, content digest or link target), no times."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            else:
                extra = ""
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


class Buildah:
    def __init__(self, base: Path) -> None:
        self.base = base

    def __call__(self, *args: str) -> str:
        argv = ["buildah", "--root", str(self.base / "root"), "--runroot",
                str(self.base / "run"), "--storage-driver", "vfs", *args]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def buildah(lam: Lamina, tmp_path: Path) -> Buildah:
    layout = tmp_path / "busybox-oci"
    lam.save(["busybox"], layout, fmt="oci-dir")
    b = Buildah(tmp_path / "buildah")
    image = b("pull", "-q", f"oci:{layout}").strip().splitlines()[-1]
    b("tag", image, "docker.io/library/busybox:latest")
    return b


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_lamina_and_buildah_agree(
    case: str,
    lam: Lamina,
    context: Path,
    buildah: Buildah,
    build,
    image_tree,  # type: ignore[no-untyped-def]
) -> None:
    (context / "src").mkdir()
    (context / "src" / "one.txt").write_text("one\n")
    (context / "src" / "two.txt").write_text("two\n")
    (context / "src" / "nested").mkdir()
    (context / "src" / "nested" / "deep.txt").write_text("deep\n")
    (context / "top.txt").write_text("top\n")
    os.chmod(context / "top.txt", 0o640)
    (context / "Dockerfile").write_text(CASES[case])

    built = build(tags=[f"cmp-{case}"])
    buildah("bud", "--layers", "--isolation", "chroot", "--pull=never", "-q",
            "-t", f"cmp-{case}", str(context))  # fmt: skip
    theirs = json.loads(buildah("inspect", "--type", "image", f"cmp-{case}"))["OCIv1"]["config"]
    theirs.get("Labels", {}).pop("io.buildah.version", None)
    ours = lam.config(lam.resolve(built.id)).container_config
    for name in CONFIG_FIELDS:
        assert (ours.get(name) or None) == (theirs.get(name) or None), name

    container = buildah("from", "--pull=never", f"cmp-{case}").strip()
    mountpoint = Path(buildah("mount", container).strip())
    try:
        with image_tree(f"cmp-{case}") as root:
            mine, other = tree(root), tree(mountpoint)
    finally:
        buildah("rm", container)
    # buildah's RUN leaves the empty mount points it made (BuildKit and lamina remove them).
    stubs = {k for k in other.keys() - mine.keys() if k in BUILDAH_STUBS}
    if "RUN" not in CASES[case]:
        assert stubs == set()  # without a RUN, buildah has made no mount point either
    assert mine.keys() == other.keys() - stubs, sorted(mine.keys() ^ other.keys())
    assert {k: v for k, v in mine.items() if other[k] != v} == {}

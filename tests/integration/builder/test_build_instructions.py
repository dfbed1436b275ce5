"""Every Dockerfile instruction, built for real (runc over overlayfs) on a busybox base."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from lamina.api import Lamina

# Every test here runs whole builds under runc: `make test-fast` leaves them to `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_instruction_sets_config_history_and_files(
    lam: Lamina,
    context: Path,
    build,
    image_tree,  # type: ignore[no-untyped-def]
) -> None:
    (context / "hello.txt").write_text("hello\n")
    (context / "dir").mkdir()
    (context / "dir" / "a.txt").write_text("a\n")
    (context / "dir" / "sub").mkdir()
    (context / "dir" / "sub" / "b.txt").write_text("b\n")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        info = tarfile.TarInfo("unpacked/inside.txt")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"inside\n"))
    (context / "files.tar.gz").write_bytes(data.getvalue())
    built = build(
        """\
FROM busybox
ARG GREETING=hi
ENV APP_HOME=/srv/app PLAIN=value
LABEL org.example.name="demo" version=1
MAINTAINER someone@example.com
WORKDIR $APP_HOME
COPY hello.txt ./
COPY dir /data/
ADD files.tar.gz /opt/
RUN echo "$GREETING from $APP_HOME" > greeting && cat greeting
SHELL ["/bin/sh", "-e", "-c"]
RUN echo shell ok
EXPOSE 8080 53/udp
VOLUME /data
USER app
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s CMD ["true"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo run"]
""",
        tags=["demo:1"],
    )
    assert "hi from /srv/app" in built.output()
    config = lam.config(lam.resolve("demo:1")).container_config
    assert "APP_HOME=/srv/app" in config["Env"] and "PLAIN=value" in config["Env"]
    # MAINTAINER sets the image's Author, not a label (Dockerfile reference, MAINTAINER).
    assert config["Labels"] == {"org.example.name": "demo", "version": "1"}
    assert lam.inspect("demo:1")["Author"] == "someone@example.com"
    assert config["WorkingDir"] == "/srv/app"
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}}
    assert config["User"] == "app"
    assert config["StopSignal"] == "SIGINT"
    assert config["Healthcheck"]["Test"] == ["CMD", "true"]
    assert config["OnBuild"] == ["RUN echo triggered"]
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Cmd"] == ["echo run"]
    assert config["Shell"] == ["/bin/sh", "-e", "-c"]

    history = lam.config(lam.resolve("demo:1")).history
    texts = [h.created_by for h in history]
    assert (
        'RUN |1 GREETING=hi /bin/sh -c echo "$GREETING from $APP_HOME" > greeting '
        "&& cat greeting # lamina" in texts
    )
    assert "COPY hello.txt ./ # lamina" in texts
    assert "ENV APP_HOME=/srv/app PLAIN=value" in texts
    assert "WORKDIR /srv/app" in texts
    assert 'CMD ["echo run"]' in texts
    # 19 instructions after FROM; ONBUILD commits no history entry (BuildKit dispatchOnbuild).
    assert len(history) == 1 + 18
    assert all(h.comment == "buildkit.dockerfile.v0" for h in history[-18:])
    assert next(h for h in history if h.created_by.startswith("ENV")).empty_layer
    assert not next(h for h in history if h.created_by.startswith("COPY hello")).empty_layer

    with image_tree("demo:1") as root:
        assert (root / "srv/app/hello.txt").read_text() == "hello\n"
        assert (root / "srv/app/greeting").read_text() == "hi from /srv/app\n"
        assert (root / "data/a.txt").read_text() == "a\n"
        assert (root / "data/sub/b.txt").read_text() == "b\n"
        assert not (root / "data/dir").exists()  # a directory's contents, not the directory
        assert (root / "opt/unpacked/inside.txt").read_text() == "inside\n"
        st = os.stat(root / "srv/app/hello.txt")
        assert (st.st_uid, st.st_gid) == (0, 0)
        # /etc/hosts and /etc/resolv.conf were bound in, never baked into a layer.
        assert (root / "etc/hosts").exists() is False
        assert (root / "etc/resolv.conf").exists() is False


def test_onbuild_triggers_run_in_the_child(lam: Lamina, build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build("FROM busybox\nONBUILD RUN echo from-trigger > /trigger\n", tags=["parent"])
    child = build("FROM parent\nRUN cat /trigger\n", tags=["child"])
    assert "from-trigger" in child.output()
    assert "OnBuild" not in lam.config(lam.resolve("child")).container_config


def test_user_then_run_id_and_chown_by_name(
    lam: Lamina,
    context: Path,
    build,
    image_tree,  # type: ignore[no-untyped-def]
) -> None:
    (context / "owned.txt").write_text("mine\n")
    built = build(
        """\
FROM busybox
COPY --chown=app:staff owned.txt /home/app/owned.txt
COPY --chown=app --chmod=600 owned.txt /home/app/private.txt
COPY --chown=1234:4321 owned.txt /numeric.txt
USER app
RUN id && touch /home/app/by-app
""",
        tags=["users"],
    )
    assert "uid=1000(app) gid=1000(app)" in built.output()
    with image_tree("users") as root:
        st = os.stat(root / "home/app/owned.txt")
        assert (st.st_uid, st.st_gid) == (1000, 50)
        st = os.stat(root / "home/app/private.txt")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o600)
        st = os.stat(root / "numeric.txt")
        assert (st.st_uid, st.st_gid) == (1234, 4321)
        assert os.stat(root / "home/app/by-app").st_uid == 1000
        # /home/app existed with its owner: the COPY layer kept it, not reset it to root.
        assert os.stat(root / "home/app").st_uid == 1000


def test_copy_rules_trailing_slash_wildcards_and_existing_dirs(
    context: Path,
    build,
    image_tree,  # type: ignore[no-untyped-def]
) -> None:
    for name in ("a.py", "b.py", "c.txt"):
        (context / name).write_text(name)
    build(
        """\
FROM busybox
COPY a.py /renamed.py
COPY a.py /newdir/
COPY *.py /py/
COPY c.txt /etc
WORKDIR /w
COPY c.txt rel.txt
""",
        tags=["copies"],
    )
    with image_tree("copies") as root:
        assert (root / "renamed.py").read_text() == "a.py"
        assert (root / "newdir/a.py").read_text() == "a.py"
        assert sorted(os.listdir(root / "py")) == ["a.py", "b.py"]
        assert (root / "etc/c.txt").read_text() == "c.txt"  # existing directory: copied into
        assert (root / "w/rel.txt").read_text() == "c.txt"


def test_heredocs_in_run_and_copy(build, image_tree) -> None:  # type: ignore[no-untyped-def]
    built = build(
        """\
# syntax=docker/dockerfile:1
FROM busybox
ARG NAME=world
RUN <<EOF
echo "line one"
echo "line two" > /from-heredoc
echo "line one"
echo "line two" > /from-heredoc
EOF
COPY <<EOT /etc/motd
hello ${NAME}
EOT
""",
        tags=["heredoc"],
    )
    assert "line one" in built.output()
    with image_tree("heredoc") as root:
        assert (root / "from-heredoc").read_text() == "line two\n"
        assert (root / "etc/motd").read_text() == "hello world\n"


def test_dockerignore_excludes_files(context: Path, build, image_tree) -> None:  # type: ignore[no-untyped-def]
    (context / "keep.txt").write_text("keep")
    (context / "secret.key").write_text("no")
    (context / "logs").mkdir()
    (context / "logs" / "x.log").write_text("no")
    (context / "logs" / "important.log").write_text("yes")
    (context / ".dockerignore").write_text("*.key\nlogs/*\n!logs/important.log\n")
    build("FROM busybox\nCOPY . /ctx/\n", tags=["ignored"])
    with image_tree("ignored") as root:
        names = sorted(str(p.relative_to(root / "ctx")) for p in (root / "ctx").rglob("*"))
    assert "keep.txt" in names and "logs/important.log" in names
    assert "secret.key" not in names and "logs/x.log" not in names


def test_workdir_creates_its_directory_as_a_layer_once(lam: Lamina, build) -> None:  # type: ignore[no-untyped-def]
    build("FROM busybox\nWORKDIR /new/dir\nWORKDIR /tmp\n", tags=["wd"])
    history = lam.config(lam.resolve("wd")).history
    new, existing = history[-2], history[-1]
    assert new.created_by == "WORKDIR /new/dir" and not new.empty_layer
    assert existing.created_by == "WORKDIR /tmp" and existing.empty_layer
    assert len(lam.resolve("wd").layers) == len(lam.resolve("busybox").layers) + 1


def test_from_scratch_and_copy_from_an_image(build, image_tree) -> None:  # type: ignore[no-untyped-def]
    build("FROM scratch\nCOPY --from=busybox /etc/passwd /passwd\n", tags=["tiny"])
    with image_tree("tiny") as root:
        assert sorted(os.listdir(root)) == ["passwd"]
        assert "app:x:1000" in (root / "passwd").read_text()

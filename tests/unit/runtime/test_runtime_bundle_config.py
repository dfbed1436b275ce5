"""config.json generation: Docker's defaults, and nothing runc would refuse on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

import lamina.runtime as runtime
from lamina.errors import InvalidInputError
from lamina.runtime import (
    DEFAULT_PATH,
    BindMount,
    TmpfsMount,
    User,
    bundle_config,
    exit_code_for_runc_error,
    mount_targets,
    write_bundle,
)

START = "runc run failed: unable to start container process: "
BUNDLE = Path("/var/lib/lamina/containers/c1/bundle")


def config(**kw: Any) -> dict[str, Any]:
    return bundle_config(["sh", "-c", "true"], bundle_dir=BUNDLE, **kw)


def mount(cfg: dict[str, Any], destination: str) -> dict[str, Any]:
    (found,) = [m for m in cfg["mounts"] if m["destination"] == destination]
    return cast(dict[str, Any], found)


def test_public_surface_is_all() -> None:
    assert {n for n in dir(runtime) if not n.startswith("_")} == set(runtime.__all__)


def test_docker_default_capabilities_and_no_new_privileges() -> None:
    process = config()["process"]
    caps = process["capabilities"]
    assert set(caps["bounding"]) == {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
    assert caps["effective"] == caps["permitted"] == caps["bounding"]
    assert "ambient" not in caps and "inheritable" not in caps
    assert process["noNewPrivileges"] is True
    assert process["terminal"] is False


def test_no_rlimits_and_no_cgroup_resources() -> None:
    cfg = config()
    assert "rlimits" not in cfg["process"]
    assert "resources" not in cfg["linux"]


def test_masked_and_readonly_paths() -> None:
    linux = config()["linux"]
    assert "/proc/kcore" in linux["maskedPaths"]
    assert "/sys/devices/virtual/powercap" in linux["maskedPaths"]
    assert len(linux["maskedPaths"]) == 11
    assert linux["readonlyPaths"] == [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]


def test_namespaces_by_network_mode() -> None:
    host = {n["type"] for n in config(network="host")["linux"]["namespaces"]}
    none = {n["type"] for n in config(network="none")["linux"]["namespaces"]}
    assert host == {"pid", "ipc", "uts", "mount"}
    assert none == host | {"network"}
    assert all("path" not in n for n in config(network="none")["linux"]["namespaces"])


def test_unknown_network_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="bridge"):
        config(network="bridge")


def test_standard_mounts() -> None:
    cfg = config()
    assert mount(cfg, "/proc")["type"] == "proc"
    assert mount(cfg, "/dev")["type"] == "tmpfs"
    assert mount(cfg, "/dev/pts")["type"] == "devpts"
    assert mount(cfg, "/dev/shm")["type"] == "tmpfs"
    assert mount(cfg, "/dev/mqueue")["type"] == "mqueue"
    assert "ro" in mount(cfg, "/sys")["options"]


def test_hosts_and_resolv_conf_come_from_the_bundle_read_only() -> None:
    cfg = config()
    hosts = mount(cfg, "/etc/hosts")
    assert hosts["source"] == str(BUNDLE / "hosts")
    assert "ro" in hosts["options"]
    resolv = mount(cfg, "/etc/resolv.conf")
    assert resolv["source"] == str(BUNDLE / "resolv.conf")
    assert "ro" in resolv["options"]


def test_process_fields() -> None:
    cfg = config(
        env=["A=1"],
        cwd="/src/../app",
        user=User(1000, 50, (7, 8)),
        hostname="box",
        readonly_rootfs=True,
        rootfs="/merged",
    )
    process = cfg["process"]
    assert process["args"] == ["sh", "-c", "true"]
    assert process["env"] == [f"PATH={DEFAULT_PATH}", "A=1"]
    assert process["cwd"] == "/app"
    assert process["user"] == {"uid": 1000, "gid": 50, "additionalGids": [7, 8]}
    assert cfg["hostname"] == "box"
    assert cfg["root"] == {"path": "/merged", "readonly": True}


def test_image_path_is_kept() -> None:
    assert config(env=["PATH=/opt/bin"])["process"]["env"] == ["PATH=/opt/bin"]


def test_extra_binds_and_tmpfs() -> None:
    cfg = config(
        binds=[
            BindMount(Path("/host/cache"), "/cache", readonly=False),
            BindMount(Path("/host/secret"), "/run/secrets/s"),
        ],
        tmpfs=[TmpfsMount("/scratch", size=1 << 20)],
    )
    cache = mount(cfg, "/cache")
    assert cache["source"] == "/host/cache"
    assert "ro" not in cache["options"] and "rbind" in cache["options"]
    assert "ro" in mount(cfg, "/run/secrets/s")["options"]
    assert "size=1048576" in mount(cfg, "/scratch")["options"]


@pytest.mark.parametrize(
    "kw",
    [
        {"binds": [BindMount(Path("/h"), "relative")]},
        {"binds": [BindMount(Path("/h"), "/")]},
        {"tmpfs": [TmpfsMount("/a/../")]},
        {"cwd": "relative"},
    ],
)
def test_bad_paths_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        config(**kw)


def test_empty_command_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no command"):
        bundle_config([], bundle_dir=BUNDLE)


def test_mount_targets_are_what_runc_creates_in_the_rootfs() -> None:
    targets = mount_targets(config(binds=[BindMount(Path("/h"), "/cache")]))
    assert targets == ["/proc", "/dev", "/sys", "/etc/hosts", "/etc/resolv.conf", "/cache"]


def test_config_is_json() -> None:
    cfg = config()
    assert json.loads(json.dumps(cfg)) == cfg


def test_write_bundle(tmp_path: Path) -> None:
    cfg = bundle_config(["true"], bundle_dir=tmp_path, hostname="builder")
    path = write_bundle(tmp_path, tmp_path / "merged", cfg)
    written = json.loads(Path(path).read_text())
    assert written["root"]["path"] == str(tmp_path / "merged")
    assert cfg["root"]["path"] == "rootfs"
    hosts = (tmp_path / "hosts").read_text()
    assert "127.0.0.1\tlocalhost" in hosts and "builder" in hosts
    assert "nameserver" in (tmp_path / "resolv.conf").read_text()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (
            START + 'exec: "x": executable file not found in $PATH',
            127,
        ),
        (
            START + 'exec: "/x": stat /x: no such file or directory',
            127,
        ),
        (
            'runc run failed: unable to start container process: exec: "/etc": permission denied',
            126,
        ),
        (
            "runc run failed: unable to start container process: error during container init: "
            "error mounting",
            None,
        ),
    ],
)
def test_runc_errors_map_to_docker_exit_codes(message: str, code: int | None) -> None:
    assert exit_code_for_runc_error(message) == code

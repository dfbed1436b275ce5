"""Builds and registries: FROM pulls what the store lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_fixtures import Proxy

from lamina.api import Lamina
from lamina.builder import BuildEvent
from lamina.errors import NotFoundError

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _build(api: Lamina, ctx: Path, dockerfile: str, **options: object) -> list[BuildEvent]:
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    events: list[BuildEvent] = []
    api.build(ctx, on_event=events.append, **options)
    return events


def test_from_and_copy_from_an_absent_image_pull_it(
    lamina: Lamina, other: Lamina, proxy: Proxy, busybox_rootfs: Path, tmp_path: Path
) -> None:
    base_id = lamina.import_image(busybox_rootfs, "base:1")
    base = f"{proxy.host}/lamina/base:1"
    lamina.push("base:1", base)
    proxy.reset()
    events = _build(
        other,
        tmp_path / "ctx",
        f"FROM {base}\nRUN echo built > /built\nCOPY --from={base} /bin/busybox /copy\n",
        tags=["app:1"],
    )
    assert other.resolve(base).id == base_id
    output = "".join(e.text for e in events if e.kind == "output")
    assert f"{base}: not in the store, pulling" in output
    # pulled once: COPY --from finds it in the store
    assert len([s for s in proxy.log if s.method == "GET" and "/manifests/" in s.path]) == 1
    assert other.resolve("app:1")


def test_from_an_image_no_registry_has_is_not_found(
    other: Lamina, proxy: Proxy, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="pulling it failed"):
        _build(other, tmp_path / "ctx", f"FROM {proxy.host}/none/such:1\nRUN true\n")


def test_build_cache_through_the_registry_runs_nothing_on_an_empty_store(
    lamina: Lamina, other: Lamina, proxy: Proxy, busybox_rootfs: Path, tmp_path: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    base = f"{proxy.host}/lamina/base:1"
    lamina.push("base:1", base)
    cache = f"type=registry,ref={proxy.host}/lamina/cache:main"
    dockerfile = (
        f"FROM {base} AS tools\nRUN echo tool > /tool\n"
        f"FROM {base}\nENV GREETING=hi\nRUN echo $GREETING > /greeting\n"
        "COPY --from=tools /tool /tool\nCOPY file /file\nRUN cat /greeting /tool > /both\n"
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "file").write_text("context file\n")
    first = _build(lamina, tmp_path / "a", dockerfile, tags=["app:1"],
                   cache_to=[cache + ",mode=max"])  # fmt: skip
    assert any("cache exported" in e.text for e in first)
    built = lamina.resolve("app:1")

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "file").write_text("context file\n")
    events = _build(other, tmp_path / "b", dockerfile, tags=["app:1"], cache_from=[cache])
    steps = [e.step for e in events if e.kind == "step" and "] FROM " not in e.text]
    cached = {e.step for e in events if e.kind == "cached"}
    assert steps and set(steps) == cached
    assert not [e for e in events if e.kind in ("done", "miss")]  # no step ran
    assert other.resolve("app:1").digest == built.digest


def test_a_missing_cache_is_a_warning_and_the_build_goes_on(
    lamina: Lamina, proxy: Proxy, busybox_rootfs: Path, tmp_path: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    events = _build(lamina, tmp_path / "c", "FROM base:1\nRUN echo x > /x\n",
                    cache_from=[f"type=registry,ref={proxy.host}/no/cache:1"])  # fmt: skip
    assert any(e.kind == "warning" and "building without it" in e.text for e in events)
    assert any(e.kind == "done" for e in events)

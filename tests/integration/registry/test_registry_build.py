"""Builds and registries: FROM pulls what the store lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_fixtures import Proxy

from lamina.api import Lamina
from lamina.builder import BuildEvent
from lamina.errors import NotFoundError


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

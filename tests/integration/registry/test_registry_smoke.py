"""Push and pull against a real registry: the round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_fixtures import Registry

from lamina.api import Lamina

pytestmark = pytest.mark.integration


def test_push_then_pull_into_an_empty_store_gives_the_same_image(
    lamina: Lamina, other: Lamina, registry: Registry, busybox_rootfs: Path
) -> None:
    image_id = lamina.import_image(busybox_rootfs, "base:1")
    pushed = lamina.push("base:1", f"{registry.host}/lamina/base:1")
    assert pushed.uploaded == 2  # one layer and the config
    pulled = other.pull(f"{registry.host}/lamina/base:1")
    assert pulled.image_id == image_id
    assert pulled.digest == pushed.digest
    assert pulled.layers_downloaded == 1
    # indexed and unpacked in the pull, as every layer that enters the store is
    (layer,) = other.resolve(pulled.reference).layers
    assert other.store.file_index.has(layer.diff_id)
    assert other.store.snapshot_path(layer.diff_id).is_dir()


def test_pull_keeps_compressed_blobs_only_when_asked(
    lamina: Lamina, other: Lamina, registry: Registry, busybox_rootfs: Path, tmp_path: Path
) -> None:
    lamina.import_image(busybox_rootfs, "base:1")
    ref = f"{registry.host}/lamina/base:1"
    pushed = lamina.push("base:1", ref)
    (layer,) = other.resolve(other.pull(ref).reference).layers
    assert not other.store.content.has(layer.digest)  # the snapshot is the layer's one copy
    kept = Lamina(tmp_path / "kept")
    try:
        (again,) = kept.resolve(kept.pull(ref, keep_blobs=True).reference).layers
        assert again.digest == layer.digest and kept.store.content.has(again.digest)
        # its push sends that same blob: the same manifest
        assert kept.push(ref, f"{registry.host}/lamina/copy:1").digest == pushed.digest
    finally:
        kept.store.close()

"""History rows read as `docker image history` shows them."""

from __future__ import annotations

from lamina.api._history import MISSING, history_rows
from lamina.oci import History, ImageConfig

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
ID = "sha256:" + "f" * 64


def test_newest_first_sizes_on_layer_steps_id_on_top() -> None:
    config = (
        ImageConfig.new()
        .with_layer(D1, History(created="2024-01-01T00:00:00Z", created_by="ADD rootfs /"))
        .with_layer(None, History(created_by='CMD ["sh"]'))
        .with_layer(D2, History(created_by="RUN /bin/sh -c make", comment="buildkit.dockerfile.v0"))
    )
    rows = history_rows(ID, config, [100, 7])
    assert [r.created_by for r in rows] == ["RUN /bin/sh -c make", 'CMD ["sh"]', "ADD rootfs /"]
    assert [r.size for r in rows] == [7, 0, 100]
    assert [r.id for r in rows] == [ID, MISSING, MISSING]
    assert rows[0].comment == "buildkit.dockerfile.v0"


def test_layers_without_history_still_get_rows() -> None:
    config = ImageConfig.new()
    rows = history_rows(ID, config, [5, 6])
    assert [r.size for r in rows] == [6, 5]
    assert rows[0].id == ID

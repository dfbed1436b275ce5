"""ContainerRecord is a plain read-only class (`lamina run` loads no dataclass)."""

from __future__ import annotations

import pytest

from lamina.store import ContainerRecord


def test_container_record_fields_equality_and_immutability() -> None:
    rec = ContainerRecord("abc", "name", "sha256:" + "1" * 64, {"status": "created"}, 1.5)
    assert (rec.id, rec.name, rec.image, rec.state, rec.created) == (
        "abc", "name", "sha256:" + "1" * 64, {"status": "created"}, 1.5)  # fmt: skip
    assert rec == ContainerRecord("abc", "name", "sha256:" + "1" * 64, {"status": "created"}, 1.5)
    assert rec != ContainerRecord("abc", "name", "sha256:" + "1" * 64, {"status": "exited"}, 1.5)
    with pytest.raises(AttributeError):
        rec.state = {}
    with pytest.raises(TypeError):
        hash(rec)  # its state is a dict, as with the frozen dataclass

"""Cache keys and miss explanations: pure values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamina.builder import StepInputs, explain_miss, instruction_text
from lamina.dockerfile import Copy, Location, Run

BASE = StepInputs("sha256:parent", "RUN x", (("A", "1"),), (("PATH", "/bin"),), "linux/amd64")


def with_(**changes: object) -> StepInputs:
    fields = {**BASE.__dict__, **changes}
    return StepInputs(**fields)


def test_key_is_stable_and_depends_on_every_input() -> None:
    assert BASE.key() == with_().key()
    keys = {
        BASE.key(),
        with_(parent="sha256:other").key(),
        with_(instruction="RUN y").key(),
        with_(args=(("A", "2"),)).key(),
        with_(env=(("PATH", "/usr/bin"),)).key(),
        with_(platform="linux/arm64").key(),
        with_(sources=(("f", "sha256:1"),)).key(),
        with_(extra=(("from", "sha256:x"),)).key(),
    }
    assert len(keys) == 8


def test_instruction_text_ignores_where_the_instruction_is() -> None:
    a = Run(("echo hi",), loc=Location("Dockerfile", 3, 3, "RUN echo hi"))
    b = Run(("echo hi",), loc=Location("other", 9, 9, "RUN  echo hi"))
    assert instruction_text(a) == instruction_text(b)
    assert instruction_text(a) != instruction_text(Run(("echo ho",)))


def test_copy_flags_are_part_of_the_instruction() -> None:
    plain = Copy(("a",), "/b")
    assert instruction_text(plain) != instruction_text(Copy(("a",), "/b", chown="app"))
    assert instruction_text(plain) != instruction_text(Copy(("a",), "/b", chmod="600"))


@given(st.dictionaries(st.text(min_size=1), st.text(), max_size=5))
def test_source_order_in_a_key_is_the_order_given(files: dict[str, str]) -> None:
    items = tuple(sorted(files.items()))
    assert with_(sources=items).key() == with_(sources=items).key()


def test_explanations_name_the_changed_input() -> None:
    old = BASE.to_json()
    assert explain_miss(None, BASE) == "not built before"
    assert explain_miss(old, with_(instruction="RUN y")) == "the instruction changed"
    assert explain_miss(old, with_(args=(("A", "2"),))) == "build arg changed: A"
    assert explain_miss(old, with_(env=(("PATH", "/x"), ("B", "1")))) == "env changed: B, PATH"
    assert explain_miss(old, with_(parent="sha256:new")) == "the previous step changed"
    src = with_(sources=(("a.txt", "1"), ("b.txt", "1"))).to_json()
    changed = with_(sources=(("a.txt", "2"), ("c.txt", "1")))
    assert explain_miss(src, changed) == (
        "file changed: a.txt (modified), b.txt (removed), c.txt (added)"
    )
    assert "cache entry was removed" in explain_miss(old, BASE)


def test_public_surface_is_all() -> None:
    import lamina.builder as build

    # Names load on first use (start-up time): __all__ is exactly what resolves.
    assert set(build.__all__) == set(build._WHERE)
    for name in build.__all__:
        assert getattr(build, name) is not None
    with pytest.raises(AttributeError):
        build.no_such_name  # noqa: B018

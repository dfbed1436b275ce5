"""`import --change` reads instructions as a Dockerfile would."""

from __future__ import annotations

import re

import pytest

from lamina.api._instructions import apply_changes
from lamina.errors import InvalidInputError
from lamina.oci import ImageConfig


def test_changes_expand_and_normalise_like_a_dockerfile() -> None:
    config = apply_changes(
        ImageConfig.new(),
        [
            'ENV A=1 B="2 3"',
            "WORKDIR /srv/$A",
            "EXPOSE 80 53/udp",
            'CMD ["/bin/cat", "/x"]',
            "USER app:app",
            'LABEL k="v w"',
        ],
    )
    assert config.container_config == {
        "Env": ["A=1", "B=2 3"],
        "WorkingDir": "/srv/1",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Cmd": ["/bin/cat", "/x"],
        "User": "app:app",
        "Labels": {"k": "v w"},
    }


@pytest.mark.parametrize("change", ["RUN true", "COPY a b", "FROM x"])
def test_build_steps_are_not_changes(change: str) -> None:
    with pytest.raises(InvalidInputError):
        apply_changes(ImageConfig.new(), [change])


@pytest.mark.parametrize("signal", ["FOO", "SIGFOO", "0", "SIGRTMIN+99"])
def test_a_stopsignal_change_must_name_a_signal(signal: str) -> None:
    # moby's dispatchStopSignal parses the signal: `commit -c 'STOPSIGNAL FOO'` is refused.
    with pytest.raises(InvalidInputError, match=f"^Invalid signal: {re.escape(signal)}$"):
        apply_changes(ImageConfig.new(), [f"STOPSIGNAL {signal}"])
    assert apply_changes(ImageConfig.new(), ["STOPSIGNAL usr1"]).container_config == {
        "StopSignal": "usr1"
    }


def test_an_invalid_change_is_named_without_a_line_number() -> None:
    with pytest.raises(InvalidInputError) as e:
        apply_changes(ImageConfig.new(), ["EXPOSE 99999"])
    assert "--change:2" not in e.value.message and "EXPOSE 99999" in e.value.message

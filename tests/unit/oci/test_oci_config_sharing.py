"""ImageConfig's copies share what they do not change (a build of n steps made n deep
copies of histories up to n long: 4,000 ENV lines took 43 s to build), and sharing must
never let a change reach another config: nothing a caller holds is part of a config."""

from __future__ import annotations

from lamina.oci import History, ImageConfig

DIFF = "sha256:" + "a" * 64


def _config(steps: int) -> ImageConfig:
    config = ImageConfig.new().with_container_config(Env=["PATH=/bin"], Labels={"a": "1"})
    for n in range(steps):
        config = config.with_layer(None, History(f"2024-01-0{1 + n % 9}T00:00:00Z", f"s{n}"))
    return config


def test_a_new_step_shares_the_history_before_it() -> None:
    before = _config(3)
    after = before.with_layer(DIFF, History("2024-02-01T00:00:00Z", "RUN x"))
    old, new = before._doc["history"], after._doc["history"]
    assert len(new) == len(old) + 1
    assert all(a is b for a, b in zip(old, new[:-1], strict=False))
    assert before.diff_ids == () and after.diff_ids == (DIFF,)
    assert len(before.history) == 3 and after.history[-1].created_by == "RUN x"


def test_nothing_a_caller_holds_changes_a_config() -> None:
    env = ["PATH=/bin", "A=1"]
    labels = {"k": "v"}
    config = _config(2).with_container_config(Env=env, Labels=labels)
    digest = config.digest()
    env.append("B=2")
    labels["k"] = "changed"
    got = config.container_field("Env")
    got.append("C=3")
    config.container_config["Env"].append("D=4")
    config.to_json()["config"]["Labels"]["k"] = "x"
    config.with_container_config(Env=["E=5"]).with_fields(author="me")
    assert config.digest() == digest
    assert config.container_field("Env") == ["PATH=/bin", "A=1"]
    assert config.container_field("Labels") == {"k": "v"}
    assert config.container_field("Missing") is None


def test_copies_are_the_configs_deep_copies_would_have_made() -> None:
    base = _config(4)
    changed = base.with_container_config(Env=None, Cmd=["sh"]).with_fields(author="a")
    doc = base.to_json()
    doc["config"].pop("Env")
    doc["config"]["Cmd"] = ["sh"]
    doc["author"] = "a"
    assert changed.to_json() == doc
    assert changed.to_bytes() == ImageConfig(doc).to_bytes()


def test_last_created_is_the_newest_history_time_that_is_set() -> None:
    config = _config(3)  # 2024-01-01, -02, -03
    assert config.last_created() == "2024-01-03T00:00:00Z"
    blank = config.with_layer(None, History("", "no time"))
    assert blank.last_created() == "2024-01-03T00:00:00Z"
    assert ImageConfig.new().last_created() == ""

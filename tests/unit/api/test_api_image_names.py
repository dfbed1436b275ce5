"""An image's names (tags and repo digests) under moby's rmi rules, and `images`' view of
them: the dangling and reference filters."""

from __future__ import annotations

import pytest

from lamina.api import ImageSummary
from lamina.api._filters import parse_image_filters, select_images
from lamina.api._image_names import is_single_reference, removed_with, shown, sorted_names

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
BUSY = "docker.io/library/busybox"
APP = "127.0.0.1:5000/app"


@pytest.mark.parametrize(
    ("names", "single"),
    [
        ([], False),
        ([f"{BUSY}:latest"], True),
        ([f"{BUSY}@{D1}"], True),
        ([f"{BUSY}:latest", f"{BUSY}@{D1}", f"{BUSY}@{D2}"], True),  # one repo, one tag
        ([f"{BUSY}@{D1}", f"{BUSY}@{D2}"], True),
        ([f"{BUSY}:latest", f"{BUSY}:1"], False),  # two tags
        ([f"{BUSY}:latest", f"{APP}@{D1}"], False),  # the digest of another repository
        ([f"{BUSY}@{D1}", f"{APP}@{D1}"], False),
        ([f"{BUSY}:latest", f"{BUSY}@{D1}", f"{APP}@{D2}"], False),
    ],
)
def test_a_single_reference_is_one_tag_and_the_digests_of_its_repository(
    names: list[str], single: bool
) -> None:
    assert is_single_reference(names) is single


def test_untagging_the_last_tag_of_a_repository_takes_its_digests() -> None:
    names = [f"{BUSY}:latest", f"{BUSY}@{D2}", f"{BUSY}@{D1}", f"{APP}@{D1}"]
    assert removed_with(f"{BUSY}:latest", names) == [
        f"{BUSY}:latest",
        f"{BUSY}@{D1}",
        f"{BUSY}@{D2}",
    ]
    # Another tag of the repository is left: its digests stay.
    assert removed_with(f"{BUSY}:latest", [*names, f"{BUSY}:1"]) == [f"{BUSY}:latest"]
    # A digest takes only itself.
    assert removed_with(f"{BUSY}@{D1}", names) == [f"{BUSY}@{D1}"]


def test_names_are_shown_familiar_in_the_reference_stores_order() -> None:
    assert shown(f"{BUSY}@{D1}") == f"busybox@{D1}"
    assert shown(f"{BUSY}:latest") == "busybox:latest"
    assert sorted_names([f"{BUSY}@{D1}", f"{APP}:1", f"{BUSY}:latest"]) == [
        f"{APP}:1",
        f"{BUSY}:latest",  # ":" sorts before "@"
        f"{BUSY}@{D1}",
    ]


def _summary(
    tags: tuple[tuple[str, str], ...] = (), digests: tuple[tuple[str, str], ...] = ()
) -> ImageSummary:
    return ImageSummary(id=D1, digest=D2, repo_tags=tags, created="", content_size=0,
                        repo_digests=digests)  # fmt: skip


def _select(images: list[ImageSummary], *filters: str) -> list[ImageSummary]:
    return select_images(images, parse_image_filters(filters), lambda ref: "")


def test_an_image_with_only_a_repo_digest_is_not_dangling() -> None:
    by_digest = _summary(digests=(("app", D1),))
    nameless = _summary()
    assert (by_digest.dangling, nameless.dangling) == (False, True)
    assert _select([by_digest, nameless], "dangling=true") == [nameless]
    assert _select([by_digest, nameless], "dangling=false") == [by_digest]


def test_the_reference_filter_matches_repo_digests_and_keeps_only_matching_names() -> None:
    image = _summary(tags=(("busybox", "1"),), digests=(("app", D1), ("busybox", D2)))
    assert _select([image], "reference=app") == [_summary(digests=(("app", D1),))]
    assert _select([image], f"reference=app@{D1}") == [_summary(digests=(("app", D1),))]
    assert _select([image], "reference=busybox:1") == [_summary(tags=(("busybox", "1"),))]
    assert _select([image], "reference=busybox") == [
        _summary(tags=(("busybox", "1"),), digests=(("busybox", D2),))
    ]
    assert _select([image], "reference=nope") == []

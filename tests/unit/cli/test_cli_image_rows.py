"""`images` rows from an image's tags and repo digests, as docker/cli's formatter makes
them (cli/command/formatter/image.go: isDangling, imageFormatTaggedAndDigest)."""

from __future__ import annotations

from lamina.api import ImageSummary
from lamina.cli._image_cmds import image_names, image_rows

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
ID = "sha256:" + "f" * 64


def _image(tags: tuple[tuple[str, str], ...] = (),
           digests: tuple[tuple[str, str], ...] = ()) -> ImageSummary:  # fmt: skip
    return ImageSummary(id=ID, digest=D1, repo_tags=tags, created="", content_size=0,
                        repo_digests=digests)  # fmt: skip


def test_a_dangling_image_is_one_none_row() -> None:
    for digests in (False, True):
        assert image_names(_image(), digests=digests, need_digest=digests) == [
            ("<none>", "<none>", "<none>")
        ]


def test_a_digest_only_image_is_a_repository_row_with_tag_none() -> None:
    image = _image(digests=(("app", D1), ("app", D2), ("other", D1)))
    assert image_names(image, digests=False, need_digest=False) == [
        ("app", "<none>", ""),
        ("other", "<none>", ""),
    ]
    # `{{.Digest}}` in the format alone does not make a row per digest: --digests does.
    assert image_names(image, digests=False, need_digest=True) == [
        ("app", "<none>", ""),
        ("other", "<none>", ""),
    ]
    assert image_names(image, digests=True, need_digest=True) == [
        ("app", "<none>", D1),
        ("app", "<none>", D2),
        ("other", "<none>", D1),
    ]


def test_a_tag_shows_its_repositorys_digests_only_when_digests_are_asked_for() -> None:
    image = _image(tags=(("app", "1"), ("app", "2"), ("built", "1")), digests=(("app", D1),))
    assert image_names(image, digests=False, need_digest=False) == [
        ("app", "1", "<none>"),
        ("app", "2", "<none>"),
        ("built", "1", "<none>"),
    ]  # the digest is not a row of its own beside a tag of its repository
    assert image_names(image, digests=True, need_digest=True) == [
        ("app", "1", D1),
        ("app", "2", D1),
        ("built", "1", "<none>"),
    ]
    assert image_names(image, digests=False, need_digest=True)[0] == ("app", "1", D1)


def test_rows_carry_the_name_and_digest() -> None:
    (row,) = image_rows([_image(digests=(("app", D1),))], trunc=True, digests=True)
    assert (row["Repository"], row["Tag"], row["Digest"], row["ID"]) == (
        "app", "<none>", D1, "f" * 12)  # fmt: skip

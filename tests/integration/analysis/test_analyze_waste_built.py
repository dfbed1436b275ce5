"""Images whose waste is known by construction, built for real (busybox base, RUN under
runc over overlayfs): the analysis must give the exact figures and the right lines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lamina.api import Lamina

pytestmark = pytest.mark.integration

MIB = 1 << 20


def test_a_chmod_in_a_later_run_wastes_the_whole_file_as_metadata_only(
    lam: Lamina, build: Callable[..., str]
) -> None:
    build("FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=10\nRUN chmod 600 /big\n",
          "app")  # fmt: skip
    report, _ = lam.analyze("app")
    assert report.totals.wasted_bytes == 10 * MIB
    (line,) = report.lines
    assert (line.line, line.bytes, line.kinds) == ("Dockerfile:3", 10 * MIB, ("metadata-only",))
    assert line.instruction == "RUN chmod 600 /big"
    (hidden,) = [h for h in report.hidden if h.bytes]
    assert (hidden.path, hidden.kind, hidden.layer, hidden.hidden_by) == ("big", "metadata-only",
                                                                           1, 2)  # fmt: skip
    assert report.base_layers == 1 and report.base == "busybox"
    assert report.user_totals.wasted_bytes == 10 * MIB
    assert report.user_totals.wasted_percent == 50.0


def test_file_whiteout_directory_whiteout_opaque_directory_and_overwrite(
    lam: Lamina, build: Callable[..., str]
) -> None:
    build(
        "FROM busybox\n"
        "RUN mkdir -p /d/sub /o && head -c 1000 /dev/zero > /f1 && "
        "head -c 2000 /dev/zero > /d/sub/f2 && head -c 3000 /dev/zero > /o/f3 && "
        "head -c 4000 /dev/zero > /over\n"
        "RUN rm /f1 && rm -rf /d /o && mkdir /o && echo new > /o/n && "
        "head -c 500 /dev/urandom > /over\n",
        "app",
    )
    report, layers = lam.analyze("app")
    hidden = {h.path: (h.kind, h.bytes, h.hidden_by) for h in report.hidden if h.bytes}
    assert hidden == {
        "f1": ("deleted", 1000, 2),
        "d/sub/f2": ("deleted", 2000, 2),
        "o/f3": ("deleted", 3000, 2),
        "over": ("overwritten", 4000, 2),
    }
    assert report.totals.wasted_bytes == 10000
    markers = {(e.path, e.kind) for e in layers[2].entries if e.kind in ("whiteout", "opaque")}
    assert markers == {("f1", "whiteout"), ("d", "whiteout"), ("o", "opaque")}
    assert report.layers[2].removed == 2
    assert report.lines[0].line == "Dockerfile:3"


def test_hardlinks_count_once_and_duplicates_are_found(
    lam: Lamina, build: Callable[..., str]
) -> None:
    build("FROM busybox\nRUN head -c 5000 /dev/urandom > /a && ln /a /b && cp /a /c\n"
          "RUN rm /a\n", "one")  # fmt: skip
    report, _ = lam.analyze("one")
    assert report.totals.wasted_bytes == 0  # /b still shows the content /a had
    dups = [d for d in report.duplicates if d.size == 5000]
    assert [(d.paths, d.saveable_bytes) for d in dups] == [(("b", "c"), 5000)]
    build("FROM one\nRUN rm /b\n", "two")
    report, _ = lam.analyze("two")
    assert report.totals.wasted_bytes == 5000
    assert report.lines[0].line == "Dockerfile:2"
    assert report.user_totals.wasted_bytes == 5000
    assert report.base == "one"


def test_the_base_images_own_waste_is_excluded_from_the_users(
    lam: Lamina, build: Callable[..., str]
) -> None:
    build("FROM busybox\nRUN head -c 7000 /dev/zero > /junk\nRUN rm /junk\n", "base")
    build("FROM base\nRUN head -c 300 /dev/zero > /x\nRUN rm /x\n", "app")
    report, _ = lam.analyze("app")
    assert report.totals.wasted_bytes == 7300
    assert report.base_layers == 3
    assert report.user_totals.wasted_bytes == 300
    assert report.user_totals.total_bytes == 300
    wider, _ = lam.analyze("app", base="busybox")
    assert wider.base_layers == 1
    assert wider.user_totals.wasted_bytes == 7300


def test_compare_and_store_sharing(lam: Lamina, build: Callable[..., str]) -> None:
    build("FROM busybox\nRUN head -c 100 /dev/zero > /v && echo 1 > /only-old\n", "app:1")
    build("FROM busybox\nRUN head -c 250 /dev/zero > /v && echo 2 > /only-new\n", "app:2")
    c = lam.compare("app:2", "app:1")
    assert len(c.shared_layers) == 1  # busybox, matched by content
    changes = {f.path: (f.change, f.size_delta) for f in c.files}
    assert changes == {"v": ("changed", 150), "only-new": ("added", 2),
                       "only-old": ("removed", -2)}  # fmt: skip
    assert any(g.line == "Dockerfile:2" and g.added == 1 and g.changed == 1 for g in c.groups)
    store = lam.analyze_store()
    (shared,) = [la for la in store.layers if len(la.images) > 1]
    assert len(shared.images) == 3  # busybox, app:1, app:2
    assert store.saved_bytes == 2 * shared.size


def test_commit_indexes_the_containers_layer_as_it_writes_it(lam: Lamina) -> None:
    from lamina.api import RunOptions

    passwd = next(e for e in lam.analyze("busybox")[1][0].entries if e.path == "etc/passwd")
    cid, code = lam.containers.run(
        RunOptions(
            "busybox",
            ["sh", "-c", "head -c 3000 /dev/zero > /x && rm /etc/passwd"],
            host_env={"PATH": "/bin"},
        )
    )
    assert code == 0
    image_id = lam.containers.commit(cid, "committed")
    layer = lam.resolve(image_id).layers[-1]
    assert lam.store.file_index.has(layer.diff_id)  # indexed by commit, not on first use
    report, _ = lam.analyze("committed")
    assert [(h.path, h.kind, h.bytes) for h in report.hidden if h.bytes] == [
        ("etc/passwd", "deleted", passwd.size)
    ]
    assert report.totals.wasted_bytes == passwd.size

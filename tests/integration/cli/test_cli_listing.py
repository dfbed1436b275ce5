"""`images`, `history`, `inspect`, `df` with `--format`, `images --filter/-a/-q`, and `rmi`
of several names, through the real `lamina` command over images built on busybox.

References: docker/cli's formatter (field names and headers: cli/command/formatter/image.go,
cli/command/image/formatter_history.go, disk_usage.go; `table`, `json` and tabwriter in
formatter.go), the `docker images` reference (filters: dangling, label, before, since,
reference matched as Go's path.Match against `repo:tag` and `repo`; -a shows intermediate
images), and `docker rmi` (each name reported, errors per name, exit status 1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def lamina(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina", "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
        input=stdin,
    )


def ok(root: Path, *args: str) -> str:
    done = lamina(root, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def build(root: Path, ctx: Path, dockerfile: str, *flags: str) -> str:
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ok(root, "build", "-q", *flags, str(ctx)).strip().splitlines()[-1]


@dataclass(frozen=True)
class Store:
    root: Path
    busybox: str
    app1: str
    app2: str
    dangling: str


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Store]:
    """busybox, then app:1 (tier=web), app:2 (tier=db) and an untagged image, built in order."""
    tmp = tmp_path_factory.mktemp("listing")
    root = tmp / "root"
    busybox = ok(root, "import", str(busybox_rootfs), "busybox").strip()
    images = []
    for n, tier in ((1, "web"), (2, "db"), (3, "none")):
        ctx = tmp / f"ctx{n}"
        ctx.mkdir()
        (ctx / "f").write_text(f"file {n}\n")
        tags = ["-t", f"app:{n}"] if n < 3 else []
        dockerfile = (
            f"FROM busybox\nLABEL com.example.tier={tier} com.example.n={n}\n"
            "ENV A=1 B=2\nCOPY f /f\nRUN echo step > /made\n"
        )
        images.append(build(root, ctx, dockerfile, *tags))
    yield Store(root, busybox, images[0], images[1], images[2])


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


# -- --format ---------------------------------------------------------------------------------


def test_images_format_template_prints_a_line_per_name(store: Store) -> None:
    out = ok(store.root, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert sorted(out.splitlines()) == sorted(
        [
            f"<none>:<none> {short(store.dangling)}",
            f"app:1 {short(store.app1)}",
            f"app:2 {short(store.app2)}",
            f"busybox:latest {short(store.busybox)}",
        ]
    )


def test_images_format_json_has_dockers_keys(store: Store) -> None:
    lines = ok(store.root, "images", "--format", "json", "app:1").splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert list(row) == sorted(row)
    assert {"Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository"} <= set(row)
    assert (row["Repository"], row["Tag"], row["ID"]) == ("app", "1", short(store.app1))
    assert row["CreatedSince"].endswith(" ago")
    again = json.loads(ok(store.root, "images", "--format", "{{json .}}", "app:1"))
    assert {**again, "CreatedSince": ""} == {**row, "CreatedSince": ""}  # an age moves on


def test_images_format_table_has_headers_and_docker_columns(store: Store) -> None:
    out = ok(store.root, "images", "--format", "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}", "app")
    lines = out.splitlines()
    # tabwriter(minwidth 10, padding 3): "app" and "TAG" cells are padded to 10.
    assert lines[0] == "REPOSITORY   TAG       IMAGE ID"
    assert sorted(lines[1:]) == [f"app          1         {short(store.app1)}",
                                 f"app          2         {short(store.app2)}"]  # fmt: skip


def test_default_images_table_is_dockers(store: Store) -> None:
    lines = ok(store.root, "images", "busybox").splitlines()
    assert lines[0].startswith("REPOSITORY   TAG       IMAGE ID       CREATED")
    assert lines[0].rstrip().endswith("SIZE")
    assert lines[1].startswith(f"busybox      latest    {short(store.busybox)}   ")
    digests = ok(store.root, "images", "--digests", "busybox").splitlines()
    assert digests[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    # Loaded, never pulled or pushed: no repo digest, so docker/cli's DIGEST is <none>.
    assert digests[1].split()[:3] == ["busybox", "latest", "<none>"]


def test_an_unknown_field_is_an_error_naming_it(store: Store) -> None:
    done = lamina(store.root, "images", "--format", "{{.Repository}} {{.Nope}}")
    assert done.returncode == 1
    assert done.stdout == ""
    first = done.stderr.splitlines()[0]
    assert first.startswith("Error: template parsing error: ")
    assert "can't evaluate field Nope" in first
    assert "Traceback" not in done.stderr
    assert "Repository" in done.stderr  # the hint lists the fields there are


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.ID", "unclosed action"),
        ("{{if .ID}}x", "unexpected EOF"),
        ("{{nosuch .ID}}", 'function "nosuch" not defined'),
    ],
)
def test_a_malformed_template_is_one_line_and_exit_1(
    store: Store, template: str, message: str
) -> None:
    for command in (["images"], ["history", "app:1"], ["inspect", "app:1"], ["df"]):
        done = lamina(store.root, *command, "--format", template)
        assert done.returncode == 1, command
        assert done.stdout == ""
        assert message in done.stderr and "template parsing error" in done.stderr


def test_inspect_format_reaches_the_config(store: Store) -> None:
    def fmt(template: str) -> str:
        return ok(store.root, "inspect", "--format", template, "app:2")

    assert fmt("{{.Config.Env}}").startswith("[PATH=")
    assert fmt("{{.Config.Env}}").rstrip().endswith(" A=1 B=2]")
    assert fmt('{{join .Config.Env ","}}').rstrip().endswith(",A=1,B=2")
    assert fmt("{{range .Config.Env}}{{.}}\n{{end}}").splitlines()[-3:] == ["A=1", "B=2", ""]
    assert fmt('{{index .Config.Labels "com.example.tier"}}') == "db\n"
    assert json.loads(fmt("{{json .Config.Labels}}")) == {
        "com.example.n": "2",
        "com.example.tier": "db",
    }
    assert fmt("{{.Id}} {{len .RootFS.Layers}}") == f"{store.app2} 3\n"
    assert fmt("{{.Os}}/{{upper .Architecture}}").startswith("linux/")
    # Docker's Config fields are there even when unset.
    assert ok(store.root, "inspect", "-f", "{{.Config.Entrypoint}}|{{.Config.User}}|"
              "{{.Config.Labels.x}}", "busybox") == "<no value>||<no value>\n"  # fmt: skip
    two = ok(store.root, "inspect", "-f", "{{.Id}}", "app:1", "app:2").splitlines()
    assert two == [store.app1, store.app2]


def test_inspect_reports_each_missing_name_and_exits_1(store: Store) -> None:
    done = lamina(store.root, "inspect", "-f", "{{.Id}}", "app:1", "nosuch", "app:2")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [store.app1, store.app2]
    assert done.stderr.splitlines()[0] == "Error: No such object: nosuch"


def test_history_format_quiet_and_table(store: Store) -> None:
    created_by = ok(store.root, "history", "--no-trunc", "--format", "{{.CreatedBy}}", "app:1")
    lines = created_by.splitlines()
    assert lines[0].startswith("RUN ") and "echo step > /made" in lines[0]
    assert lines[1].startswith("COPY ")
    assert any("LABEL com.example.tier=web" in line for line in lines)
    ids = ok(store.root, "history", "-q", "app:1").splitlines()
    assert ids[0] == short(store.app1) and set(ids[1:]) == {"<missing>"}
    assert len(ids) == len(lines)
    table = ok(store.root, "history", "--format", "table {{.ID}}\\t{{.Size}}", "app:1")
    assert table.splitlines()[0] == "IMAGE          SIZE"
    assert table.splitlines()[1].startswith(short(store.app1) + "   ")
    rows = [json.loads(line) for line in ok(store.root, "history", "--format", "json", "app:1")
            .splitlines()]  # fmt: skip
    assert sorted(rows[0]) == ["Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size"]
    assert rows[0]["ID"] == short(store.app1)
    raw = ok(store.root, "history", "--no-human", "--format", "{{.Size}}", "app:1")
    assert all(size.isdigit() for size in raw.split())


def test_df_format(store: Store) -> None:
    out = ok(store.root, "df", "--format", "{{.Type}}={{.TotalCount}}")
    assert out.splitlines()[0] == "Images=4"
    # docker/cli's ACTIVE: images at least one container uses (none here), not tagged ones.
    assert ok(store.root, "df", "--format", "{{.Type}}={{.Active}}").splitlines()[0] == "Images=0"
    rows = [json.loads(line) for line in ok(store.root, "df", "--format", "json").splitlines()]
    assert [r["Type"] for r in rows] == ["Images", "Containers", "Snapshots", "Build Cache"]
    assert ok(store.root, "df").splitlines()[0].split() == [
        "TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"
    ]  # fmt: skip
    assert lamina(store.root, "df", "-v", "--format", "json").returncode == 2


# -- --filter, -a, -q ---------------------------------------------------------------------------


def names(store: Store, *args: str) -> list[str]:
    out = ok(store.root, "images", "--format", "{{.Repository}}:{{.Tag}}", *args)
    return sorted(out.splitlines())


def test_filter_dangling(store: Store) -> None:
    assert names(store, "--filter", "dangling=true") == ["<none>:<none>"]
    assert names(store, "-f", "dangling=false") == ["app:1", "app:2", "busybox:latest"]
    assert ok(store.root, "images", "-q", "--filter", "dangling=true").split() == [
        short(store.dangling)
    ]
    # docker/cli's isDangling row: repository, tag and digest are all "<none>".
    row = ok(store.root, "images", "--digests", "-f", "dangling=true").splitlines()[1].split()
    assert row[:3] == ["<none>", "<none>", "<none>"]
    shown = ok(store.root, "images", "--format", "{{.Digest}}", "-f", "dangling=true")
    assert shown == "<none>\n"
    # A built image has no repo digest (none is recorded before a push): <none>, as
    # docker/cli shows a tag whose repository has no digest.
    assert ok(store.root, "images", "--format", "{{.Digest}}", "app:1") == "<none>\n"


def test_filter_reference_uses_path_match(store: Store) -> None:
    assert names(store, "--filter", "reference=app") == ["app:1", "app:2"]
    assert names(store, "--filter", "reference=app:1") == ["app:1"]
    assert names(store, "--filter", "reference=*:latest") == ["busybox:latest"]
    assert names(store, "--filter", "reference=a?p:[2-9]") == ["app:2"]
    assert names(store, "--filter", "reference=busy*") == ["busybox:latest"]
    # several reference filters: any may match
    assert names(store, "-f", "reference=app:1", "-f", "reference=busybox") == [
        "app:1",
        "busybox:latest",
    ]
    # `*` does not cross `/` (Go's path.Match)
    assert names(store, "--filter", "reference=*/app") == []
    assert names(store, "app") == ["app:1", "app:2"]  # the positional REPOSITORY[:TAG]


def test_filter_label(store: Store) -> None:
    assert names(store, "--filter", "label=com.example.tier") == ["<none>:<none>", "app:1",
                                                                 "app:2"]  # fmt: skip
    assert names(store, "--filter", "label=com.example.tier=db") == ["app:2"]
    # several label filters must all match
    assert names(store, "-f", "label=com.example.tier", "-f", "label=com.example.n=1") == ["app:1"]
    assert names(store, "-f", "label=com.example.tier=web", "-f", "label=com.example.n=2") == []


def test_filter_before_and_since(store: Store) -> None:
    assert names(store, "--filter", "before=app:2") == ["app:1", "busybox:latest"]
    assert names(store, "--filter", f"before={short(store.app1)}") == ["busybox:latest"]
    assert names(store, "--filter", "since=app:1") == ["<none>:<none>", "app:2"]
    assert names(store, "-f", "since=busybox", "-f", "before=app:2") == ["app:1"]


def test_filters_of_different_kinds_all_apply(store: Store) -> None:
    assert names(store, "-f", "reference=app", "-f", "label=com.example.tier=web") == ["app:1"]
    assert names(store, "-f", "dangling=false", "-f", "since=app:1") == ["app:2"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("color=red", "invalid filter 'color'"),
        ("dangling", "bad format of filter"),
        ("dangling=maybe", "invalid filter 'dangling=maybe'"),
        ("reference=[", "syntax error in pattern"),
        ("before=nosuch", "no such image: nosuch"),
    ],
)
def test_a_bad_filter_is_one_line_and_exit_1(store: Store, spec: str, message: str) -> None:
    done = lamina(store.root, "images", "--filter", spec)
    assert done.returncode == 1
    assert done.stdout == ""
    assert message in done.stderr.splitlines()[0]


def test_all_shows_an_untagged_image_another_was_built_on(
    tmp_path: Path, busybox_rootfs: Path
) -> None:
    root = tmp_path / "root"
    ok(root, "import", str(busybox_rootfs), "busybox")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("x")
    parent = build(root, tmp_path / "a", "FROM busybox\nCOPY x /x\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "y").write_text("y")
    child = build(root, tmp_path / "b", f"FROM {parent}\nCOPY y /y\n", "-t", "child")
    listed = ok(root, "images", "-q").split()
    assert short(parent) not in listed and short(child) in listed
    everything = ok(root, "images", "-a", "-q").split()
    assert short(parent) in everything and short(child) in everything
    assert ok(root, "images", "-a", "-q", "-f", "dangling=true").split() == [short(parent)]


# -- rmi ---------------------------------------------------------------------------------------


def test_rmi_of_several_names_reports_each_and_goes_on(
    tmp_path: Path, busybox_rootfs: Path
) -> None:
    root = tmp_path / "root"
    image = ok(root, "import", str(busybox_rootfs), "base:1").strip()
    ok(root, "tag", "base:1", "base:2")
    ok(root, "tag", "base:1", "example.com/team/base:3")
    done = lamina(root, "rmi", "base:1", "nosuch", "base:2", "alsonot:1", "example.com/team/base:3")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "Untagged: base:1",
        "Untagged: base:2",
        "Untagged: example.com/team/base:3",
        f"Deleted: {image}",
    ]
    assert done.stderr.splitlines() == [
        "Error: No such image: nosuch:latest",
        "hint: `lamina images` lists names and IDs",
        "Error: No such image: alsonot:1",
        "hint: `lamina images` lists names and IDs",
    ]
    assert ok(root, "images", "-q") == ""


def test_rmi_all_good_exits_0(tmp_path: Path, busybox_rootfs: Path) -> None:
    root = tmp_path / "root"
    one = ok(root, "import", str(busybox_rootfs), "one").strip()
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "extra").write_text("x")
    two = ok(root, "import", str(extra), "two").strip()
    done = lamina(root, "rmi", "one", "two")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Untagged: one:latest",
        f"Deleted: {one}",
        "Untagged: two:latest",
        f"Deleted: {two}",
    ]

"""The `--format` evaluator: Go text/template's grammar as docker/cli uses it.

Expected outputs follow Go's text/template documentation (pkg.go.dev/text/template:
actions, pipelines, trim markers, range/if/with/else, variables) and docker/cli's
`templates` package (json, join, split, upper, lower, title, pad, truncate) and
`formatter` package (the `table` prefix, header row, tabwriter(10, 1, 3)).
"""

from __future__ import annotations

from typing import Any

import pytest

from lamina.cli._template import (
    TemplateError,
    expand_format,
    format_rows,
    go_string,
    parse,
    render,
    tabwrite,
)
from lamina.errors import InvalidInputError

IMAGE = {
    "Repository": "busybox",
    "Tag": "latest",
    "ID": "0123456789ab",
    "Config": {"Env": ["PATH=/bin", "A=1"], "Labels": {"b": "2", "a": "1"}, "Cmd": None},
    "Layers": [{"Digest": "sha256:aa", "Size": 10}, {"Digest": "sha256:bb", "Size": 20}],
    "Size": 4261000,
    "Ratio": 0.5,
    "Empty": [],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("plain text", "plain text"),
        ("{{.Repository}}:{{.Tag}}", "busybox:latest"),
        ("{{ .ID }}", "0123456789ab"),
        ("{{.Config.Env}}", "[PATH=/bin A=1]"),
        ("{{.Config.Labels}}", "map[a:1 b:2]"),
        ("{{.Size}} {{.Ratio}}", "4261000 0.5"),
        ("{{.Config.Cmd}}", "<no value>"),
        ("{{.Config.Cmd.X}}", "<no value>"),  # a field of null: Go's nil map lookup
        ("{{json .Config.Env}}", '["PATH=/bin","A=1"]'),
        ("{{json .Config.Labels}}", '{"b":"2","a":"1"}'),
        ("{{json .Config.Cmd}}", "null"),
        ('{{json "a<b&c"}}', '"a<b&c"'),
        ("{{range .Config.Env}}[{{.}}]{{end}}", "[PATH=/bin][A=1]"),
        ("{{range .Layers}}{{.Digest}} {{end}}", "sha256:aa sha256:bb "),
        ("{{range $i, $l := .Layers}}{{$i}}:{{$l.Size}},{{end}}", "0:10,1:20,"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
        ("{{range .Empty}}x{{else}}none{{end}}", "none"),
        ("{{range .Config.Cmd}}x{{else}}none{{end}}", "none"),
        ("{{range $e := .Config.Env}}{{$e}} {{end}}", "PATH=/bin A=1 "),
        ("{{index .Config.Env 1}}", "A=1"),
        ('{{index .Config.Labels "a"}}', "1"),
        ('{{index .Config.Labels "zz"}}', "<no value>"),
        ("{{(index .Layers 1).Digest}}", "sha256:bb"),
        ('{{index .Layers 0 "Size"}}', "10"),
        ('{{join .Config.Env ","}}', "PATH=/bin,A=1"),
        ("{{index .Config.Env 0 | lower}}", "path=/bin"),
        ('{{split "a:b:c" ":"}}', "[a b c]"),
        ("{{upper .Repository}} {{lower .Tag | upper}}", "BUSYBOX LATEST"),
        ('{{title "hello world"}}', "Hello World"),
        ('{{pad .Tag 2 1}}|{{pad "" 2 1}}|', "  latest ||"),
        ("{{truncate .ID 4}}", "0123"),
        ("{{len .Layers}} {{len .Config.Labels}} {{len .Tag}}", "2 2 6"),
        ("{{if .Tag}}tagged{{end}}", "tagged"),
        ("{{if .Empty}}a{{else}}b{{end}}", "b"),
        ("{{if .Config.Cmd}}a{{else if .Tag}}b{{else}}c{{end}}", "b"),
        ("{{if .Config.Cmd}}a{{else if .Empty}}b{{else}}c{{end}}", "c"),
        ('{{if eq .Tag "latest"}}L{{end}}', "L"),
        ('{{if ne .Tag "latest"}}L{{else}}N{{end}}', "N"),
        ('{{if eq .Tag "x" "latest"}}any{{end}}', "any"),
        ("{{if and .Tag .Empty}}a{{else}}b{{end}}", "b"),
        ("{{if or .Empty .Tag}}a{{end}}", "a"),
        ("{{if not .Empty}}empty{{end}}", "empty"),
        ("{{if gt .Size 1000}}big{{end}}", "big"),
        ("{{with .Config}}{{.Env}}{{end}}", "[PATH=/bin A=1]"),
        ("{{with .Config.Cmd}}x{{else}}no cmd{{end}}", "no cmd"),
        ("{{$r := .Repository}}{{$r}}/{{$.Tag}}", "busybox/latest"),
        ("{{range .Layers}}{{$.Repository}}{{end}}", "busyboxbusybox"),
        ("a  {{- .Tag -}}  b", "alatestb"),
        ("a\n {{- .Tag}}", "alatest"),
        ("{{/* a comment */}}x", "x"),
        ("{{- /* trimmed */ -}}  x", "x"),
        ('{{"a\\tb"}}', "a\tb"),
        ("{{`raw\\t`}}", "raw\\t"),
        ("{{print 1 2.5 true}}", "12.5true"),
        ("{{println .Tag}}", "latest\n"),
        ('{{"}}"}}', "}}"),
        ("{{.}}", go_string(IMAGE)),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert render(template, IMAGE) == expected


def test_a_template_parsed_once_runs_on_many_values() -> None:
    tmpl = parse("{{.Repository}}:{{.Tag}}")
    rows = [{"Repository": "a", "Tag": "1"}, {"Repository": "b", "Tag": "2"}]
    assert [tmpl.execute(r) for r in rows] == ["a:1", "b:2"]


def test_go_values_print_as_go_prints_them() -> None:
    assert go_string(None) == "<no value>"
    assert go_string([None, True, 3.0, {"k": [1]}]) == "[<nil> true 3 map[k:[1]]]"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Nope}}", 'template: :1:2: executing "" at <.Nope>: can\'t evaluate field Nope'),
        ("{{.Config.Nope}}", "at <.Config.Nope>: can't evaluate field Nope"),
        ("x\n{{.Nope}}", "template: :2:2: executing"),
        ("{{.Tag.Nope}}", "can't evaluate field Nope in type string"),
        ("{{$x.Tag}}", "undefined variable: $x"),
        ("{{nosuch .Tag}}", 'function "nosuch" not defined'),
        ("{{if .Tag}}x", "unexpected EOF (no {{end}} for {{if}})"),
        ("{{range .Layers}}x{{else}}y", "unexpected EOF"),
        ("x{{end}}", "unexpected {{end}}"),
        ("{{else}}", "unexpected {{else}}"),
        ("{{if .Tag}}a{{else}}b{{else}}c{{end}}", "unexpected {{else}}"),
        ("{{.Tag", "unclosed action"),
        ('{{"abc}}', "unterminated quoted string"),
        ("{{/* x }}", "unclosed comment"),
        ("{{}}", "missing value for command"),
        ("{{if}}x{{end}}", "missing value for if"),
        ("{{.Tag | }}", "missing command after |"),
        ("{{.Tag 1}}", "can't give argument to non-function"),
        ("{{.Tag | .ID}}", "can't give argument to non-function"),
        ("{{(index .Layers 0}}", "unclosed left paren"),
        ("{{index .Layers 9}}", "error calling index: index out of range: 9"),
        ("{{join .Tag}}", "wrong number or type of arguments for join"),
        ('{{join .Tag ","}}', "error calling join: want a list, got string"),
        ("{{range .Tag}}x{{end}}", "range can't iterate over latest"),
        ('{{template "x"}}', "{{template}} is not supported"),
        ('{{"\\q"}}', "unknown escape sequence"),
        ("{{.Tag ^}}", "unexpected '^'"),
        ("{{end 1}}", "unexpected '1' in end"),
    ],
)
def test_errors_name_the_place_and_the_cause(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, IMAGE)
    assert caught.value.message.startswith("template parsing error: ")
    assert message in caught.value.message


def test_a_template_error_is_an_input_error_the_cli_prints_on_one_line() -> None:
    with pytest.raises(InvalidInputError):
        render("{{.Nope}}", IMAGE)


def test_an_unknown_field_hints_at_the_fields_there_are() -> None:
    with pytest.raises(TemplateError) as caught:
        render("{{.Config.Envv}}", IMAGE)
    assert caught.value.hint == "fields here: Cmd, Env, Labels"


def test_a_parse_error_is_raised_before_any_value_is_seen() -> None:
    with pytest.raises(TemplateError):
        parse("{{if .A}}")


# -- Docker's list conventions ------------------------------------------------------------

HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Size": "SIZE"}
ROWS: list[dict[str, Any]] = [
    {"ID": "0123456789ab", "Repository": "busybox", "Tag": "latest", "Size": "4.26MB"},
    {"ID": "ba9876543210", "Repository": "example.com/a/long/name", "Tag": "1", "Size": "1kB"},
]


def test_expand_format_follows_docker_cli() -> None:
    assert expand_format("json", "table {{.ID}}") == ("{{json .}}", False)
    assert expand_format("table", "table {{.ID}}\\t{{.Tag}}") == ("{{.ID}}\t{{.Tag}}", True)
    assert expand_format("table {{.ID}}", "") == ("{{.ID}}", True)
    assert expand_format("{{.ID}}\\n{{.Tag}}", "") == ("{{.ID}}\n{{.Tag}}", False)


def test_a_custom_format_prints_one_line_per_row_and_no_header() -> None:
    out = format_rows("{{.Repository}}:{{.Tag}}", ROWS, HEADERS, "")
    assert out == "busybox:latest\nexample.com/a/long/name:1\n"


def test_json_prints_one_object_per_row() -> None:
    out = format_rows("json", ROWS[:1], HEADERS, "")
    assert out == ('{"ID":"0123456789ab","Repository":"busybox","Tag":"latest","Size":"4.26MB"}\n')


def test_table_has_docker_headers_and_tabwriter_columns() -> None:
    out = format_rows("table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.Size}}", ROWS, HEADERS, "")
    # tabwriter(minwidth 10, padding 3): TAG is 10 wide, REPOSITORY 23 + 3, IMAGE ID 12 + 3.
    assert out.splitlines() == [
        "REPOSITORY                TAG       IMAGE ID       SIZE",
        "busybox                   latest    0123456789ab   4.26MB",
        "example.com/a/long/name   1         ba9876543210   1kB",
    ]


def test_table_headers_keep_names_through_functions() -> None:
    rows = [{**ROWS[0], "Extra": "e"}]
    out = format_rows("table {{upper .Tag}}\\t{{json .ID}}\\t{{.Extra}}|", rows, HEADERS, "")
    # A field without a header gets an empty one, as a Go map[string]string lookup.
    assert out.splitlines() == ["TAG       IMAGE ID         |", 'LATEST    "0123456789ab"   e|']


def test_table_alone_is_the_default_table() -> None:
    out = format_rows("table", ROWS[:1], HEADERS, "table {{.ID}}\\t{{.Tag}}")
    assert out.splitlines() == ["IMAGE ID       TAG", "0123456789ab   latest"]


def test_table_with_an_unknown_field_fails_on_the_rows() -> None:
    with pytest.raises(TemplateError, match="Nope"):
        format_rows("table {{.Nope}}", ROWS, HEADERS, "")


def test_tabwrite_blocks_are_per_column_as_in_go() -> None:
    # A line with fewer cells ends the block: widths restart after it.
    text = "a\tb\tc\nlonger-cell\tb\tc\nonly\nx\ty\n"
    assert tabwrite(text) == (
        "a             b         c\nlonger-cell   b         c\nonly\nx         y\n"
    )

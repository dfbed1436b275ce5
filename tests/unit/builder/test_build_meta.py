"""Metadata instructions as config changes; history text as BuildKit writes it."""

from __future__ import annotations

from lamina.builder import apply_metadata, created_by, timestamp
from lamina.dockerfile import (
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Heredoc,
    Label,
    Run,
    Shell,
    User,
    Volume,
    Workdir,
)
from lamina.oci import ImageConfig

BASE = ImageConfig.new().with_container_config(Env=["PATH=/bin", "A=old"], Cmd=["sh"])


def test_history_text_reads_like_docker_history() -> None:
    assert created_by(Run(("echo hi",)), BASE) == "RUN /bin/sh -c echo hi # lamina"
    assert created_by(Run(("echo $V",)), BASE, (("V", "1"),)) == (
        "RUN |1 V=1 /bin/sh -c echo $V # lamina"
    )
    assert created_by(Run(("ls", "-l"), shell_form=False), BASE) == "RUN ls -l # lamina"
    assert created_by(Copy(("file",), "/dst"), BASE) == "COPY file /dst # lamina"
    assert created_by(Copy(("a", "b"), "/d/", is_add=True, chown="app"), BASE) == (
        "ADD --chown=app a b /d/ # lamina"
    )
    assert created_by(Env((("A", "b"),)), BASE) == "ENV A=b"
    assert created_by(Workdir("/x"), BASE) == "WORKDIR /x"
    assert created_by(Cmd(("x",)), BASE) == 'CMD ["x"]'
    assert created_by(Cmd(("echo hi",), shell_form=True), BASE) == 'CMD ["/bin/sh" "-c" "echo hi"]'
    # BuildKit: fmt.Sprintf("EXPOSE %v", ports) of the list (dockerfile_history_test.go)
    assert created_by(Expose(("443/tcp", "80/tcp")), BASE) == "EXPOSE [443/tcp 80/tcp]"
    assert created_by(Arg((("V", "1"), ("W", None))), BASE) == "ARG V=1 W"
    assert created_by(User("app", "staff"), BASE) == "USER app:staff"


def test_env_replaces_in_place_and_appends() -> None:
    config = apply_metadata(BASE, Env((("A", "new"), ("B", "2"))), False)
    assert config.container_config["Env"] == ["PATH=/bin", "A=new", "B=2"]
    # BuildKit's addEnv: `ENV PATH=...` keeps PATH where it stands (lamina moved it last).
    config = apply_metadata(BASE, Env((("PATH", "/x:/bin"),)), False)
    assert config.container_config["Env"] == ["PATH=/x:/bin", "A=old"]


def test_entrypoint_clears_an_inherited_cmd_but_not_one_set_in_the_stage() -> None:
    inherited = apply_metadata(BASE, Entrypoint(("run",)), cmd_set=False).container_config
    assert inherited["Entrypoint"] == ["run"] and "Cmd" not in inherited
    kept = apply_metadata(BASE, Entrypoint(("run",)), cmd_set=True).container_config
    assert kept["Cmd"] == ["sh"]


def test_shell_form_uses_the_stage_shell() -> None:
    config = apply_metadata(BASE, Shell(("/bin/bash", "-c")), False)
    config = apply_metadata(config, Cmd(("echo hi",), shell_form=True), False)
    assert config.container_config["Cmd"] == ["/bin/bash", "-c", "echo hi"]


def test_maps_merge() -> None:
    config = apply_metadata(BASE, Label((("a", "1"),)), False)
    config = apply_metadata(config, Label((("b", "2"),)), False)
    config = apply_metadata(config, Expose(("80/tcp",)), False)
    config = apply_metadata(config, Volume(("/data",)), False)
    cc = config.container_config
    assert cc["Labels"] == {"a": "1", "b": "2"}
    assert cc["ExposedPorts"] == {"80/tcp": {}}
    assert cc["Volumes"] == {"/data": {}}


def test_timestamps() -> None:
    assert timestamp(0, 123.0) == "1970-01-01T00:00:00Z"
    assert timestamp(None, 0.5) == "1970-01-01T00:00:00.500000Z"


def test_copy_history_has_no_from_and_puts_heredocs_after_paths() -> None:
    """BuildKit convert_copy.go: --parents/--chown/--chmod, paths, then <<NAME; no --from
    (dockerfile_history_test.go: `COPY --from=base foo2 foo3` → "COPY foo2 foo3")."""
    assert created_by(Copy(("foo2",), "foo3", from_="base"), BASE) == "COPY foo2 foo3 # lamina"
    assert created_by(Copy(("./a",), "/p/", parents=True, chmod="755"), BASE) == (
        "COPY --parents --chmod=755 ./a /p/ # lamina"
    )
    doc = Heredoc("EOT", "hi\n", expand=False, strip_tabs=True)
    assert created_by(Copy(('<<-"EOT"', "f"), "/h/", heredocs=(doc,)), BASE) == (
        "COPY f <<EOT /h/ # lamina"
    )


def test_healthcheck_history_is_go_struct_with_go_durations() -> None:
    """BuildKit: fmt.Sprintf("HEALTHCHECK %+v", HealthcheckConfig); durations as Go prints them."""
    check = Healthcheck(
        ("CMD", "a", "b"),
        interval_ns=3_723_500_000_000,
        timeout_ns=1_500,
        start_period_ns=60_000_000_000,
        start_interval_ns=1_100_000,
        retries=3,
    )
    assert created_by(check, BASE) == (
        "HEALTHCHECK {Test:[CMD a b] Interval:1h2m3.5s Timeout:1.5µs StartPeriod:1m0s "
        "StartInterval:1.1ms Retries:3}"
    )
    assert created_by(Healthcheck(("NONE",)), BASE) == (
        "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}"
    )


def test_heredoc_run_history_as_buildkit_runs_it() -> None:
    """BuildKit dispatchRun: a lone heredoc starting with #! runs as /dev/pipes/NAME; one
    used by a command line is the line, then "\n" + body + delimiter (no newline after)."""
    shebang = Run(("<<EOF",), heredocs=(Heredoc("EOF", "#!/bin/sh\necho hi\n"),))
    assert created_by(shebang, BASE) == "RUN /bin/sh -c /dev/pipes/EOF # lamina"
    inline = Run(("<<'EOF' cat > /f",), heredocs=(Heredoc("EOF", "q $H\n", expand=False),))
    assert created_by(inline, BASE) == "RUN /bin/sh -c <<'EOF' cat > /f\nq $H\nEOF # lamina"
    alone = Run(("<<EOF",), heredocs=(Heredoc("EOF", "set -e\ntrue\n"),))
    assert created_by(alone, BASE) == "RUN /bin/sh -c set -e\ntrue\n # lamina"


def test_cmd_history_quotes_as_go_percent_q() -> None:
    """BuildKit writes fmt.Sprintf("CMD %q", args): Go's strconv.Quote escapes, not JSON's."""
    cmd = Cmd(("a\x01b\x7f", "t\there\v", "nb\u00a0sp", "é \"q\" \\"), shell_form=False)
    assert created_by(cmd, BASE) == (
        'CMD ["a\\x01b\\x7f" "t\\there\\v" "nb\\u00a0sp" "é \\"q\\" \\\\"]'
    )

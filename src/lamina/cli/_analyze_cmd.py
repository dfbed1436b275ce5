"""`lamina analyze`: the terminal view, --json, --ci budgets and the --html report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lamina.cli._format import human_size
from lamina.cli._main import _Context, cli
from lamina.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from lamina.analysis import (
        Budgets,
        Comparison,
        ImageReport,
        RuleResult,
        StoreReport,
    )
    from lamina.api import Lamina

_TOP = 10
_FORBID_HELP = "Budget: no live path may match, e.g. '/var/cache/apt/archives/*.deb'."


class _IndexProgress:
    """A progress bar on stderr, shown only when a store's older layers get indexed."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: Any = None

    def __call__(self, done: int, total: int, diff_id: str) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("indexing layers", total=total)
        text = f"indexing layer {diff_id[7:19]}" if diff_id else "indexed"
        self._bar.update(self._task, completed=done, total=total, description=text)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _budgets(
    max_wasted_bytes: str | None,
    max_wasted_percent: float | None,
    min_efficiency: float | None,
    max_layer_bytes: str | None,
    forbid: tuple[str, ...],
    ci_config: Path | None,
) -> tuple[Budgets, str]:
    from lamina.analysis import Budgets, parse_bytes, parse_dive_ci

    if max_wasted_percent is not None and not 0 <= max_wasted_percent <= 100:
        raise InvalidInputError(  # (NaN too: it fails every comparison)
            f"--max-wasted-percent {max_wasted_percent}: give a percentage between 0 and 100"
        )
    if min_efficiency is not None and not 0 <= min_efficiency <= 1:
        raise InvalidInputError(
            f"--min-efficiency {min_efficiency}: give a ratio between 0 and 1 (0.9 = 90%)"
        )
    given = Budgets(
        max_wasted_bytes=parse_bytes(max_wasted_bytes) if max_wasted_bytes else None,
        max_wasted_percent=max_wasted_percent,
        min_efficiency=min_efficiency,
        max_layer_bytes=parse_bytes(max_layer_bytes) if max_layer_bytes else None,
        forbid=forbid,
    )
    source = "command line"
    path = ci_config if ci_config is not None else Path(".dive-ci")
    if path.is_file():
        # The file's rules, with dive's defaults for those it does not set (or disables).
        given = given.merged(parse_dive_ci(path.read_text(errors="replace")[: 1 << 20], str(path)))
        source = f"command line and {path}"
    elif ci_config is not None:
        raise NotFoundError(f"CI config {ci_config} does not exist")
    elif given == Budgets():  # no rule anywhere: dive's defaults, as `dive --ci` has
        given = Budgets(min_efficiency=0.9, max_wasted_percent=10.0)
        source = "dive's default rules (lowest-efficiency 0.9, highest-user-wasted-percent 0.1)"
    return given, source


@cli.command()
@click.argument("image", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html", type=click.Path(path_type=Path, dir_okay=False),
              help="Write a self-contained HTML report to this file.")  # fmt: skip
@click.option("--against", metavar="OTHER", help="Compare IMAGE with image OTHER.")
@click.option("--store", "whole_store", is_flag=True, help="Sharing across every image.")
@click.option("--base", metavar="BASE", help="Count the layers above image BASE as yours.")
@click.option("--ci", is_flag=True, help="Check the budgets; exit 1 when one is broken.")
@click.option("--max-wasted-bytes", metavar="SIZE", help="Budget: wasted bytes (20MB, 1GiB).")
@click.option("--max-wasted-percent", type=float, metavar="PCT",
              help="Budget: wasted percent of the user's layers.")  # fmt: skip
@click.option("--min-efficiency", type=float, metavar="RATIO",
              help="Budget: live / total bytes, 0-1.")  # fmt: skip
@click.option("--max-layer-bytes", metavar="SIZE", help="Budget: the largest layer.")
@click.option("--forbid", multiple=True, metavar="GLOB", help=_FORBID_HELP)
@click.option("--ci-config", type=click.Path(path_type=Path, dir_okay=False),
              help="dive's rules file (default ./.dive-ci when present).")  # fmt: skip
@click.pass_context
def analyze(
    ctx: click.Context,
    image: str | None,
    as_json: bool,
    html: Path | None,
    against: str | None,
    whole_store: bool,
    base: str | None,
    ci: bool,
    max_wasted_bytes: str | None,
    max_wasted_percent: float | None,
    min_efficiency: float | None,
    max_layer_bytes: str | None,
    forbid: tuple[str, ...],
    ci_config: Path | None,
) -> None:
    """Where every byte of IMAGE comes from: layers, waste and its Dockerfile lines."""
    if image is None and not whole_store:
        raise click.UsageError("give an IMAGE, or --store")
    if ci and (against or image is None):
        raise click.UsageError("--ci checks one IMAGE (without --against)")
    obj: _Context = ctx.find_root().obj
    lam = obj.api()
    progress = _IndexProgress()
    try:
        _run(lam, progress, image, as_json, html, against, whole_store, base, ci,
             (max_wasted_bytes, max_wasted_percent, min_efficiency, max_layer_bytes, forbid,
              ci_config))  # fmt: skip
    finally:
        progress.close()


def _run(
    lam: Lamina,
    progress: _IndexProgress,
    image: str | None,
    as_json: bool,
    html: Path | None,
    against: str | None,
    whole_store: bool,
    base: str | None,
    ci: bool,
    budget_args: tuple[Any, ...],
) -> None:
    # Attribute by attribute: lamina.analysis loads what a mode uses on first use.
    import lamina.analysis as analysis

    report = layers = comparison = sharing = None
    results: list[RuleResult] = []
    source = ""
    if image is not None:
        report, layers = lam.analyze(image, base=base, progress=progress)
        if against is not None:
            comparison = lam.compare(image, against, progress, layers)
        if ci:
            budgets, source = _budgets(*budget_args)
            paths = analysis.live_paths(layers) if budgets.forbid else []
            results = analysis.check_budgets(report, budgets, paths)
    if whole_store:
        sharing = lam.analyze_store(progress)
    progress.close()
    doc: dict[str, Any] = {}
    if as_json or html is not None:
        if report is not None:
            doc = analysis.image_json(report, layers, entries=False)
            if comparison is not None:
                doc["against"] = analysis.comparison_json(comparison, files=False)
            if ci:
                doc["budgets"] = analysis.budgets_json(results)
        if sharing is not None:
            shared = analysis.store_json(sharing)
            doc = {**doc, "store": shared} if doc else shared
    text = analysis.dumps(doc, report, layers, comparison) if doc else ""
    if html is not None:
        from lamina.cli._analyze_html import write_html

        write_html(html, text, image or "lamina store")
    if as_json:
        sys.stdout.write(text + "\n")
    elif html is not None:
        click.echo(f"Wrote {html}")
    else:
        console = _console()
        if report is not None:
            _show_image(console, report)
        if comparison is not None:
            _show_comparison(console, comparison)
        if sharing is not None:
            _show_store(console, sharing)
        if ci:
            _show_budgets(console, results, source)
    failed = [r for r in results if not r.passed]
    if failed:
        if as_json or html is not None:
            for r in failed:
                click.echo(f"FAIL {r.rule}: {r.message}", err=True)
        sys.exit(1)


def _show_image(console: Console, report: ImageReport) -> None:
    from rich.table import Table
    from rich.text import Text

    t, u = report.totals, report.user_totals
    console.print(Text.assemble(("Image ", "bold"), (report.image, "bold cyan")))
    console.print(
        f"  {human_size(t.image_bytes)} in {len(report.layers)} layers; files "
        f"{human_size(t.total_bytes)}: live {human_size(t.live_bytes)}, "
        f"[red]wasted {human_size(t.wasted_bytes)}[/red], efficiency {_pct(100 * t.efficiency)}"
    )
    if report.base_layers:
        console.print(
            f"  your {len(report.layers) - report.base_layers} layers (above "
            f"{_short(report.base, 24)}): [red]wasted {human_size(u.wasted_bytes)}[/red] of "
            f"{human_size(u.total_bytes)} ({_pct(u.wasted_percent)})"
        )
    table = Table(box=None, pad_edge=False, header_style="bold", expand=True)
    table.add_column("#", justify="right", no_wrap=True, min_width=2)
    table.add_column("SIZE", justify="right", no_wrap=True, min_width=7)
    table.add_column("WASTE", justify="right", no_wrap=True, min_width=7)
    table.add_column("+/~/-", justify="right", no_wrap=True, min_width=7)
    table.add_column("INSTRUCTION", overflow="ellipsis", no_wrap=True, ratio=1)
    for layer in report.layers:
        where = f"[dim]{layer.line}[/dim] " if layer.line else ""
        base_mark = "" if layer.user else "[dim](base)[/dim] "
        waste = human_size(layer.wasted_bytes) if layer.wasted_bytes else "-"
        table.add_row(
            str(layer.index),
            human_size(layer.size),
            f"[red]{waste}[/red]" if layer.wasted_bytes else waste,
            f"{layer.added}/{layer.modified}/{layer.removed}",
            Text.from_markup(base_mark + where) + Text(" ".join(layer.instruction.split())),
        )
    console.print()
    console.print(table)
    if report.lines:
        from lamina.analysis import FIXES

        console.print()
        console.print(Text("Waste by instruction", style="bold"))
        lines = Table(box=None, pad_edge=False, show_header=False, expand=True)
        lines.add_column(justify="right", no_wrap=True, style="red", min_width=8)
        lines.add_column(overflow="fold", ratio=1)
        for w in report.lines[:_TOP]:
            text = Text.assemble((w.line or f"layer {w.layer}", "cyan"), " ",
                                 _short(w.instruction, 60))  # fmt: skip
            for kind in w.kinds:
                text.append(f"\n{kind}: {FIXES[kind]}", style="dim")
            lines.add_row(human_size(w.bytes), text)
        console.print(lines)
    wasted = [h for h in report.hidden if h.bytes]
    if wasted:
        console.print()
        console.print(Text(f"Top wasted paths ({len(wasted)} hidden versions)", style="bold"))
        for h in wasted[:_TOP]:
            made = report.layers[h.hidden_by]
            console.print(
                Text.assemble(
                    (f"  {human_size(h.bytes):>7} ", "red"),
                    (f"{h.kind:<13} ", "yellow"),
                    "/" + h.path,
                    (f"  layer {h.layer} → {made.line or made.index}", "dim"),
                )
            )
    if report.duplicates:
        console.print()
        saved = sum(d.saveable_bytes for d in report.duplicates)
        console.print(Text(f"Duplicate content ({human_size(saved)} saveable)", style="bold"))
        for d in report.duplicates[:5]:
            paths = ", ".join("/" + p for p in d.paths[:3])
            more = f" +{len(d.paths) - 3}" if len(d.paths) > 3 else ""
            console.print(f"  {human_size(d.size):>7} x {len(d.paths)}  {paths}{more}")
    if not report.lines and not report.duplicates:
        console.print()
        console.print("[green]No waste: every stored byte is visible in the image.[/green]")


def _show_comparison(console: Console, c: Comparison) -> None:
    from rich.text import Text

    console.print()
    console.print(Text.assemble(("Compared with ", "bold"), (c.against, "bold cyan")))
    sign = "+" if c.size_delta >= 0 else "-"
    console.print(
        f"  layers: {len(c.shared_layers)} shared, {len(c.only_image)} only here, "
        f"{len(c.only_against)} only there; {len(c.files)} files changed, "
        f"{sign}{human_size(abs(c.size_delta))}"
    )
    for g in c.groups[:_TOP]:
        sign = "+" if g.size_delta >= 0 else "-"
        console.print(
            Text.assemble(
                (f"  {sign}{human_size(abs(g.size_delta)):>7} ", "yellow"),
                (f"+{g.added} -{g.removed} ~{g.changed} ", ""),
                (g.line or "", "cyan"),
                " ",
                (" ".join(g.instruction.split())[:50], "dim"),
            )
        )
    for f in c.files[:_TOP]:
        sign = "+" if f.size_delta >= 0 else "-"
        mark = {"added": "A", "removed": "D", "changed": "M"}[f.change]
        console.print(f"    {mark} {sign}{human_size(abs(f.size_delta)):>7}  /{f.path}")


def _show_store(console: Console, s: StoreReport) -> None:
    from rich.text import Text

    console.print()
    console.print(Text(f"Store: {len(s.images)} images, {len(s.layers)} layers", style="bold"))
    console.print(
        f"  {human_size(s.logical_bytes)} as images, {human_size(s.stored_bytes)} stored: "
        f"sharing saves {human_size(s.saved_bytes)}"
    )
    for layer in [la for la in s.layers if len(la.images) > 1][:_TOP]:
        names = ", ".join(layer.images[:4]) + (" …" if len(layer.images) > 4 else "")
        console.print(f"  {layer.diff_id[7:19]} {human_size(layer.size):>7}  {names}")
    if s.files:
        console.print(
            f"  identical files in different layers: {len(s.files)} contents, "
            f"{human_size(s.duplicate_file_bytes)} stored more than once"
        )


def _show_budgets(console: Console, results: list[RuleResult], source: str) -> None:
    console.print()
    console.print(f"[bold]CI budgets[/bold] [dim]({source})[/dim]")
    for r in results:
        mark = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
        console.print(f"  {mark} {r.rule}: {r.message}")
    failed = sum(not r.passed for r in results)
    console.print(f"  {'[red]failed[/red]' if failed else '[green]passed[/green]'}: "
                  f"{len(results) - failed} of {len(results)} rules hold")  # fmt: skip

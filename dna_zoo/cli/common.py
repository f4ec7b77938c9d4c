"""Shared CLI plumbing: one-line errors, --json output, rich progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from dna_zoo.errors import DnaZooError
from dna_zoo.progress import Reporter

T = TypeVar("T")


def _console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr)
    if not c.is_terminal:  # pipes and CliRunner: do not squeeze tables into 80 columns
        c = Console(stderr=stderr, width=160)
    return c


console = _console()
err_console = _console(stderr=True)


class DnaGroup(TyperGroup):
    """Root command group: a :class:`DnaZooError` becomes one line on stderr and exit 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DnaZooError as e:
            if (ctx.obj or {}).get("debug"):
                raise
            typer.echo(f"error: {e.one_line()}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None


class RichReporter(Reporter):
    """Draws a rich progress bar per tracked loop (on stderr, so --json stays clean)."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        if self.quiet:
            yield from items
            return
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        columns = [
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=err_console, transient=False) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)


def reporter(quiet: bool) -> RichReporter:
    return RichReporter(quiet=quiet)


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(title: str | None, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[str(c) for c in row])
    console.print(table)


JsonOpt = typer.Option(False, "--json", help="Print the same figures as JSON.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")

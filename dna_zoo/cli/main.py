"""The `dna` command: a thin typer layer over the library.

Each command group lives in its own module and is added here. Errors from the
:class:`~dna_zoo.errors.DnaZooError` hierarchy become one line and exit code 1
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import logging

import typer

import dna_zoo
from dna_zoo.cli import demo as demo_cmd
from dna_zoo.cli import export as export_cmd
from dna_zoo.cli import hub as hub_cmd
from dna_zoo.cli import latency as latency_cmd
from dna_zoo.cli import retrain as retrain_cmd
from dna_zoo.cli import search as search_cmd
from dna_zoo.cli import supernet as supernet_cmd
from dna_zoo.cli import zoo as zoo_cmd
from dna_zoo.cli.common import DnaGroup

app = typer.Typer(
    cls=DnaGroup,
    name="dna",
    help="DNA model zoo, device-aware architecture search and checked export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dna-zoo {dna_zoo.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = {"debug": debug}
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


app.command("models")(zoo_cmd.models)
app.command("info")(zoo_cmd.info)
app.command("demo")(demo_cmd.demo)
app.command("search")(search_cmd.search)
app.command("retrain")(retrain_cmd.retrain)
app.add_typer(supernet_cmd.app, name="supernet")
app.add_typer(latency_cmd.app, name="latency")
app.add_typer(hub_cmd.app, name="hub")
app.command("export")(export_cmd.export)
app.command("benchmark")(export_cmd.benchmark)
app.command("validate")(export_cmd.validate)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

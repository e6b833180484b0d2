"""The ``sizewise`` command. Each subcommand lives in its own module with a ``register(app)``.

Errors a user can fix (:class:`~sizewise.errors.SizewiseError`, and ``OSError`` such as an output path
that is a folder) print one line and exit 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from sizewise.errors import SizewiseError

# One module per command group; each defines register(app: typer.Typer) -> None.
COMMAND_MODULES = [
    "sizewise.cli.eval_cmd",
    "sizewise.cli.train_cmd",
    "sizewise.cli.calibrate_cmd",
    "sizewise.cli.serve_cmd",
    "sizewise.cli.log_cmd",
    "sizewise.cli.choose_cmd",
    "sizewise.cli.models_cmd",
    "sizewise.cli.collect_cmd",
    "sizewise.cli.data_cmd",
    "sizewise.cli.outcomes_cmd",
    "sizewise.cli.router_cmd",
    "sizewise.cli.scorer_cmd",
    "sizewise.cli.distill_cmd",
]

app = typer.Typer(
    name="sizewise",
    help="The smallest model that is good enough, for each request.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    """Console entry point."""
    try:
        app(standalone_mode=True)
    except SizewiseError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except OSError as error:  # a path that is a folder, a file where a folder should be, no permission...
        where = f": {error.filename}" if error.filename else ""
        typer.echo(f"error: {error.strerror or error}{where}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

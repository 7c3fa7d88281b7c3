"""The ``iatrun`` command line. Commands are thin: they parse, call the library, and print.

Every user mistake (an IatrunError or a usage error) is printed here, once, as one
``error: ...`` line on stderr with exit code 2.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors its own click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException, NoArgsIsHelpError

from iatrun import __version__
from iatrun.cli import bench, converge, fit, listing, plot, regions, sweep
from iatrun.errors import IatrunError


def _fail(message: str) -> None:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


class _Group(TyperGroup):
    """Turns usage errors and IatrunError into one stderr line and exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(
                args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra
            )
        except NoArgsIsHelpError as e:
            print(e.format_message())
            rv = 0
        except ClickException as e:
            _fail(e.format_message())
        except IatrunError as e:
            _fail(str(e))
        except (KeyboardInterrupt, typer.Abort):
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


app = typer.Typer(
    cls=_Group,
    help="Experiments with ReLU and IAT-ReLU (Integral Activation Transform) networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(fit.app)
app.add_typer(sweep.app)  # sweep, report, status
app.add_typer(listing.app, name="list")
app.add_typer(regions.app)  # regions, construct
app.add_typer(plot.app, name="plot")
app.add_typer(converge.app)
app.add_typer(bench.app)


def _version(value: bool) -> None:
    if value:
        print(f"iatrun {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Experiments with ReLU and IAT-ReLU (Integral Activation Transform) networks."""


def main() -> None:
    app()

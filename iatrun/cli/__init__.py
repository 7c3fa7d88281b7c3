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
from iatrun.cli import bench, converge, fit, listing, plot, regions, report, sweep
from iatrun.errors import IatrunError


def _fail(message: str) -> None:
    text = " ".join(str(message).split()).replace(": Value error, ", ": ")  # Typer's choice wording
    print(f"error: {_did_you_mean(text)}", file=sys.stderr)
    sys.exit(2)


def _did_you_mean(text: str) -> str:
    """A choice refused by Typer ("'pwqq' is not one of 'rect', ...") with the nearest choice named."""
    import difflib
    import re

    m = re.search(r"'([^']*)' is not one of (.+)\.$", text)
    if not m:
        return text
    close = difflib.get_close_matches(m.group(1), re.findall(r"'([^']*)'", m.group(2)), n=1)
    return f"{text[:-1]} (did you mean {close[0]!r}?)" if close else text


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


def _untyped_switches() -> None:
    """Leave the type column of ``--help`` empty for switches: Typer prints ``<bool>`` beside every
    one (``--help`` and ``--quiet`` included), which says nothing, since a switch takes no value."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:  # another Typer: its own rendering stands
        return

    def display_type_rich(self, ctx):
        return "" if getattr(self, "is_flag", False) else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_untyped_switches()
app = typer.Typer(
    cls=_Group,
    help="Experiments with ReLU and IAT-ReLU (Integral Activation Transform) networks.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every subcommand
    pretty_exceptions_enable=False,
)
app.add_typer(fit.app)
app.add_typer(sweep.app)  # sweep, status
app.add_typer(report.app)
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

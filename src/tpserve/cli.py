"""The ``tpserve`` command line: the app assembled from :mod:`tpserve.commands`, one module per command.

Errors become one line on stderr here, and nowhere else.
"""

from __future__ import annotations

import signal
import sys

import typer

from tpserve.commands import console, demo, fetch, loadtest_results, plan, report, serve, shapes, sweep, tune
from tpserve.commands import startup as startup_command
from tpserve.fetch.errors import ServerError, TpserveError

app = typer.Typer(
    help="Serve LLMs with vLLM tensor parallelism and measure tok/s honestly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command(context_settings=serve.CONTEXT)(serve.serve)
for command in (fetch.fetch, plan.plan, shapes.shapes, demo.demo, sweep.sweep, tune.tune, report.report,
                startup_command.startup):
    app.command()(command)
app.command("loadtest-results")(loadtest_results.loadtest_results)


def _terminate(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Entry point: run the app, turning tpserve's errors into one line and an exit status."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        # Not standalone, the app returns an exit status instead of exiting: 130 after Ctrl-C (the typer this
        # is built with) or a command's typer.Exit code.
        status = app(standalone_mode=False)
    except TpserveError as exc:
        if isinstance(exc, ServerError) and exc.log_tail:
            console.print("[dim]last lines of the server log:[/dim]")
            console.print(exc.log_tail, markup=False, highlight=False, end="")
        console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        sys.exit(exc.exit_code)
    except typer.Abort:  # a typer that raises after Ctrl-C instead of returning 130
        status = 130
    except typer.Exit:
        raise
    except Exception as exc:  # usage errors arrive here in non-standalone mode; newer typer bundles its click
        import click

        usage = (click.ClickException, getattr(typer, "TyperException", click.ClickException))
        if isinstance(exc, usage) and hasattr(exc, "show"):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(status, int) and status:
        if status == 130:
            console.print("aborted")
        sys.exit(status)

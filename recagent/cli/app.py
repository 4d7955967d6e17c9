"""The ``recagent`` command: one typer app, a sub-app per part, one-line errors instead of tracebacks."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from recagent.config import format_validation_error
from recagent.errors import RecagentError

app = typer.Typer(
    name="recagent",
    help="Agentic, tool-learning recommendation: data, recommenders, tools, the agent, dialog synthesis, SFT and step-grained RL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the width


def _register() -> None:
    # sub-apps import their heavy dependencies inside the commands, so --help stays fast
    from recagent.cli import chat, config, data, evaluate, mcp, quickstart, recs, serve, synth, tools, train
    from recagent.cli.options import config_epilog

    app.add_typer(data.app, name="data")
    app.add_typer(recs.app, name="recs")
    app.add_typer(tools.app, name="tools")
    app.add_typer(train.app, name="train")
    app.add_typer(config.app, name="config")
    app.command("quickstart")(quickstart.quickstart)
    app.command("chat", epilog=config_epilog("chat"))(chat.chat)
    app.command("recommend", epilog=config_epilog("recommend"))(chat.recommend)
    app.command("synth", epilog=config_epilog("synth"))(synth.synth)
    app.command("eval", epilog=config_epilog("eval"))(evaluate.evaluate)
    app.command("serve", epilog=config_epilog("serve"))(serve.serve)
    app.command("mcp", epilog=config_epilog("mcp"))(mcp.mcp)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    _register()
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int):  # click returns typer.Exit codes in non-standalone mode
            return code
    except RecagentError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)  # a message is text, not markup
        return 2
    except ValidationError as e:
        err_console.print(f"[bold red]error:[/] {escape(format_validation_error(e, 'arguments'))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: finished work is saved; run the same command again to resume")
        return 130
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except Exception as e:  # click's usage errors arrive here in non-standalone mode
        # typer bundles its own copy of click, so match the ClickException interface, not a class
        show, code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``recagent chat`` and ``recagent recommend``: talk to the agent, or get a list-wise top-k for a user."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from recagent.cli.options import (
    Adapter,
    AgentConfigFile,
    BaseUrl,
    Dataset,
    MaxSteps,
    Model,
    Overrides,
    agent_overrides,
)

console = Console(soft_wrap=True)
status = Console(stderr=True, soft_wrap=True)  # progress and notices: stdout stays clean for --json
HELP = "commands: /user ID (load a dataset user), /trace (last turn's steps), /reset, /quit"


def _config(
    config: Path | None,
    override: list[str] | None,
    model: str | None,
    base_url: str | None,
    adapter: str | None,
    max_steps: int | None,
    dataset: str | None,
):
    from recagent.agents.config import AgentConfig

    cfg = AgentConfig.from_yaml(config) if config else AgentConfig()
    return cfg.with_overrides(agent_overrides(model, base_url, adapter, max_steps, dataset) + list(override or []))


def _print_step(step) -> None:
    if step.kind == "tool_call":
        status = "" if step.valid else f"  [red]{escape(str(step.error))}[/]"  # model and tool text is never markup
        args = json.dumps(step.arguments, ensure_ascii=False) if not isinstance(step.arguments, str) else step.arguments
        console.print(
            f"[dim]  -> {escape(f'{step.tool}({args})')} {step.latency_ms:.0f} ms  {escape(step.result_summary or '')}[/]{status}",
            highlight=False,
        )
    elif step.kind in ("invalid_call", "rejected_answer"):
        console.print(f"[dim yellow]  !! {escape(str(step.error))}[/]", highlight=False)


def chat(
    message: str | None = typer.Option(None, "--message", "-m", help="answer this one message and exit"),
    session: str = typer.Option("default", help="session name; the conversation resumes after a restart"),
    user: str | None = typer.Option(None, help="dataset user id to chat as"),
    as_json: bool = typer.Option(False, "--json", help="with --message: print answer, item ids and trace as JSON"),
    model: Model = None,
    base_url: BaseUrl = None,
    adapter: Adapter = None,
    max_steps: MaxSteps = None,
    dataset: Dataset = None,
    config: AgentConfigFile = None,
    override: Overrides = None,
) -> None:
    """Chat with the recommender agent (offline default model unless --base-url is given)."""
    from recagent.agents import Agent
    from recagent.agents.session_db import check_sessions
    from recagent.cli.prepare import prepare

    cfg = _config(config, override, model, base_url, adapter, max_steps, dataset)
    check_sessions(cfg.sessions)  # a bad URL or an unreachable database: one line, before any work
    prepare(cfg.tools.dataset, cfg.tools.models, cfg.policy)
    with status.status("loading the agent"):
        agent = Agent.from_config(cfg)
    try:
        if message is not None:
            if as_json:
                result = agent.chat(message, session=session, user_id=user)
                typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
            else:
                _turn(agent, message, session, user)
            return
        console.print(f"[bold]recagent chat[/] (session {session!r}, {cfg.tools.dataset}). {HELP}")
        if user:
            agent.set_user(session, user)
        last = None
        while True:
            try:
                text = console.input("[bold cyan]you>[/] ").strip()
            except EOFError:
                break
            if not text:
                continue
            if text in ("/quit", "/exit"):
                break
            if text == "/reset":
                agent.reset(session)
                console.print("[dim]session cleared[/]")
            elif text.startswith("/user"):
                parts = text.split()
                if len(parts) != 2:
                    console.print("[red]usage: /user ID[/]")
                    continue
                profile = agent.set_user(session, parts[1])
                console.print(
                    f"[dim]now chatting as user {parts[1]} ({len(profile['seen'])} items in their history)[/]"
                )
            elif text == "/trace":
                for step in last.trace if last else []:
                    console.print(json.dumps(step.to_dict(), ensure_ascii=False), highlight=False)
            elif text.startswith("/"):
                console.print(f"[red]unknown command[/]; {HELP}")
            else:
                last = _turn(agent, text, session, None)
    finally:
        agent.close()


def _turn(agent, text: str, session: str, user: str | None):
    from recagent.errors import RecagentError

    result = None
    console.print("[bold green]agent>[/] ", end="")
    streamed = ""  # text of the policy call being streamed now
    try:
        for kind, data in agent.stream(text, session=session, user_id=user):
            if kind == "token":
                console.print(data, end="", highlight=False, markup=False)
                streamed += data
            elif kind == "step":
                if streamed:
                    console.print()
                if data.kind != "answer":
                    streamed = ""
                _print_step(data)
            else:
                result = data
    except RecagentError as e:
        console.print(f"\n[red]{escape(str(e))}[/]")
        return None
    if result is not None and result.answer.strip() != streamed.strip():
        console.print(
            result.answer, highlight=False, markup=False
        )  # the answer was not streamed (fallback or an annotated answer)
    return result


def recommend(
    user: str = typer.Option(..., help="dataset user id"),
    k: int = typer.Option(10, "-k", help="list length"),
    as_json: bool = typer.Option(False, "--json", help="print ids, answer and trace as JSON"),
    model: Model = None,
    base_url: BaseUrl = None,
    max_steps: MaxSteps = None,
    dataset: Dataset = None,
    config: AgentConfigFile = None,
    override: Overrides = None,
) -> None:
    """List-wise mode: the agent acts for a dataset user and returns a ranked top-k of item ids."""
    from recagent.agents import Agent
    from recagent.cli.prepare import prepare

    cfg = _config(config, override, model, base_url, None, max_steps, dataset)
    prepare(cfg.tools.dataset, cfg.tools.models, cfg.policy)
    agent = Agent.from_config(cfg)
    try:
        result = agent.recommend(user, k)
    finally:
        agent.close()
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    catalog = agent.context.env.catalog
    for step in result.trace:
        _print_step(step)
    for rank, item in enumerate(result.recommended, 1):
        console.print(f"{rank:>3}. {catalog.display(catalog.index_of[item])} [{item}]", highlight=False, markup=False)
    if result.filled:
        console.print(f"[dim]({result.filled} of {k} filled in from tool results: the policy listed fewer)[/]")

"""``recagent mcp``: the tool registry over MCP, driven by the SDK's own client (stdio, streamable HTTP) and LangChain.

The schemas an MCP client lists are the registry's; a call runs through the registry, so a refused call
is an MCP tool error (``isError``) with the toolkit's one-line message; each MCP session has its own
candidate sets. The HTTP server runs in a thread over the synthetic tool environment; stdio and the
command's HTTP mode run as real processes over the synthetic dataset written to files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from recagent.cli import main
from recagent.serve.mcp_server import MCP_PATH, McpConfig, create_http_app
from recagent.tools.recommender_tools import build_registry
from recagent.tools.result_text import result_text

KEY_A, KEY_B = "a" * 24, "b" * 24
TIMEOUT = timedelta(seconds=120)  # a tool's first call may load an index; the machine may be busy
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def registry_tools() -> dict[str, dict]:
    """name -> the registry's OpenAI ``function`` entry (the schemas need no environment)."""
    return {s["function"]["name"]: s["function"] for s in build_registry(None).openai_schemas()}


def toolkit_error(name: str, args: dict) -> tuple[str, str]:
    """(kind, message) the toolkit gives for a call refused before any tool runs."""
    out = build_registry(None).call(name, args)
    assert not out.ok
    return out.error.error, out.error.message


def text(result) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text"
    return result.content[0].text


def ids(result) -> list[str]:
    assert not result.isError, text(result)
    return [it["item_id"] for it in result.structuredContent["items"]]


async def exercise(session: ClientSession) -> None:
    """List the tools, call one, chain save_as -> candidates, and get structured errors for bad arguments."""
    listed = (await session.list_tools()).tools
    expected = registry_tools()
    assert [t.name for t in listed] == list(expected)
    for t in listed:  # the registry's schemas and descriptions, unchanged
        assert t.inputSchema == expected[t.name]["parameters"]
        assert t.description == expected[t.name]["description"]

    top = await session.call_tool("popular_items", {"k": 3}, read_timeout_seconds=TIMEOUT)
    assert not top.isError and len(ids(top)) == 3
    assert text(top) == result_text(top.structuredContent)  # the compact lines a model reads, one per item
    assert text(top).splitlines()[1].startswith(f"[{ids(top)[0]}] ")

    saved = await session.call_tool("popular_items", {"k": 2, "save_as": "top"})
    assert saved.structuredContent["candidate_set"] == "top"
    shown = await session.call_tool("get_candidates", {"name": "top", "k": 3})
    assert ids(shown) == ids(top)  # the whole ranking was saved, not just the two items shown
    whole = ids(await session.call_tool("get_candidates", {"name": "top", "k": 100}))
    ranked = await session.call_tool("rank_items", {"user_id": 1, "candidates": "top", "k": 5})  # a numeric id
    assert len(ids(ranked)) == 5 and set(ids(ranked)) <= set(whole)

    for args in ({"k": 0}, {"k": "many"}, {"genre": "Comedy", "colour": "red"}):
        bad = await session.call_tool("popular_items", args)
        kind, message = toolkit_error("popular_items", args)
        assert bad.isError and text(bad) == message and "\n" not in message
        assert bad.structuredContent["error"] == kind == "invalid_arguments"
    missing = await session.call_tool("get_candidates", {"name": "nope"})
    assert missing.isError and missing.structuredContent == {
        "error": "invalid_value",
        "message": text(missing),
        "field": "candidates",
    }
    assert text(missing).startswith("no candidate set named 'nope'; existing sets: top")
    unknown = await session.call_tool("no_such_tool", {})
    assert unknown.isError and unknown.structuredContent["error"] == "unknown_tool"
    assert text(unknown).startswith("no tool named 'no_such_tool'; available tools: search_items, ")


@contextlib.contextmanager
def http_server(env, **config) -> Iterator[str]:
    """``create_http_app`` on a free loopback port in a thread; yields the MCP endpoint URL."""
    app = create_http_app(McpConfig(transport="http", **config), env)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the MCP test server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}{MCP_PATH}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextlib.asynccontextmanager
async def http_session(url: str, key: str | None = None):
    """An initialized SDK client session over streamable HTTP (with ``Authorization: Bearer key``)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300)) as client:
        async with streamable_http_client(url, http_client=client) as (read, write, session_id):
            async with ClientSession(read, write, read_timeout_seconds=TIMEOUT) as session:
                await session.initialize()
                yield session, session_id()


def test_http_tools_errors_and_candidate_sets_per_session(synthetic_env, monkeypatch):
    monkeypatch.setenv("RECAGENT_API_KEYS", f"{KEY_A},{KEY_B}")

    async def scenario(url: str) -> None:
        async with http_session(url, KEY_A) as (a, sid_a), http_session(url, KEY_A) as (b, _):
            await exercise(a)
            # the same set name in two sessions: two sets, neither sees the other's
            mine = await a.call_tool("popular_items", {"genre": "Comedy", "k": 4, "save_as": "mine"})
            absent = await b.call_tool("get_candidates", {"name": "mine"})
            assert absent.isError and text(absent).startswith("no candidate set named 'mine'; existing sets: none yet")
            theirs = await b.call_tool("popular_items", {"genre": "Drama", "k": 4, "save_as": "mine"})
            assert ids(theirs) != ids(mine)
            assert ids(await a.call_tool("get_candidates", {"name": "mine", "k": 4})) == ids(mine)
            assert ids(await b.call_tool("get_candidates", {"name": "mine", "k": 4})) == ids(theirs)
            # a session answers only the key that opened it: another valid key gets 404, as for no session
            async with httpx.AsyncClient(timeout=30) as raw:
                call = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}
                other = {**MCP_HEADERS, "Authorization": f"Bearer {KEY_B}", "Mcp-Session-Id": sid_a}
                assert (await raw.post(url, json=call, headers=other)).status_code == 404

    with http_server(synthetic_env) as url:
        asyncio.run(scenario(url))
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        for auth in ({}, {"Authorization": "Bearer wrong-key-of-some-length"}):
            refused = httpx.post(url, json=init, headers={**MCP_HEADERS, **auth}, timeout=30)
            assert refused.status_code == 401 and "Authorization: Bearer KEY" in refused.text


def test_http_without_keys_serves_loopback_names_only_and_no_web_pages(synthetic_env, monkeypatch):
    monkeypatch.delenv("RECAGENT_API_KEYS", raising=False)

    async def scenario(url: str) -> None:
        async with http_session(url) as (session, _):
            assert ids(await session.call_tool("popular_items", {"k": 2}))

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    with http_server(synthetic_env) as url:
        asyncio.run(scenario(url))
        rebound = httpx.post(url, json=init, headers={**MCP_HEADERS, "Host": "evil.example:80"}, timeout=30)
        assert rebound.status_code == 400 and "host_not_allowed" in rebound.text
        page = httpx.post(url, json=init, headers={**MCP_HEADERS, "Origin": "https://evil.example"}, timeout=30)
        assert page.status_code == 403 and "allowed_origins" in page.text


# langgraph 1.x points to langchain.agents.create_agent, from the `langchain` package, which recagent does not use
@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_langchain_adapters_load_the_tools_into_a_langgraph_agent(synthetic_env, monkeypatch):
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_mcp_adapters.client import MultiServerMCPClient
    from langchain_mcp_adapters.tools import load_mcp_tools
    from langgraph.prebuilt import create_react_agent

    from recagent.agents.policies.scripted import ScriptedPolicy, call, tool_calls

    monkeypatch.delenv("RECAGENT_API_KEYS", raising=False)

    async def scenario(url: str) -> dict:
        client = MultiServerMCPClient({"recagent": {"transport": "streamable_http", "url": url}})
        # one MCP session for the whole run, so the candidate set saved by one call is there for the next
        async with client.session("recagent") as session:
            tools = await load_mcp_tools(session)
            assert [t.name for t in tools] == list(registry_tools())
            policy = ScriptedPolicy(
                script=[
                    tool_calls(call("popular_items", {"k": 3, "save_as": "top"}, "c1")),
                    tool_calls(
                        call("get_candidates", {"name": "top", "k": 3}, "c2"),
                        call("get_candidates", {"name": "gone"}, "c3"),
                    ),
                    AIMessage("Here are three popular films."),
                ]
            )
            agent = create_react_agent(policy, tools)
            return await agent.ainvoke({"messages": [HumanMessage("popular films please")]})

    with http_server(synthetic_env) as url:
        state = asyncio.run(scenario(url))
    results = {m.tool_call_id: m for m in state["messages"] if isinstance(m, ToolMessage)}
    first, again, gone = results["c1"], results["c2"], results["c3"]
    top = [it["item_id"] for it in first.artifact["structured_content"]["items"]]
    assert len(top) == 3 and all(f"[{i}] " in first.text for i in top)  # the model read the compact lines
    assert [it["item_id"] for it in again.artifact["structured_content"]["items"]] == top
    assert gone.status == "error" and "no candidate set named 'gone'; existing sets: top" in gone.text
    assert state["messages"][-1].content == "Here are three popular films."


def test_stdio_process_serves_the_tools(dataset_dir, tmp_path):
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "recagent.cli",
            "mcp",
            "--dataset",
            dataset_dir,
            "-o",
            "tools.models=[pop,itemknn]",
            "-o",
            "tools.default_model=itemknn",
        ],
        env=dict(os.environ),  # RECAGENT_HOME: where the fixture trained the models
    )
    errlog = (tmp_path / "server.err").open("w")

    async def scenario() -> None:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=TIMEOUT) as session:
                info = await session.initialize()
                assert info.serverInfo.name == "recagent" and "save_as" in info.instructions
                await exercise(session)

    try:
        asyncio.run(scenario())
    finally:
        errlog.close()
    log = (tmp_path / "server.err").read_text()
    assert "recagent mcp: the tools over synthetic on stdio" in log and "Traceback" not in log


def test_http_process_requires_the_key(dataset_dir, monkeypatch):
    monkeypatch.setenv("RECAGENT_API_KEYS", KEY_A)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "recagent.cli",
        "mcp",
        "--transport",
        "http",
        "--port",
        str(port),
        "--dataset",
        dataset_dir,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}{MCP_PATH}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                refused = httpx.post(url, json={}, headers=MCP_HEADERS, timeout=5)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.time() < deadline, (
                    proc.stderr.read() if proc.poll() is not None else "timeout"
                )
                time.sleep(0.5)
        assert refused.status_code == 401

        async def scenario() -> None:
            async with http_session(url, KEY_A) as (session, _):
                saved = await session.call_tool("popular_items", {"k": 2, "save_as": "s"})
                assert ids(await session.call_tool("get_candidates", {"name": "s", "k": 2})) == ids(saved)

        asyncio.run(scenario())
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"recagent mcp: http://127.0.0.1:{port}/mcp" in err and "1 API key(s)" in err and "Traceback" not in err


def test_a_public_host_without_a_key_is_refused_in_one_line(capsys, monkeypatch):
    monkeypatch.delenv("RECAGENT_API_KEYS", raising=False)
    assert main(["mcp", "--transport", "http", "--host", "0.0.0.0"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "host 0.0.0.0 is not loopback: set API keys in $RECAGENT_API_KEYS" in err[0]
    assert main(["mcp", "--host", "127.0.0.1"]) == 2  # --host means nothing over stdio: said, not ignored
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--host and --port are for --transport http" in err[0]

"""A recagent server on a loopback port inside the test process (uvicorn in a thread), and the agents it serves."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from recagent.agents import Agent, AgentConfig
from recagent.agents.policies.scripted import EchoPolicy
from recagent.agents.session_db import SessionsConfig
from recagent.serve.app import create_app
from recagent.serve.config import ServeConfig


def echo_agent(env, db_path: Path | None, sessions: SessionsConfig | None = None, **policy_kwargs) -> Agent:
    """An agent over ``env``'s real tools whose policy quotes what it was shown (see EchoPolicy).

    Sessions go to the SQLite file ``db_path``, or, with ``sessions`` (and no ``db_path``), where that says.
    """
    cfg = AgentConfig(sessions=sessions) if sessions else AgentConfig()
    return Agent.from_config(cfg, policy=EchoPolicy(**policy_kwargs), env=env, db_path=db_path)


@contextlib.contextmanager
def serving(agent: Agent, /, **config) -> Iterator[str]:
    """Serve ``agent`` on a free loopback port for the duration of the block; yields the base URL."""
    cfg = ServeConfig(**config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, agent), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()

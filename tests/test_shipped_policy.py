"""The trained policy installed with recagent: five fixed hand-written requests get the right first step (greedy).

Runs only once the weights are installed (``agents/weights/``, issue 15); until then it is skipped,
with that reason, because the untrained base model cannot pass it.
"""

from __future__ import annotations

import pytest

from recagent.agents.local_model import shipped_adapter

pytestmark = pytest.mark.skipif(shipped_adapter() is None, reason="no trained policy is installed yet (issue 15)")

FIXED = ("notool-01", "user-01", "pop-01", "sim-01", "attr-01")  # a greeting, personal, popular, similar, a genre


def test_five_fixed_requests_get_the_right_first_step(ml100k_env, tmp_path):
    from recagent.agents import Agent
    from recagent.agents.config import AgentConfig
    from recagent.evaluation.chat_requests import agent_answer, call_matches, tool_defaults
    from recagent.heldout_requests import load_chat_requests
    from recagent.tools.recommender_tools import build_registry

    requests = {r.id: r for r in load_chat_requests()}
    config = AgentConfig()
    assert config.policy.initial_tool_choice() == "auto", "the trained policy decides when to call"
    agent = Agent.from_config(config, env=ml100k_env, db_path=tmp_path / "sessions.sqlite")
    defaults = tool_defaults(build_registry(ml100k_env.session()))
    wrong = {}
    for rid in FIXED:
        req = requests[rid]
        row = agent_answer(agent, req)
        first = row["first_step"][0] if row["first_step"] else None
        if any(a.no_tool for a in req.accepted_first_calls):
            ok = first is None and row["error"] is None
        else:
            ok = first is not None and any(
                call_matches(first["tool"], first["arguments"], a, defaults) for a in req.accepted_first_calls
            )
        if not ok:
            wrong[rid] = (first, row["error"], row["answer"][:120])
    agent.close()
    assert not wrong, wrong


def test_with_jump_forward_the_shipped_policys_replies_are_tokenized_as_training_tokenizes_them(
    ml100k_env, tmp_path, monkeypatch
):
    """Forced text written by the engine in one step is canonical; decoded under the mask token by token, the
    trained model spells forced titles and genres in fragments (`` ``, ``D``, ``rama``) no training text has."""
    from recagent.agents import Agent
    from recagent.agents.config import AgentConfig, PolicyConfig
    from recagent.evaluation.chat_requests import agent_answer
    from recagent.heldout_requests import load_chat_requests

    request = {r.id: r for r in load_chat_requests()}["pop-01"]  # a call, then an answer citing its items
    canonical = {}
    for jump in (True, False):
        agent = Agent.from_config(
            AgentConfig(policy=PolicyConfig(jump_forward=jump)), env=ml100k_env, db_path=tmp_path / f"{jump}.sqlite"
        )
        engine = agent.context.policy.load()
        replies = _record_replies(engine, monkeypatch)
        row = agent_answer(agent, request)
        agent.close()
        assert row["first_step"] and "[" in row["answer"]
        texts = [[t for t in ids if t not in engine.eos_ids()] for ids in replies]
        tok = engine.tokenizer
        canonical[jump] = all(ids == tok.encode(tok.decode(ids), add_special_tokens=False) for ids in texts)
    assert canonical == {True: True, False: False}


def _record_replies(engine, monkeypatch) -> list[list[int]]:
    """The new token ids of every reply ``engine`` decodes from now on."""
    replies: list[list[int]] = []
    real = type(engine).decode

    def decode(job, on_token=None, cancel=None):
        out = real(engine, job, on_token, cancel)
        replies.append(out.new_ids)
        return out

    monkeypatch.setattr(engine, "decode", decode)
    return replies


def test_the_shipped_tool_router_loads_and_names_an_accepted_tool_for_the_five_requests():
    """The router beside the adapter (on by default, policy.router_top_k) reads as plain arrays and ranks an accepted
    first tool first for the four fixed requests that need one."""
    from recagent.agents.local_model import shipped_folder
    from recagent.agents.tool_router import ToolRouter, Turn, router_file
    from recagent.heldout_requests import load_chat_requests

    path = router_file(shipped_folder())
    assert path is not None, "tool_router.npz should ship beside the adapter"
    router = ToolRouter.load(path)
    requests = {r.id: r for r in load_chat_requests()}
    for rid in FIXED[1:]:
        req = requests[rid]
        top = router.rank(router.text([Turn("user", req.text)]))[0]
        assert top in {a.tool for a in req.accepted_first_calls}, (rid, top)

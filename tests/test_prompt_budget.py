"""The local policy's prompt stays small: the chat system prompt and all ten recommender tools fit its token budget.

SmolLM2-135M is trained and run on a CPU, and every agent step starts with this prefix, so its
length is measured with the real tokenizer on exactly what the agent sends in chat mode: the
system prompt of ``prompts.system_prompt`` for a known user, rendered with the tools by
``render_messages`` and SmolLM2's chat template, up to the first user turn.
"""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage

from recagent.agents.prompt_format import render_messages, render_tools
from recagent.agents.prompts import system_prompt
from recagent.tools.recommender_tools import TOOL_FUNCTIONS, build_registry

BUDGET = 800  # tokens for the system turn (tools block + chat system prompt); the rest of the context is the dialog


def test_chat_system_prompt_and_all_tools_fit_the_token_budget(ml100k_env, smollm2_tokenizer):
    tools = build_registry(ml100k_env).openai_schemas()
    assert len(tools) == len(TOOL_FUNCTIONS) == 10
    state = {"mode": "chat", "user": {"user_id": ml100k_env.dataset.users.ids[0]}}
    system = system_prompt(state, ml100k_env.dataset.name)
    turns = render_messages([SystemMessage(system), HumanMessage("Something fun for tonight?")], tools)
    text = smollm2_tokenizer.apply_chat_template(turns, tokenize=False)
    prefix = text[: text.index("<|im_start|>user\n")]
    assert prefix == f"<|im_start|>system\n{render_tools(tools)}\n\n{system}<|im_end|>\n", "tools open the system turn"
    n_tokens = len(smollm2_tokenizer(prefix, add_special_tokens=False)["input_ids"])
    assert n_tokens <= BUDGET, f"system turn is {n_tokens} SmolLM2 tokens, over the budget of {BUDGET}"

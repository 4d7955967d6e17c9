"""The agent job config (policy, tools, budgets) and the runtime context handed to graph nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from recagent.agents.session_db import SessionsConfig
from recagent.config import JobConfig
from recagent.errors import ConfigError
from recagent.tools.env import ToolEnv, ToolEnvConfig

SHIPPED = "shipped"  # PolicyConfig.adapter: the trained policy installed with the package


class PolicyConfig(JobConfig):
    """Which chat model decides the agent's steps."""

    kind: Literal["local", "openai"] = Field(
        "local", description="local Hugging Face model or an OpenAI-compatible server"
    )
    model: str | None = Field(
        None, description="local: checkpoint folder (None = offline SmolLM2-135M); openai: model name on the server"
    )
    base_url: str | None = Field(None, description="OpenAI-compatible server URL (default: env OPENAI_BASE_URL)")
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the environment variable holding the API key")
    adapter: str | None = Field(
        SHIPPED,
        description="local: LoRA adapter folder (peft); 'shipped' = the trained policy installed with recagent "
        "(on the default base model; the untrained base while none is installed); null = the untrained base",
    )
    engine: Literal["auto", "llama_cpp", "transformers"] = Field(
        "auto", description="local: inference engine; auto = llama.cpp for the default model or a .gguf file"
    )
    constrained: bool = Field(True, description="local: grammar-constrained tool calls and answer citations (xgrammar)")
    jump_forward: bool = Field(
        True,
        description="local, llama.cpp: text the grammar forces is appended in one batched step, not token by token",
    )
    no_repeat_calls: bool = Field(
        True,
        description="local: a call that repeats one made since the user's last message (same tool and arguments) "
        "is decoded again without that tool",
    )
    # k=1 won on validation dialogs and the development requests; alone it lost on the hand-written test
    # (benchmarks/results/offline_policy_router.md), with call arguments grounded in the request's years and genres it
    # won there too (benchmarks/results/offline_policy_grounded_args.md; README, "Arguments the request gives")
    router_top_k: int = Field(
        1,
        ge=0,
        description="local: a call may name only the k tools the adapter's tool router (its folder's tool_router.npz) "
        "ranks likeliest for the turn, and any tool it does not know; 0 = every offered tool; no effect without a router",
    )
    router_reply: bool = Field(
        True,
        description="local: a router fit with answers (recagent train router) decides whether the reply calls or "
        "answers after a tool result, and after a user message answers where it is sure no tool is needed "
        "(router_answer_p) and calls where it is sure one is (router_call_p)",
    )
    # on the synth4v validation dialogs 0.9 decided 115 of 158 answers after a user message and answered 2 of 383
    # calls (router_config.yaml, validation_reply); 0.5 answered 21 of the calls
    router_answer_p: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="local: after a user message the reply is an answer (no tool) when the router gives answering at "
        "least this probability; 1 = never",
    )
    # the router shipped since the likened-id slot, on its synthesis run's validation dialogs: 0.03 decides 277 of the
    # 383 calls after a user message and makes none of the 160 answers a call (results/tool_router_phrased_config.yaml);
    # on the development requests 99 of the 138 that need a tool and none of the 35 that do not, where 0.05 made
    # "haha you're funny" and "top of the morning to ya" calls (results/router_dev_requests_phrased.json;
    # results/dev_requests_phrased_05.md, the policy at 0.05)
    router_call_p: float = Field(
        0.03,
        ge=0.0,
        le=0.5,
        description="local: after a user message the reply is a call when the router gives answering at most this "
        "probability; 0 = never",
    )
    router_save_p: float = Field(
        0.8,
        ge=0.5,
        le=1.0,
        description="local: a router fit with saves requires a call's save argument where it gives saving at least "
        "this probability, and drops it where it gives at most 1 minus this; 1 = never decides",
    )
    # where it fires on synthesized dialogs the gold reply asks for the id: 71 of 71 train replies, 7 of 8 validation
    # ones (results/user_id_asks.json); no gold call names a user nobody gave (results/grounded_gold_calls.json)
    ask_for_user: bool = Field(
        True,
        description="local, with a grammar: under tool choice auto, a tool that requires a user id is left out while "
        "the conversation names no known user; where that was the router's tool (or all there was) the reply is an "
        "answer, which asks for the id",
    )
    # both sized from synthesized dialogs (benchmarks/token_budgets.py): the longest answer is 230 tokens, the
    # longest single call 83; a reply cut short is wasted, one that runs on past what it needs is too
    max_new_tokens: int = Field(240, ge=1, description="longest reply per policy call")
    max_call_tokens: int | None = Field(
        96,
        ge=1,
        description="local: longest reply that can only be a tool call (forced, one call); None = max_new_tokens",
    )
    num_threads: int | None = Field(None, ge=1, description="local: CPU threads for the engine; None = its default")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0 = greedy)")
    first_tool_choice: Literal["auto", "required"] | None = Field(
        None,
        description="tool choice until a call of the turn has worked; None = 'auto' for servers and trained local "
        "policies, 'required' for the untrained base model (it never calls a tool unprompted)",
    )
    parallel_tool_calls: bool | None = Field(
        None,
        description="local: several calls per reply; None = allowed for trained policies (some requests need two "
        "calls, e.g. a comparison), one call for the untrained base (offered more, it repeats its call)",
    )
    later_tool_choice: Literal["auto", "none"] = Field(
        "auto",
        description="tool choice once a call of the turn has worked; 'none' = answer right after the first result",
    )
    timeout: float = Field(60.0, gt=0, description="openai: seconds per request")
    max_retries: int = Field(2, ge=0, description="openai: retries with backoff")

    def adapter_folder(self) -> str | None:
        """The LoRA adapter a local policy loads: ``adapter``, with 'shipped' resolved (None = no adapter)."""
        if self.adapter != SHIPPED:
            return self.adapter
        if self.model is not None:  # the shipped adapter was trained on the default base model only
            return None
        from recagent.agents.local_model import shipped_adapter

        found = shipped_adapter()
        return str(found) if found else None

    def decides_itself(self) -> bool:
        """True for a server or a trained local policy; False for the untrained base (it must be steered)."""
        return self.kind == "openai" or self.adapter_folder() is not None

    def parallel_calls(self) -> bool:
        """Whether a local policy may write several calls per reply: ``parallel_tool_calls``, else by who decides."""
        if self.parallel_tool_calls is not None:
            return self.parallel_tool_calls
        return self.decides_itself()

    def initial_tool_choice(self) -> Literal["auto", "required"]:
        """The tool choice of a turn's first step: ``first_tool_choice``, else by who decides (see its description)."""
        if self.first_tool_choice is not None:
            return self.first_tool_choice
        return "auto" if self.decides_itself() else "required"

    @model_validator(mode="after")
    def _needs_model(self) -> PolicyConfig:
        if self.kind == "openai" and not self.model:
            raise ValueError("policy.model is required for kind=openai (the model name the server serves)")
        return self


class AgentConfig(JobConfig):
    """Everything needed to build an agent: the policy, the tool environment and the step budget."""

    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    tools: ToolEnvConfig = Field(default_factory=ToolEnvConfig)
    max_steps: int = Field(
        6,
        ge=1,
        le=50,
        description="policy calls per turn before the agent must answer (synthesized turns take up to 5)",
    )
    k: int = Field(10, ge=1, le=100, description="list length in list-wise mode")
    parallel_tool_workers: int = Field(4, ge=1, description="threads running one step's parallel tool calls")
    history_tokens: int | None = Field(
        None,
        ge=200,
        description="conversation tokens shown to the policy, as whole turns, newest first (the current "
        "turn always); None = 4000 for a local model (SmolLM2's 8,192-token window also holds the system turn with the "
        "tool list, ~700 tokens, and the reply), no limit for a server",
    )
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)

    def history_budget(self) -> int | None:
        """The conversation budget in tokens (see ``history_tokens``)."""
        if self.history_tokens is not None:
            return self.history_tokens
        return 4000 if self.policy.kind == "local" else None


def make_policy(cfg: PolicyConfig):
    """The langchain-core chat model a policy config names."""
    if cfg.kind == "openai":
        from recagent.agents.policies.openai_compat import openai_chat_model

        return openai_chat_model(cfg)
    from recagent.agents.policies.local import LocalChatModel
    from recagent.agents.tool_router import router_file

    adapter = cfg.adapter_folder()
    router = router_file(adapter)
    return LocalChatModel(
        model_path=cfg.model,
        adapter_path=adapter,
        engine=cfg.engine,
        max_new_tokens=cfg.max_new_tokens,
        max_call_tokens=cfg.max_call_tokens,
        temperature=cfg.temperature,
        constrained=cfg.constrained,
        jump_forward=cfg.jump_forward,
        no_repeat_calls=cfg.no_repeat_calls,
        router_path=str(router) if router else None,
        router_top_k=cfg.router_top_k,
        router_reply=cfg.router_reply,
        router_answer_p=cfg.router_answer_p,
        router_call_p=cfg.router_call_p,
        router_save_p=cfg.router_save_p,
        ask_for_user=cfg.ask_for_user,
        num_threads=cfg.num_threads,
        parallel_tool_calls=cfg.parallel_calls(),
    )


@dataclass
class AgentContext:
    """Heavy runtime handles the graph nodes use (never stored in state or checkpoints)."""

    env: ToolEnv
    policy: Any  # a langchain-core BaseChatModel with bind_tools
    config: AgentConfig = field(default_factory=AgentConfig)
    tool_schemas: list[dict] = field(default_factory=list)
    policy_lock: Any = None  # a lock held around every policy call (a server sets one for a local model); None = none
    _bound: dict[str, Any] = field(default_factory=dict)

    def grounded_decoding(self) -> bool:
        """True when the policy decodes answers under a grammar (a constrained local model): it gets the citable items."""
        return (
            self.config.policy.kind == "local" and self.config.policy.constrained and hasattr(self.policy, "grammars")
        )

    def bound_policy(self, first_step: bool = False, answer_now: bool = False):
        """The policy with the tool schemas bound, forcing a call before the turn's first result if configured
        (``first_step``), or an answer (``answer_now``)."""
        cfg = self.config.policy
        choice = cfg.later_tool_choice
        if first_step:
            choice = cfg.initial_tool_choice()
        elif answer_now:
            choice = "none"
        if choice not in self._bound:
            kwargs = {"tool_choice": choice} if choice != "auto" else {}
            self._bound[choice] = self.policy.bind_tools(self.tool_schemas, **kwargs)
        return self._bound[choice]


def api_key(cfg: PolicyConfig) -> str:
    """The API key from the environment variable the config names (never from code or config files)."""
    key = os.environ.get(cfg.api_key_env)
    if not key:
        if cfg.base_url and ("127.0.0.1" in cfg.base_url or "localhost" in cfg.base_url):
            return "not-needed"  # local servers (llama.cpp, vLLM, Ollama) accept any key
        raise ConfigError(f"set the API key in the environment variable {cfg.api_key_env} (policy.api_key_env)")
    return key

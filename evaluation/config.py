"""The evaluation job config: which systems, which users, which protocols (YAML + ``-o key=value``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recagent.agents.config import AgentConfig, PolicyConfig
from recagent.config import JobConfig

PROTOCOLS = ("full", "candidates", "position", "history", "tool_calls", "simulator", "chat_requests")


class SimulatorConfig(JobConfig):
    """The multi-turn user simulator."""

    kind: Literal["attribute", "llm"] = Field("attribute", description="deterministic attribute user, or an LLM user")
    llm: PolicyConfig | None = Field(
        None, description="llm: the chat model playing the user (OpenAI-compatible or local)"
    )
    max_turns: int = Field(5, ge=1, le=50, description="agent turns before an episode counts as failed")
    users: int | None = Field(None, ge=1, description="episodes (the first n evaluation users; None = all of them)")

    @model_validator(mode="after")
    def _llm_needs_model(self) -> SimulatorConfig:
        if self.kind == "llm" and self.llm is None:
            raise ValueError("simulator.kind=llm needs simulator.llm (a policy config: kind, model, base_url)")
        return self


class EvalConfig(JobConfig):
    """Everything one ``recagent eval`` run measures, on the same users and candidates for every system."""

    dataset: str = Field("ml-100k", description="dataset name (fetched) or folder")
    part: Literal["valid", "test"] = Field(
        "test", description="held-out targets to evaluate (test = the reported numbers)"
    )
    users: int = Field(200, ge=1, description="evaluation users, sampled with the seed")
    seed: int = Field(0, description="seed for users, negatives and candidate orders")
    agent: AgentConfig = Field(default_factory=AgentConfig, description="the agent under test (--agent FILE loads one)")
    include_agent: bool = Field(True, description="evaluate the agent (false: conventional recommenders only)")
    baselines: list[str] = Field(
        ["pop", "itemknn", "bpr", "sasrec"], description="conventional recommenders to compare"
    )
    protocols: list[
        Literal["full", "candidates", "position", "history", "tool_calls", "simulator", "chat_requests"]
    ] = Field(list(PROTOCOLS), description=f"what to run: any of {', '.join(PROTOCOLS)}")
    ks: list[int] = Field([1, 5, 10], description="cut-offs for HR/NDCG/MRR; the list length asked for is the largest")
    n_candidates: int = Field(20, ge=2, description="candidate-list protocol: the target plus n-1 sampled negatives")
    history_lengths: list[int] = Field([1, 2, 3, 5, 10, 20], description="history-length study: items kept")
    synth_dir: str | None = Field(None, description="synthesized run whose test.jsonl gives the tool-call tasks")
    tool_call_tasks: int = Field(200, ge=1, description="tool-call tasks evaluated (in file order)")
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    chat_requests_file: str | None = Field(
        None, description="chat_requests: YAML of hand-written requests (None = the packaged ML-100K set)"
    )
    chat_requests_limit: int | None = Field(None, ge=1, description="chat_requests: the first n requests (None = all)")
    chat_baseline_model: str = Field(
        "sasrec",
        description="chat_requests: the recommender scored alone (its top-k for a named user, else popularity)",
    )
    heavy_share: float = Field(
        0.2, gt=0, lt=1, description="fairness: share of users with the longest histories = heavy"
    )
    bootstrap: int = Field(1000, ge=10, description="bootstrap resamples for confidence intervals")
    out: str | None = Field(None, description="output folder (default $RECAGENT_HOME/runs/eval-<dataset>)")

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be positive cut-offs, got {self.ks}")
        if self.n_candidates <= max(self.ks):
            raise ValueError(f"n_candidates ({self.n_candidates}) must exceed the largest k ({max(self.ks)})")
        if any(n < 1 for n in self.history_lengths):
            raise ValueError(f"history_lengths must be at least 1, got {self.history_lengths}")
        if not self.include_agent and not self.baselines:
            raise ValueError("nothing to evaluate: include_agent is false and baselines is empty")
        return self

    @property
    def k(self) -> int:
        """Length of the list every system is asked for."""
        return max(self.ks)

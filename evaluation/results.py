"""The results of an evaluation run, typed: what :func:`~recagent.evaluation.aggregate.aggregate` computes and
:func:`~recagent.evaluation.report.write_report` writes.

:meth:`EvalResults.to_dict` is the ``results.json`` document (JSON-ready, keys in a fixed order). Keys
that carry a parameter of the run (``NDCG@10``, ``success@5``) are built from the field that holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from recagent.evaluation.config import EvalConfig


def plain(value: Any) -> Any:
    """``value`` with every results dataclass in it turned into its JSON-ready dict."""
    if is_dataclass(value) and not isinstance(value, type):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class _Block:
    """A dataclass written as its fields, in order."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


@dataclass
class Interval(_Block):
    """A mean with its 95% bootstrap interval (``nan`` bounds: too few users) over ``n`` users or requests."""

    mean: float
    ci_low: float
    ci_high: float
    n: float


MetricIntervals = dict[str, Interval]  # metric name (HR@10, NDCG@10, MRR@10) -> interval


@dataclass
class Compliance(_Block):
    """One system's raw output on one protocol, before the agent's answer check and fill."""

    n: int
    compliance: Interval
    hallucinated_slots: Interval
    raw_slots: int
    unparsed_share: float | None
    filled_share: float | None
    errors: int


@dataclass
class Shipped(_Block):
    """Unsupported items in the delivered answers (final output, after the answer check and fill)."""

    n: int
    measured: int
    unsupported: int
    shipped_items: int
    share: Interval
    answers_with_any: int
    examples: list[str]


@dataclass
class Cost(_Block):
    """Mean cost of one request."""

    latency_s: float | None
    llm_calls: float | None
    tool_calls: float | None
    invalid_calls: float | None
    input_tokens: float | None
    output_tokens: float | None


@dataclass
class BeyondUtility(_Block):
    """Full-ranking lists beyond accuracy."""

    coverage: Interval
    gini: Interval
    avg_popularity: Interval
    long_tail_share: Interval
    intra_list_diversity: Interval
    novelty: Interval


@dataclass
class Fairness:
    """``metric`` of heavy vs light users, their gap and the gap's interval."""

    metric: str
    heavy: float
    light: float
    gap: float
    n_heavy: float
    n_light: float
    gap_ci: list[float]

    def to_dict(self) -> dict[str, Any]:
        m = self.metric
        return {
            f"{m}_heavy": self.heavy,
            f"{m}_light": self.light,
            f"{m}_gap": self.gap,
            f"{m}_n_heavy": self.n_heavy,
            f"{m}_n_light": self.n_light,
            f"{m}_gap_ci": list(self.gap_ci),
        }


@dataclass
class PairedDiff:
    """``metric`` of the agent minus a baseline over the ``n`` users both answered."""

    metric: str
    diff: Interval
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {self.metric: self.diff.to_dict(), "n": self.n}


@dataclass
class PositionBias:
    """``metric`` over the same candidates with the target first, shuffled and last."""

    metric: str
    means: dict[str, float]  # order (shuffled, target_first, target_last) -> mean
    first_minus_last: Interval
    first_minus_shuffled: Interval
    spread: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            self.metric: dict(self.means),
            "first_minus_last": self.first_minus_last.to_dict(),
            "first_minus_shuffled": self.first_minus_shuffled.to_dict(),
            "spread": self.spread,
            "n": self.n,
        }


@dataclass
class CallAccuracy(_Block):
    """Tool-call accuracy of a slice of tasks: AST match and execution match."""

    ast: Interval
    exec: Interval


@dataclass
class ToolCalls(_Block):
    """Tool-call accuracy on held-out synthesized dialogs."""

    all: CallAccuracy
    by_kind: dict[str, CallAccuracy]
    by_tools: dict[str, CallAccuracy]
    ast_errors: dict[str, int]
    latency_s: float


@dataclass
class Simulator:
    """Multi-turn success with a simulated user."""

    kind: str
    max_turns: int
    episodes: int
    success: Interval  # success within max_turns (``success@<max_turns>``)
    success_by_turn: dict[int, float]
    avg_turns_successful: float | None
    avg_turns_all: float
    tool_calls_per_episode: float
    llm_calls_per_episode: float
    tokens_per_episode: float
    latency_per_turn_s: float
    leaked_episodes: int
    errors: int

    def to_dict(self) -> dict[str, Any]:
        name = {"success": f"success@{self.max_turns}"}
        return {name.get(f.name, f.name): plain(getattr(self, f.name)) for f in fields(self)}


@dataclass
class ChatLatency(_Block):
    """Per-turn latency percentiles (with intervals) and mean, in seconds."""

    p50: Interval
    p95: Interval
    mean: float


@dataclass
class KindStep(_Block):
    """First-step accuracy on one kind of request."""

    n: int
    first_step: float


@dataclass
class AgentChat(_Block):
    """What only an agent (it calls tools and ships answers) has on the hand-written requests."""

    unsupported_shipped: Shipped | None
    by_kind: dict[str, KindStep]
    first_step_misses: list[str]
    cost: dict[str, float]  # llm_calls, n_calls, invalid_calls, input_tokens, output_tokens: means per request


@dataclass
class ChatSystem:
    """One system on the hand-written chat requests."""

    n: int
    errors: int
    first_call: Interval | None
    no_tool: Interval | None
    first_step: Interval | None
    constraint_satisfaction: Interval | None
    constrained_answers: int
    constrained_without_items: int
    slots: list[int]  # satisfied, recommended
    latency_s: ChatLatency
    agent: AgentChat | None = None  # None for the conventional baseline

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: plain(getattr(self, f.name)) for f in fields(self) if f.name != "agent"}
        return {**out, **(self.agent.to_dict() if self.agent is not None else {})}


@dataclass
class ChatRequests(_Block):
    """The hand-written chat requests asked, and how each system did on them."""

    n_requests: int
    tool_requests: int
    no_tool_requests: int
    constrained_requests: int
    systems: dict[str, ChatSystem]


@dataclass
class EvalResults:
    """Everything a run measured; dicts are keyed by system, then protocol (``full``, ``cand:shuffled``, ...)."""

    config: EvalConfig
    dataset: str
    part: str
    users: list[str]
    n_users: int
    notes: list[str]
    systems: list[str]  # in config order; a system's "<name> (raw output)" rows follow it in utility
    utility: dict[str, dict[str, MetricIntervals]]
    beyond_utility: dict[str, BeyondUtility]
    fairness: dict[str, Fairness]
    compliance: dict[str, dict[str, Compliance]]
    cost: dict[str, dict[str, Cost]]
    unsupported_shipped: dict[str, dict[str, Shipped]]  # agents only; protocols plus simulator, chat_requests
    agent_vs_baselines: dict[str, dict[str, PairedDiff]]  # "agent - <baseline>" -> protocol -> difference
    position_bias: dict[str, PositionBias]
    history_length: dict[str, dict[str, Interval | None]]  # system -> history items kept -> metric at k
    tool_calls: ToolCalls | None
    simulator: Simulator | None  # the agent's simulated conversations
    chat_requests: ChatRequests | None
    simulator_baselines: dict[str, Simulator] = field(default_factory=dict)  # each baseline as a chat agent

    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` document; an unmeasured part (tool calls, simulator, chat requests) is ``{}``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "config":
                out[f.name] = value.model_dump(mode="json")
            else:  # only the optional parts can be None
                out[f.name] = {} if value is None else plain(value)
        return out

"""The synthesis job config: one object, loadable from YAML, overridable from the CLI, saved next to the output."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recagent.agents.config import PolicyConfig
from recagent.config import JobConfig
from recagent.synth.sample import KINDS, LEVELS
from recagent.synth.tool_pool import DOMAIN_NOUNS
from recagent.tools.env import ToolEnvConfig

# Fields that change which dialogs a run produces: a resumed run must agree on all of them.
GENERATION_FIELDS = (
    "tools",
    "seed",
    "test_fraction",
    "test_user_fraction",
    "min_history",
    "kinds",
    "mix",
    "domains",
    "variants_per_tool",
    "extra_variants_per_tool",
    "heldout_variant_fraction",
    "heldout_tool_share",
    "tools_per_dialog",
    "max_distractors",
    "serving_tools_share",
    "generator",
    "llm",
    "judge",
    "target_model",
    "loss_easy_below",
    "loss_hard_above",
)


class SynthConfig(JobConfig):
    """How many verified dialogs to make, of which kinds and difficulty, for which tools and users."""

    tools: ToolEnvConfig = Field(default_factory=ToolEnvConfig, description="the tool environment (dataset, models)")
    n: int = Field(1000, ge=1, description="verified dialogs to produce (train + test)")
    seed: int = Field(0, description="seed of every random choice; the same seed gives the same dialogs")
    test_fraction: float = Field(0.1, ge=0, le=1, description="share of dialogs drawn for the test split")
    test_user_fraction: float = Field(0.2, gt=0, lt=1, description="share of users reserved for test dialogs")
    validation_n: int = Field(
        0,
        ge=0,
        description="verified validation dialogs (validation.jsonl), drawn after the n others from a seed stream "
        "of their own (so train and test stay as they were): training-style tasks of test-side users, seen tools "
        "only, never a valid/test item. Choose checkpoints on them: the policy never trained on their users",
    )
    min_history: int = Field(3, ge=1, description="fewest training interactions a user needs")
    kinds: dict[str, float] = Field(
        {"single": 0.25, "parallel": 0.15, "chain": 0.3, "clarify": 0.15, "no_tool": 0.15, "listwise": 0.1},
        description="relative weight of each dialog kind (listwise: `Agent.recommend`'s episode, ids as the answer)",
    )
    mix: dict[str, float] | None = Field(
        None, description="target share per complexity level, e.g. {easy: 0.3, medium: 0.4, hard: 0.3}; None = as drawn"
    )
    domains: dict[str, float] = Field(
        {"movies": 0.55, "films": 0.15, "books": 0.15, "music": 0.15}, description="wording of tools and requests"
    )
    variants_per_tool: int = Field(6, ge=0, le=20, description="evolved variants per core tool")
    extra_variants_per_tool: int = Field(
        24,
        ge=0,
        le=40,
        description="more evolved variants per core tool, with composed verb_object names, drawn after the others "
        "(which stay as they are; none when variants_per_tool is 0): many names teach the policy to read descriptions",
    )
    heldout_variant_fraction: float = Field(0.25, ge=0, lt=1, description="share of variants never seen in training")
    heldout_tool_share: float = Field(0.5, ge=0, le=1, description="share of test dialogs offering held-out variants")
    tools_per_dialog: tuple[int, int] = Field((3, 8), description="min and max real tools offered per dialog")
    max_distractors: int = Field(2, ge=0, le=8, description="most unimplemented look-alike tools offered per dialog")
    serving_tools_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of dialogs offering exactly the chat agent's tools (every core tool as served, movies "
        "wording, no variants or distractors): the prompt a shipped policy sees",
    )
    generator: Literal["programmatic", "llm"] = Field("programmatic", description="offline templates or an LLM")
    llm: PolicyConfig | None = Field(
        None, description="OpenAI-compatible model for generator=llm (kind must be openai)"
    )
    judge: PolicyConfig | None = Field(None, description="OpenAI-compatible model for the judge layer (None = off)")
    target_model: str | None = Field(None, description="causal LM folder: label complexity by its loss (ToolACE)")
    loss_easy_below: float = Field(0.3, ge=0, description="target-model loss below which a sample is easy")
    loss_hard_above: float = Field(1.0, ge=0, description="target-model loss above which a sample is hard")
    max_attempts: int | None = Field(None, ge=1, description="stop after this many attempts (default 20 x n)")
    exports: list[Literal["sharegpt", "toolace", "bfcl"]] = Field(
        ["sharegpt", "toolace", "bfcl"], description="extra layouts written under exports/"
    )

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        bad = sorted(set(self.kinds) - set(KINDS))
        if bad:
            raise ValueError(f"kinds: unknown kind(s) {bad}; choose from {list(KINDS)}")
        if not any(w > 0 for w in self.kinds.values()) or any(w < 0 for w in self.kinds.values()):
            raise ValueError("kinds: weights must be >= 0 with at least one > 0")
        bad = sorted(set(self.domains) - set(DOMAIN_NOUNS))
        if bad:
            raise ValueError(f"domains: unknown domain(s) {bad}; choose from {list(DOMAIN_NOUNS)}")
        if not any(w > 0 for w in self.domains.values()):
            raise ValueError("domains: at least one weight must be > 0")
        if self.mix is not None:
            bad = sorted(set(self.mix) - set(LEVELS))
            if bad:
                raise ValueError(f"mix: unknown level(s) {bad}; choose from {list(LEVELS)}")
            if any(v < 0 for v in self.mix.values()) or sum(self.mix.values()) <= 0:
                raise ValueError("mix: shares must be >= 0 and sum to more than 0")
        lo, hi = self.tools_per_dialog
        if not 1 <= lo <= hi:
            raise ValueError(f"tools_per_dialog: need 1 <= min <= max, got ({lo}, {hi})")
        if self.generator == "llm" and self.llm is None:
            raise ValueError("generator=llm needs an llm section (kind: openai, model: ..., base_url: ...)")
        for name in ("llm", "judge"):
            sub = getattr(self, name)
            if sub is not None and sub.kind != "openai":
                raise ValueError(f"{name}.kind must be 'openai' (any OpenAI-compatible server)")
        if self.loss_easy_below > self.loss_hard_above:
            raise ValueError("loss_easy_below must not exceed loss_hard_above")
        return self

    def quotas(self) -> dict[str, int] | None:
        """Accepted dialogs wanted per complexity level (largest-remainder rounding to exactly n)."""
        if self.mix is None:
            return None
        total = sum(self.mix.values())
        raw = {lv: self.n * self.mix.get(lv, 0) / total for lv in LEVELS}
        out = {lv: int(v) for lv, v in raw.items()}
        for lv in sorted(raw, key=lambda lv: raw[lv] - out[lv], reverse=True)[: self.n - sum(out.values())]:
            out[lv] += 1
        return out

    def generation_settings(self) -> dict:
        """The fields a resumed run must share with the run it continues."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k in GENERATION_FIELDS}

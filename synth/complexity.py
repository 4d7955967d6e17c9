"""Stage 3, complexity control: label each dialog easy, medium or hard, by its structure or by a target model's loss.

Structural features (ToolACE's axes): how many tools were offered, how many calls were
made, how deep the call dependencies go, how many user turns, and how far the user's words
are from the descriptions of the tools that had to be called (a request that repeats a
tool's description is easy to map). When a target model is given, ToolACE's criterion is
used instead: the model's mean loss on the assistant's tokens, in the same prompt format
the local policy uses, so samples can be kept in the model's reach.
"""

from __future__ import annotations

import re
from typing import Any

from recagent.synth.sample import Sample
from recagent.synth.verify import trace_calls, variants_of

STOPWORDS = set(
    "a an the of to for in on at by with and or but is are was were be me my i you your it its this that these "
    "those some any please can could would like want find give show tell what which who about from as do did "
    "have has had so just also more most one ones them they we our us hi hello hey thanks thank there here".split()
)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOPWORDS and len(w) > 2}


def features(sample: Sample) -> dict[str, Any]:
    """Structural complexity features of a dialog."""
    traces = trace_calls(sample)
    variants = variants_of(sample)
    user_text = " ".join(str(m.get("content") or "") for m in sample.messages if m.get("role") == "user")
    called = {t.name for t in traces if t.name in variants}
    desc = " ".join(
        variants[n].schema["function"]["description"]
        + " "
        + " ".join(variants[n].schema["function"]["parameters"].get("properties", {}))
        for n in called
    )
    uw, dw = _words(user_text), _words(desc)
    distance = 1.0 - (len(uw & dw) / len(uw)) if uw and called else 0.0
    return {
        "tools_offered": len(sample.tools),
        "distractors": sum(1 for v in variants.values() if v.core is None),
        "calls": len(traces),
        "depth": max((t.depth for t in traces), default=0),
        "user_turns": sum(1 for m in sample.messages if m.get("role") == "user"),
        "phrasing_distance": round(distance, 3),
    }


def structural_level(f: dict[str, Any]) -> tuple[str, float]:
    """Points from the features, and the level they give (easy < 2 <= medium < 4 <= hard)."""
    points = (
        max(f["calls"] - 1, 0)
        + 1.5 * max(f["depth"] - 1, 0)
        + (1.0 if f["tools_offered"] > 5 else 0.0)
        + 0.5 * max(f["user_turns"] - 1, 0)
        + (1.0 if f["phrasing_distance"] > 0.8 else 0.0)
    )
    level = "easy" if points < 2 else "medium" if points < 4 else "hard"
    return level, points


def loss_level(loss: float, easy_below: float, hard_above: float) -> str:
    """ToolACE's criterion: a low loss under the target model is easy for it, a high loss hard."""
    return "easy" if loss < easy_below else "hard" if loss > hard_above else "medium"


def label(sample: Sample) -> dict[str, Any]:
    """The complexity record of a sample (structural; a target model's loss is added by :func:`add_losses`)."""
    f = features(sample)
    level, points = structural_level(f)
    return {"level": level, "points": points, "source": "structure", **f}


class LossScorer:
    """ToolACE's per-sample loss: mean loss of the assistant turns under a target causal LM, in our prompt format."""

    def __init__(self, model_path: str, device: str = "cpu", max_tokens: int = 4096):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32).to(device).eval()
        self.device, self.max_tokens = device, max_tokens

    def token_labels(self, sample: Sample) -> tuple[list[int], list[int]]:
        """Token ids of the rendered dialog and labels that keep only assistant tokens (-100 elsewhere)."""
        from recagent.agents.prompt_format import render_openai_messages

        turns = render_openai_messages(sample.messages, sample.tools)
        ids: list[int] = []
        labels: list[int] = []
        before = ""
        for j, turn in enumerate(turns):
            # the tokens of turn j are what the chat template adds when turn j is appended
            after = self.tok.apply_chat_template(turns[: j + 1], tokenize=False)
            head = before
            if turn["role"] == "assistant":  # the role header is prompt, not something the model must write
                head = self.tok.apply_chat_template(turns[:j], tokenize=False, add_generation_prompt=True)
                piece = self.tok(head[len(before) :], add_special_tokens=False)["input_ids"]
                ids, labels = ids + piece, labels + [-100] * len(piece)
            piece = self.tok(after[len(head) :], add_special_tokens=False)["input_ids"]
            ids += piece
            labels += piece if turn["role"] == "assistant" else [-100] * len(piece)
            before = after
        return ids[-self.max_tokens :], labels[-self.max_tokens :]

    def __call__(self, sample: Sample) -> float:
        """Mean per-token loss (nats) of the sample's assistant tokens."""
        import torch

        ids, labels = self.token_labels(sample)
        if all(x == -100 for x in labels[1:]):
            return 0.0
        with torch.no_grad():
            out = self.model(
                input_ids=torch.tensor([ids], device=self.device), labels=torch.tensor([labels], device=self.device)
            )
        return round(float(out.loss), 4)


def relabel_by_loss(sample: Sample, loss: float, easy_below: float, hard_above: float) -> None:
    """Use the target model's loss as the level; the structural label is kept as ``structural_level``."""
    sample.complexity["structural_level"] = sample.complexity.get("level")
    sample.complexity.update(level=loss_level(loss, easy_below, hard_above), loss=loss, source="target_model")

"""Inference engines behind the local policy: llama.cpp (default, fast on CPU) and transformers.

Both take the prompt as token ids from the Hugging Face tokenizer that SFT and RL train with,
so the sequence an engine sees is exactly the training sequence (llama.cpp's own tokenizer is
never used), and both apply the same xgrammar token masks (:mod:`.grammar`). An engine decodes
one reply per call, keeps the KV cache of its latest sequence, and reuses it for the longest
common prefix of the next prompt: the tools block opens every system turn, so its cache is
shared across calls, turns and sessions.

**llama.cpp** (llama-cpp-python): the offline default (SmolLM2-135M-Instruct, the shipped Q4_1
GGUF re-encoded as Q8_0) decodes about 6-7x faster than transformers on 2 CPU cores (numbers in
``benchmarks/results/local_policy.json``): transformers spends most of a decode step in Python
around a tiny model, llama.cpp in C. The decode loop is written here rather than using
``Llama.generate`` because we need token-level control that its sampler chain hides: the xgrammar
mask on the raw logits, stop strings on decoded text, cancellation and a streamer, all per token,
with greedy decoding that does not depend on llama.cpp's sampler defaults. It also jumps forward
(as SGLang does): text the grammar forces, such as the rest of a citation once its id is written
(``] Title (Year), Genre, Genre``, about 15 tokens) or a call's fixed prefix once its name is, is
tokenized as training tokenizes it and evaluated in one batched step instead of one step per token.
A peft LoRA adapter is converted once to a GGUF adapter (:mod:`recagent.agents.lora_gguf`) and
applied by llama.cpp.

**transformers**: any Hugging Face checkpoint, float32 or bfloat16, LoRA merged on load; the
reference engine (and the one a GPU uses).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

MIN_REUSED_PREFIX = 16  # shorter common prefixes are not worth keeping a cache for


@dataclass
class DecodeJob:
    """One reply to decode: prompt ids, the compiled grammar (or None), budget, sampling and stops."""

    ids: list[int]
    grammar: Any = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    eos_ids: set[int] = field(default_factory=set)
    # a rule past the grammar on the reply text so far (a list-wise answer's ids are distinct): a token whose
    # text it rejects is masked and the next best is taken
    text_filter: Callable[[str], bool] | None = None
    jump_forward: bool = True  # llama.cpp: text the grammar forces is appended in one batched step
    # written instead of ending where the model's first choice is to end but the grammar forbids it (an answer
    # that must cite an item opens a citation rather than running on until the budget cuts it)
    end_redirect: list[int] = field(default_factory=list)


@dataclass
class DecodeResult:
    """What an engine produced: the new token ids, how many prompt tokens came from the cache, and timings."""

    new_ids: list[int]
    reused: int
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0


class Engine(Protocol):
    """A loaded model that decodes one reply at a time (callers hold the lock)."""

    tokenizer: Any
    vocab_size: int
    lock: threading.Lock

    def eos_ids(self) -> set[int]:
        """Token ids that end a reply."""
        ...

    def decode(
        self, job: DecodeJob, on_token: Callable[[int], None] | None, cancel: threading.Event | None
    ) -> DecodeResult:
        """Decode ``job``; ``on_token`` sees each new id; a set ``cancel`` stops after the current token."""
        ...

    def forget_cache(self) -> None:
        """Drop the kept KV cache (the next prompt is prefilled whole)."""
        ...


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id sequences."""
    import numpy as np

    n = min(len(a), len(b))
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


def turn_end_ids(tokenizer: Any) -> set[int]:
    """Tokens after which a reply is over: eos, ChatML's ``<|im_end|>`` and ``<|im_start|>`` (a new turn starting)."""
    ids = {tokenizer.eos_token_id}
    for marker in ("<|im_end|>", "<|im_start|>"):
        i = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(i, int) and i != tokenizer.unk_token_id:
            ids.add(i)
    return {i for i in ids if i is not None and i >= 0}


def hits_stop(text: str, stop: Sequence[str]) -> bool:
    """True when any stop string occurs in ``text``."""
    return any(s and s in text for s in stop)


class _Masker:
    """Applies a compiled xgrammar grammar to one logits row (a 1-D torch tensor) per step."""

    def __init__(self, grammar: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self.matcher = xgr.GrammarMatcher(grammar)
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._apply = xgr.apply_token_bitmask_inplace

    def mask(self, logits: Any, eos_ids: set[int]) -> None:
        """Set the logits of tokens the grammar forbids to -inf (in place; a 1-D torch tensor)."""
        self.matcher.fill_next_token_bitmask(self.bitmask)
        self._apply(logits, self.bitmask)
        ends_follow_grammar(logits, eos_ids, self.matcher.stop_token_ids)

    def accept(self, token: int) -> bool:
        """Advance the grammar by ``token``; False if it was not allowed."""
        return self.matcher.accept_token(token)

    def accept_all(self, tokens: list[int]) -> bool:
        """Advance the grammar by every one of ``tokens``, or (False) by none of them."""
        for n, token in enumerate(tokens):
            if not self.accept(token):
                if n:
                    self.matcher.rollback(n)
                return False
        return True


def _all_refused(row: Any, ids: Sequence[int]) -> bool:
    """True when every one of ``ids`` (those within the row) has a -inf logit."""
    ids = [i for i in ids if i < row.shape[0]]
    return bool(ids) and bool((row[ids] == float("-inf")).all())


def ends_follow_grammar(row: Any, eos_ids: set[int], grammar_stops: Sequence[int]) -> None:
    """Forbid every turn end where the grammar forbids its own stop token (in place, one logits row).

    xgrammar knows one stop token (``<|im_end|>``) and takes ``<|im_start|>`` for text, so without this a
    reply could end through ``<|im_start|>`` in the middle of a call or before a required citation.
    """
    if _all_refused(row, grammar_stops):
        row[[e for e in eos_ids if e < row.shape[0]]] = float("-inf")


class LlamaCppEngine:
    """A GGUF model in llama-cpp-python (plus an optional GGUF LoRA adapter), decoding with our own loop."""

    def __init__(
        self,
        gguf: Path,
        tokenizer: Any,
        *,
        lora_gguf: Path | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
    ) -> None:
        from llama_cpp import Llama

        # every core for decoding too: llama-cpp-python's default (half the cores) decoded 55 tok/s on 2 idle
        # cores where 2 threads gave 106 (benchmarks/results/local_policy.json)
        threads = n_threads or os.cpu_count() or 1
        kwargs: dict[str, Any] = {
            "model_path": str(gguf),
            "n_ctx": n_ctx,
            "n_batch": 512,
            "verbose": False,
            "n_threads": threads,
            "n_threads_batch": threads,
        }
        if lora_gguf is not None:
            kwargs["lora_path"] = str(lora_gguf)
        self.llm = Llama(**kwargs)
        # close while the interpreter is still whole: llama-cpp-python's __del__ fails during shutdown
        weakref.finalize(self, self.llm.close)
        self.tokenizer = tokenizer
        self.vocab_size = int(self.llm.n_vocab())
        self.n_ctx = n_ctx
        self.lock = threading.Lock()
        self._tokens: list[int] = []  # what the KV cache holds, in order

    def eos_ids(self) -> set[int]:
        """The GGUF's end-of-generation token plus the tokenizer's turn ends."""
        return turn_end_ids(self.tokenizer) | {int(self.llm.token_eos())}

    def decode(
        self, job: DecodeJob, on_token: Callable[[int], None] | None = None, cancel: threading.Event | None = None
    ) -> DecodeResult:
        """Prefill what the cache lacks, then decode token by token under the grammar."""
        import time

        import numpy as np
        import torch

        if len(job.ids) + job.max_new_tokens > self.n_ctx:
            raise ValueError(
                f"prompt of {len(job.ids)} tokens + {job.max_new_tokens} new exceeds the context of {self.n_ctx}"
            )
        reused = min(common_prefix(self._tokens, job.ids), len(job.ids) - 1)  # at least one token to evaluate
        if reused < MIN_REUSED_PREFIX:
            reused = 0
        t0 = time.perf_counter()
        self._tokens = self._tokens[:reused]
        self.llm.n_tokens = reused  # Llama.eval (the forward pass) drops KV entries beyond n_tokens first
        self._eval(job.ids[reused:])
        t1 = time.perf_counter()
        masker = _Masker(job.grammar, self.vocab_size) if job.grammar is not None else None
        rng = np.random.default_rng(job.seed)
        new_ids: list[int] = []
        jump = masker is not None and job.jump_forward
        if jump and (forced := _jump_forward(masker, job, new_ids, self.tokenizer)):  # a reply that opens forced
            self._emit(forced, new_ids, on_token)
            self._eval(forced)
        while len(new_ids) < job.max_new_tokens:
            logits = torch.from_numpy(self._last_logits())
            wants_end = bool(job.end_redirect) and int(logits.argmax()) in job.eos_ids
            if masker is not None:
                masker.mask(logits, job.eos_ids)
            if wants_end and masker is not None and (redirect := _redirect(masker, job, logits)):
                self._emit(redirect, new_ids, on_token)
                self._eval(redirect)
                continue
            token = _pick_allowed(logits, job, rng, new_ids, self.tokenizer)
            if token is None:
                break  # the filter left no token: end the reply rather than break a rule
            if masker is not None and not masker.accept(token):
                break  # cannot happen under a correct mask; stop rather than emit an off-grammar token
            new_ids.append(token)
            if on_token is not None:
                on_token(token)
            if token in job.eos_ids or (masker is not None and masker.matcher.is_terminated()):
                break
            if job.stop and hits_stop(self.tokenizer.decode(new_ids, skip_special_tokens=True), job.stop):
                break
            if cancel is not None and cancel.is_set():
                break
            forced = _jump_forward(masker, job, new_ids, self.tokenizer) if jump else []
            self._emit(forced, new_ids, on_token)
            self._eval([token, *forced])  # the forced tokens cost one batched step, not one step each
            if forced and job.stop and hits_stop(self.tokenizer.decode(new_ids, skip_special_tokens=True), job.stop):
                break
        return DecodeResult(new_ids, reused, prefill_seconds=t1 - t0, decode_seconds=time.perf_counter() - t1)

    @staticmethod
    def _emit(forced: list[int], new_ids: list[int], on_token: Callable[[int], None] | None) -> None:
        """Append forced tokens to the reply, streaming each."""
        for t in forced:
            new_ids.append(t)
            if on_token is not None:
                on_token(t)

    def _eval(self, ids: list[int]) -> None:
        if ids:
            self.llm.eval(ids)
            self._tokens.extend(ids)

    def _last_logits(self) -> Any:
        """A copy of the logits after the last evaluated token (llama.cpp keeps only those without logits_all)."""
        import llama_cpp
        import numpy as np

        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.vocab_size,)).copy()

    def forget_cache(self) -> None:
        """Drop the kept KV cache (the next prompt is prefilled whole)."""
        self._tokens = []


def _jump_forward(masker: _Masker, job: DecodeJob, new_ids: list[int], tokenizer: Any) -> list[int]:
    """Tokens of the text the grammar forces next (the rest of a citation once its id is written, a call's
    fixed prefix once its name is), accepted by the grammar; none when nothing is forced or they do not fit.

    The forced text is tokenized as training tokenizes it, and only where that cannot depend on what comes
    next: its last token is left to the model (``": {`` is followed by ``"`` in ``": {"genres``, which
    training tokenizes as ``":``, `` {"``: jumping `` {`` made the model write ``{ "genres" :``), and no jump
    is made where the text would merge with the token before it. (xgrammar's ``find_jump_forward_tokens``
    picks longest vocabulary matches instead, which the model may never have seen.)
    """
    text = masker.matcher.find_jump_forward_string()
    if not text:
        return []
    forced = tokenizer.encode(text, add_special_tokens=False)[:-1]
    forced = forced[: max(0, job.max_new_tokens - len(new_ids) - 1)]
    if not forced:
        return []
    if new_ids:  # the previous token must stay a token of its own in front of the forced text
        before = tokenizer.decode(new_ids[-1:])
        if tokenizer.encode(before + tokenizer.decode(forced[:1]), add_special_tokens=False)[:1] != new_ids[-1:]:
            return []
    if not masker.accept_all(forced):
        return []
    if job.text_filter is not None and not job.text_filter(
        tokenizer.decode([*new_ids, *forced], skip_special_tokens=True)
    ):
        masker.matcher.rollback(len(forced))
        return []
    return forced


def _redirect(masker: _Masker, job: DecodeJob, masked_logits: Any) -> list[int]:
    """The tokens written (and the grammar advanced by) where the model's wish to end is refused: ``job.end_redirect``,
    or its tail where the whole does not fit (``"\\n["`` right after a line's end would open a new section, which a
    required citation's text may not); none where neither fits."""
    # (after ends_follow_grammar, every turn end is refused exactly where the grammar refuses its own)
    if not _all_refused(masked_logits, sorted(job.eos_ids)):
        return []
    return next((r for r in _redirects(job) if masker.accept_all(r)), [])


def _redirects(job: DecodeJob) -> list[list[int]]:
    """``job.end_redirect``, then its tail without the first token (a citation's opening without its newline)."""
    return [r for r in (job.end_redirect, job.end_redirect[1:]) if r]


def _pick_allowed(logits: Any, job: DecodeJob, rng: Any, new_ids: list[int], tokenizer: Any) -> int | None:
    """The next token under ``job.text_filter``: picked as usual, re-picked without it while the filter rejects it."""
    import torch

    while True:
        token = _pick(logits, job.temperature, rng)
        if job.text_filter is None or job.text_filter(tokenizer.decode([*new_ids, token], skip_special_tokens=True)):
            return token
        logits[token] = float("-inf")  # sampling again from the rest is sampling from the filtered distribution
        if not torch.isfinite(logits).any():
            return None


class _FilterProcessor:
    """``job.text_filter`` as a transformers logits processor: masks rejected tokens, best first."""

    # under sampling every candidate is checked when the grammar leaves this few (a list position); beyond
    # that only the best ones until one passes, which is exact for greedy decoding
    CHECK_ALL_BELOW = 64

    def __init__(self, job: DecodeJob, tokenizer: Any) -> None:
        self.job, self.tokenizer, self.start = job, tokenizer, len(job.ids)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        new = input_ids[0, self.start :].tolist()
        row = scores[0]
        finite = torch.isfinite(row).nonzero().flatten()
        order = finite[row[finite].argsort(descending=True)].tolist()
        check_all = self.job.temperature > 0 and len(order) < self.CHECK_ALL_BELOW
        for token in order:
            if self.job.text_filter(self.tokenizer.decode([*new, token], skip_special_tokens=True)):
                if not check_all:
                    break
            else:
                row[token] = float("-inf")
        return scores


class _Redirect:
    """``job.end_redirect`` for transformers: ``watch`` (before the grammar's processor) sees whether the model
    wants to end, ``force`` (after it) writes the redirect, one forced token per step, where ending is refused."""

    def __init__(self, job: DecodeJob) -> None:
        self.job, self.eos, self.pending, self.wants_end = job, sorted(job.eos_ids), [], False

    def watch(self, input_ids: Any, scores: Any) -> Any:
        self.wants_end = int(scores[0].argmax()) in self.job.eos_ids
        return scores

    def force(self, input_ids: Any, scores: Any) -> Any:
        row = scores[0]
        if not self.pending and self.wants_end and _all_refused(row, self.eos):
            # the first redirect whose first token the grammar allows here (a token at a time, as _redirects says)
            self.pending = next((list(r) for r in _redirects(self.job) if row[r[0]] > float("-inf")), [])
        if self.pending and row[self.pending[0]] > float("-inf"):
            token = self.pending.pop(0)
            keep = row[token].clone()
            row.fill_(float("-inf"))
            row[token] = keep
        else:
            self.pending = []  # the grammar refuses the redirect here: decode as usual
        return scores


def _pick(logits: Any, temperature: float, rng: Any) -> int:
    """Greedy (temperature 0) or a sample from softmax(logits / temperature)."""
    import numpy as np

    if temperature <= 0:
        return int(logits.argmax())
    x = logits.double().numpy() / temperature
    x = np.exp(x - x.max())
    return int(rng.choice(len(x), p=x / x.sum()))


class TransformersEngine:
    """A Hugging Face causal LM decoding with ``generate`` and an xgrammar logits processor."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.vocab_size = int(model.config.vocab_size)  # may exceed the tokenizer's (padded embeddings)
        self.lock = threading.Lock()
        self._kv: tuple[list[int], Any] | None = None  # (ids the cache covers, DynamicCache) of the latest reply

    def eos_ids(self) -> set[int]:
        """The generation config's eos ids plus the tokenizer's turn ends."""
        eos = self.model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple, set)) else [eos]
        return turn_end_ids(self.tokenizer) | {i for i in eos if i is not None}

    def decode(
        self, job: DecodeJob, on_token: Callable[[int], None] | None = None, cancel: threading.Event | None = None
    ) -> DecodeResult:
        """``model.generate`` from the cropped previous cache."""
        import time

        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        cache, reused = self._take_cache(job.ids)
        processors = LogitsProcessorList()
        if job.grammar is not None:
            import xgrammar as xgr

            redirect = _Redirect(job) if job.end_redirect else None
            if redirect is not None:
                processors.append(redirect.watch)
            processors.append(xgr.contrib.hf.LogitsProcessor(job.grammar))
            stops = list(job.grammar.tokenizer_info.stop_token_ids)
            processors.append(lambda ids, scores: (ends_follow_grammar(scores[0], job.eos_ids, stops), scores)[1])
            if redirect is not None:
                processors.append(redirect.force)
        if job.text_filter is not None:
            processors.append(_FilterProcessor(job, self.tokenizer))
        tok = self.tokenizer

        class _Watch(StoppingCriteria):  # streams each new id and stops on cancel / stop strings
            def __init__(self) -> None:
                self.seen = len(job.ids)

            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                new = input_ids[0, self.seen :].tolist()
                self.seen = input_ids.shape[1]
                for t in new:
                    if on_token is not None:
                        on_token(t)
                gen = input_ids[0, len(job.ids) :].tolist()
                stop = (cancel is not None and cancel.is_set()) or (
                    bool(job.stop) and hits_stop(tok.decode(gen, skip_special_tokens=True), job.stop)
                )
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        gen: dict[str, Any] = {
            "input_ids": torch.tensor([job.ids], device=self.model.device),
            "attention_mask": torch.ones(1, len(job.ids), dtype=torch.long, device=self.model.device),
            "max_new_tokens": job.max_new_tokens,
            "do_sample": job.temperature > 0,
            "logits_processor": processors,
            "stopping_criteria": StoppingCriteriaList([_Watch()]),
            "eos_token_id": sorted(job.eos_ids),
            "pad_token_id": tok.pad_token_id,
            "return_dict_in_generate": True,
            "past_key_values": cache,
        }
        if job.temperature > 0:
            gen.update(temperature=job.temperature, top_k=0, top_p=1.0)
            torch.manual_seed(job.seed)  # reproducible sampling for a given prompt
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**gen)
        seq = out.sequences[0].tolist()
        kv = getattr(out, "past_key_values", None)
        if kv is not None:
            self._kv = (seq[: kv.get_seq_length()], kv)
        return DecodeResult(seq[len(job.ids) :], reused, decode_seconds=time.perf_counter() - t0)

    def _take_cache(self, ids: list[int]) -> tuple[Any, int]:
        """The previous KV cache cropped to its common prefix with ``ids`` (None, 0 when not worth it)."""
        entry, self._kv = self._kv, None  # taken: generate() extends it in place
        if entry is None:
            return None, 0
        cached_ids, cache = entry
        n = min(common_prefix(cached_ids, ids), len(ids) - 1)  # at least one prompt token must be fed
        if (
            n < MIN_REUSED_PREFIX
            or cache.get_seq_length() != len(cached_ids)
            or not getattr(cache, "is_croppable", True)
        ):
            return None, 0
        extra = cache.get_seq_length() - n
        if extra > 0:
            cache.crop(-extra)  # negative = remove that many tokens (accepted by transformers 4.x and 5.x)
        return cache, n

    def forget_cache(self) -> None:
        """Drop the kept KV cache (the next prompt is prefilled whole)."""
        self._kv = None

"""A langchain-core chat model over a local Hugging Face causal LM, with grammar-constrained tool calls.

:class:`LocalChatModel` renders the conversation with :mod:`recagent.agents.prompt_format` (the
same format the SFT trainer uses), generates with ``transformers``, and parses the reply strictly
into ``tool_calls`` / ``invalid_tool_calls``. The model (default: the offline SmolLM2-135M, see
:mod:`recagent.agents.local_model`) and an optional LoRA adapter load lazily, once per instance;
copies made with ``model_copy`` (say, unconstrained or sampling) share the loaded weights, the
grammar cache, the KV cache and the lock that serialises generation.

**Constrained decoding.** With tools bound and ``constrained=True`` the reply is decoded under an
xgrammar *structural tag* that admits exactly::

    reply      ::= free_text | call ("\\n" call)*        (tool_choice="auto")
    free_text  ::= any text without "<tool_call>" or "<tool_response>"
    call       ::= '<tool_call>{"name": "<bound tool>", "arguments": ' <that tool's parameters schema> '}</tool_call>'

one tag per bound tool, its fixed prefix carrying the name (so a call can only name a bound tool)
and its content a JSON-schema grammar of that tool's parameters (so arguments satisfy the
schema, ``$defs``/``anyOf``/enums/ranges/lengths included). ``tool_choice="required"`` (or
``"any"``/``True``) drops the free-text branch, a tool name keeps only that tool's tag and ``"none"``
keeps only free text. Several calls per reply need ``parallel_tool_calls=True`` (field or bind
keyword); by default the grammar ends the reply after one call, because the untrained 135M model,
offered a separator, repeats its call until the token budget cuts the last copy off. The
structural tag is the cleanest xgrammar construct for this: no hand-written EBNF, each tool's
``$defs`` stay scoped to its own schema, and the prefix shared with
:func:`~recagent.agents.prompt_format.render_tool_call` means the grammar and the training data
cannot disagree. Compiled grammars are cached per (tool set, tool choice).

xgrammar (pinned, >= 0.2.8) rather than outlines or lm-format-enforcer: it is actively
maintained, compiles JSON Schema (``anyOf``, ``$ref``/``$defs``, ``pattern``, numeric and length
bounds, ``additionalProperties: false``) to a grammar with a token-mask cache so per-token
masking costs microseconds, runs on CPU through a plain ``transformers`` logits processor, and
has structural tags for exactly the "free text or tagged calls" shape. One gap matters for our
pydantic schemas: xgrammar ignores ``minLength``/``maxLength`` on a string that also has a
``pattern`` (with a warning); :func:`xgrammar_schema` folds the bounds into simple patterns such
as ``^[A-Za-z0-9_\\-]+$`` (-> ``^[A-Za-z0-9_\\-]{1,40}$``) and drops them otherwise. It also turns
``oneOf`` into ``anyOf`` (xgrammar does the same, noisily) and drops OpenAPI's ``discriminator``.
``uniqueItems``, which no grammar can express, is left to the tool's pydantic validation (it
reports a structured error to the agent). Two stricter-than-JSON-Schema choices of xgrammar are
kept on purpose: properties come in the schema's declared order (optional ones may be skipped),
and ``pattern`` must match the whole string.

**Streaming.** :meth:`LocalChatModel._stream` yields ``content`` text as it is generated (a
``TextIteratorStreamer`` in a thread). Tool-call blocks are held back rather than streamed as
text, so the concatenated content equals the non-streaming ``content``; the last chunk carries
every call as ``tool_call_chunks`` (valid ones with their JSON arguments, invalid ones with the
raw block, which langchain's aggregation keeps invalid), plus usage and metadata. The strict
parse errors, which langchain's chunk aggregation cannot carry, are in that chunk's
``response_metadata["invalid_tool_calls"]``.

**Speed on CPU.** Compute is float32 on CPU by default (``dtype="bfloat16"`` prefills ~3x faster
on CPUs with AMX/AVX512-BF16; numbers in ``benchmarks/results/local_policy.json``). The tool list
makes the prompt ~3.2k tokens, so the KV cache of the previous generation is kept and reused for
the longest common token prefix of the next prompt. The tools block opens the system turn, so it
is prefilled once per process even when the system text changes (list-wise mode has one per user),
and each agent step prefills only the new messages. Grammar masking costs microseconds per token,
but each forced token (a call's fixed prefix) still takes a forward pass. On shared, busy cores
one torch thread decodes several times faster than two (``num_threads=1``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from recagent.agents.prompt_format import (
    BLOCK_SEPARATOR,
    TOOL_CALL_OPEN,
    TOOL_CALL_SUFFIX,
    TOOL_RESPONSE_OPEN,
    ContentStreamFilter,
    ParsedOutput,
    format_prompt,
    parse_assistant_output,
    tool_call_prefix,
    tool_names_of,
)

MAX_JSON_WHITESPACE = 1  # inside constrained arguments: enough for json.dumps style, no whitespace loops
MIN_REUSED_PREFIX = 16  # shorter common prefixes are not worth keeping a cache for
_GRAMMAR_CACHE_SIZE = 16


# -- grammar ----------------------------------------------------------------------------------------------------


def normalize_tool_choice(tool_choice: Any, tool_names: set[str]) -> str:
    """``"auto"``, ``"none"``, ``"required"`` or a bound tool name, from any langchain/OpenAI spelling."""
    if tool_choice is None or tool_choice is False or tool_choice == "auto":
        return "auto"
    if tool_choice is True or tool_choice in ("required", "any"):
        return "required"
    if tool_choice == "none":
        return "none"
    name = tool_choice
    if isinstance(tool_choice, dict):  # {"type": "function", "function": {"name": ...}} or {"name": ...}
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    if isinstance(name, str) and name in tool_names:
        return name
    known = ", ".join(sorted(tool_names)) or "no tools are bound"
    raise ValueError(f"tool_choice {tool_choice!r} is not auto, none, required, any or a bound tool name ({known})")


_SIMPLE_REPEAT = re.compile(r"^\^?(\[(?:[^\]\\]|\\.)+\]|\\.|\.|[^\\\[\]()|?*+{}^$])([+*])\$?$")


def xgrammar_schema(schema: dict) -> dict:
    """A copy of a JSON schema that xgrammar enforces fully (see the module docstring for what changes)."""

    def fix(node: Any) -> Any:
        if isinstance(node, list):
            return [fix(v) for v in node]
        if not isinstance(node, dict):
            return node
        node = {k: fix(v) for k, v in node.items()}
        if "oneOf" in node and "anyOf" not in node:
            node["anyOf"] = node.pop("oneOf")
        node.pop("discriminator", None)
        if isinstance(node.get("pattern"), str) and ("minLength" in node or "maxLength" in node):
            lo, hi = node.pop("minLength", None), node.pop("maxLength", None)
            m = _SIMPLE_REPEAT.match(node["pattern"])
            if m:  # "^X+$" with lengths -> "^X{lo,hi}$"
                atom, quant = m.groups()
                lo = max(lo or 0, 1 if quant == "+" else 0)
                node["pattern"] = f"^{atom}{{{lo},{'' if hi is None else hi}}}$"
        return node

    return fix(schema)


def tool_call_structural_tag(
    tools: Sequence[dict], tool_choice: str = "auto", parallel_tool_calls: bool = True
) -> Any:
    """The xgrammar ``StructuralTag`` for a reply under ``tool_choice`` (normalized) over OpenAI ``tools``."""
    from xgrammar.structural_tag import (
        AnyTextFormat,
        JSONSchemaFormat,
        OrFormat,
        StructuralTag,
        TagFormat,
        TagsWithSeparatorFormat,
    )

    text = AnyTextFormat(excludes=[TOOL_CALL_OPEN, TOOL_RESPONSE_OPEN])
    if tool_choice == "none" or not tools:
        return StructuralTag(format=text)
    functions = [t.get("function", t) for t in tools]
    if tool_choice not in ("auto", "required"):
        functions = [f for f in functions if f["name"] == tool_choice]
    tags = [
        TagFormat(
            begin=tool_call_prefix(f["name"]),
            content=JSONSchemaFormat(
                json_schema=xgrammar_schema(f.get("parameters") or {"type": "object", "properties": {}}),
                max_whitespace_cnt=MAX_JSON_WHITESPACE,
            ),
            end=TOOL_CALL_SUFFIX,
        )
        for f in functions
    ]
    calls = TagsWithSeparatorFormat(
        tags=tags, separator=BLOCK_SEPARATOR, at_least_one=True, stop_after_first=not parallel_tool_calls
    )
    return StructuralTag(format=OrFormat(elements=[text, calls]) if tool_choice == "auto" else calls)


# -- the chat model -------------------------------------------------------------------------------------------------


_ENGINE_LOCK = threading.Lock()


@dataclass
class _Engine:
    """What a loaded model holds: weights, tokenizer, compiled grammars and the latest KV cache."""

    key: tuple
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generate() at a time
    model: Any = None
    tokenizer: Any = None
    compiler: Any = None
    grammars: dict = field(default_factory=dict)
    kv: tuple | None = None  # (token ids the cache covers, DynamicCache) of the latest generation


@dataclass
class _Job:
    """One prepared generation: prompt ids, what to constrain, and generate() kwargs."""

    ids: list[int]
    tool_names: set[str] | None
    tool_choice: str | None
    constrained: bool
    stop: list[str]
    gen_kwargs: dict
    reused: int


class LocalChatModel(BaseChatModel):
    """A local Hugging Face causal LM as a tool-calling langchain chat model (offline, CPU by default).

    Call-time keywords (usually set once with :meth:`bind_tools`): ``tools`` (OpenAI schemas),
    ``tool_choice`` and ``parallel_tool_calls``.
    """

    model_path: str | None = Field(None, description="checkpoint folder; None = the offline SmolLM2-135M-Instruct")
    adapter_path: str | None = Field(None, description="peft LoRA adapter folder, merged into the weights on load")
    max_new_tokens: int = Field(256, ge=1, description="longest reply")
    temperature: float = Field(0.0, ge=0, description="sampling temperature; 0 = greedy")
    constrained: bool = Field(True, description="grammar-constrained tool calls (xgrammar) when tools are bound")
    seed: int = Field(0, description="torch seed set before each sampled generation")
    reuse_kv_cache: bool = Field(True, description="reuse the previous generation's KV cache for a shared prefix")
    parallel_tool_calls: bool = Field(
        False, description="allow several calls per reply (a bind-time parallel_tool_calls overrides it)"
    )
    dtype: Literal["float32", "bfloat16"] | None = Field(None, description="compute dtype; None = float32 on CPU, bf16 on CUDA")
    num_threads: int | None = Field(None, ge=1, description="torch.set_num_threads at load (process-wide); None = leave it")

    _engine: Any = PrivateAttr(default=None)  # shared by copies (model_copy) that load the same weights

    @property
    def _llm_type(self) -> str:
        return "recagent-local-hf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "adapter_path": self.adapter_path,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "constrained": self.constrained,
            "dtype": self.dtype,
        }

    # -- public ----------------------------------------------------------------------------------------------------

    def bind_tools(self, tools: Sequence[Any], tool_choice: Any = None, **kwargs: Any):  # type: ignore[override]
        """Bind tools (langchain tools, pydantic models, functions or OpenAI schemas) for every call."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        choice = normalize_tool_choice(tool_choice, tool_names_of(formatted))
        return self.bind(tools=formatted, tool_choice=choice, **kwargs)

    def load(self) -> tuple[Any, Any]:
        """Load (once) and return the model and tokenizer."""
        engine = self._get_engine()
        with engine.lock:
            return self._ensure_loaded(engine)

    # -- BaseChatModel hooks ---------------------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        engine = self._get_engine()
        with engine.lock:
            job = self._prepare(engine, messages, stop, kwargs)
            t0 = time.perf_counter()
            new_ids = self._run(engine, job, streamer=None)
            seconds = time.perf_counter() - t0
        text = self._decode(engine, new_ids, job.stop)
        parsed = parse_assistant_output(text, job.tool_names)
        message = AIMessage(
            content=parsed.content,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata=self._usage(job, new_ids),
            response_metadata=self._metadata(job, new_ids, seconds, text),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        from transformers import TextIteratorStreamer

        engine = self._get_engine()
        with engine.lock:  # held across yields: the model and its KV cache serve one stream at a time
            job = self._prepare(engine, messages, stop, kwargs)
            streamer = TextIteratorStreamer(engine.tokenizer, skip_prompt=True, skip_special_tokens=True)
            cancel = threading.Event()
            result: dict[str, Any] = {}

            def work() -> None:
                try:
                    result["ids"] = self._run(engine, job, streamer=streamer, cancel=cancel)
                except BaseException as e:  # re-raised in the consumer's thread below
                    result["error"] = e
                    streamer.end()

            t0 = time.perf_counter()
            thread = threading.Thread(target=work, name="recagent-local-generate", daemon=True)
            thread.start()
            raw, fed, stopped = "", 0, False  # all text so far; how much of it went to the content filter
            content = ContentStreamFilter()
            try:
                for piece in streamer:
                    raw += piece
                    safe = len(raw)
                    if job.stop:  # hold back text that may be the start of a stop string
                        cut = _cut_at_stop(raw, job.stop)
                        stopped = len(cut) < len(raw)
                        safe = len(cut) if stopped else len(raw) - max(_partial_suffix(raw, s) for s in job.stop)
                    delta = content.feed(raw[fed:safe])
                    fed = safe
                    if delta:
                        chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
                        if run_manager:
                            run_manager.on_llm_new_token(delta, chunk=chunk)
                        yield chunk
                    if stopped:
                        break
            finally:
                cancel.set()  # the consumer stopped early, or a stop string was seen: let generate() return
                thread.join()
            if "error" in result:
                raise result["error"]
            seconds = time.perf_counter() - t0
            new_ids = result["ids"]
        rest = ("" if stopped else content.feed(raw[fed:])) + content.finish()
        text = self._decode(engine, new_ids, job.stop)
        parsed = parse_assistant_output(text, job.tool_names)
        meta = self._metadata(job, new_ids, seconds, text)
        if parsed.invalid_tool_calls:
            meta["invalid_tool_calls"] = parsed.invalid_tool_calls
        last = AIMessageChunk(
            content=rest,
            tool_call_chunks=_tool_call_chunks(parsed),
            usage_metadata=self._usage(job, new_ids),
            response_metadata=meta,
            chunk_position="last",
        )
        chunk = ChatGenerationChunk(message=last)
        if run_manager and rest:
            run_manager.on_llm_new_token(rest, chunk=chunk)
        yield chunk

    # -- internals ---------------------------------------------------------------------------------------------------

    def _get_engine(self) -> _Engine:
        key = (self.model_path, self.adapter_path, self.dtype)
        with _ENGINE_LOCK:
            if self._engine is None or self._engine.key != key:  # a copy with other weights gets its own
                self._engine = _Engine(key)
            return self._engine

    def _ensure_loaded(self, engine: _Engine) -> tuple[Any, Any]:
        if engine.model is None:
            import torch

            from recagent.agents.local_model import load_causal_lm

            if self.num_threads:
                torch.set_num_threads(self.num_threads)
            dtype = getattr(torch, self.dtype) if self.dtype else None
            engine.model, engine.tokenizer = load_causal_lm(self.model_path, self.adapter_path, dtype)
        return engine.model, engine.tokenizer

    def _prepare(self, engine: _Engine, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict) -> _Job:
        import torch
        from transformers import LogitsProcessorList

        model, tok = self._ensure_loaded(engine)
        tools = kwargs.get("tools") or None
        if tools:
            tools = [convert_to_openai_tool(t) for t in tools]  # a no-op for OpenAI schemas
        names = tool_names_of(tools) if tools else set()
        choice = normalize_tool_choice(kwargs.get("tool_choice"), names) if tools else None
        parallel = kwargs.get("parallel_tool_calls")
        parallel = self.parallel_tool_calls if parallel is None else bool(parallel)
        prompt = format_prompt(tok, messages, tools)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        constrained = bool(self.constrained and tools)
        processors = LogitsProcessorList()
        if constrained:
            import xgrammar as xgr

            processors.append(xgr.contrib.hf.LogitsProcessor(self._grammar(engine, tools, choice, parallel)))
        cache, reused = self._take_cache(engine, ids)
        eos = {tok.eos_token_id} | set(_as_list(model.generation_config.eos_token_id))
        gen: dict[str, Any] = {
            "input_ids": torch.tensor([ids], device=model.device),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=model.device),
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.temperature > 0,
            "logits_processor": processors,
            "eos_token_id": sorted(i for i in eos if i is not None),
            "pad_token_id": tok.pad_token_id,
            "return_dict_in_generate": True,
            "past_key_values": cache,
        }
        if self.temperature > 0:
            gen.update(temperature=self.temperature, top_k=0, top_p=1.0)
        if stop:
            gen.update(stop_strings=list(stop), tokenizer=tok)
        # with no tools the name set is empty: any <tool_call> block is reported as an invalid call
        return _Job(ids, names, choice, constrained, list(stop or []), gen, reused)

    def _grammar(self, engine: _Engine, tools: list[dict], choice: str, parallel: bool) -> Any:
        import xgrammar as xgr

        key = (json.dumps(tools, sort_keys=True), choice, parallel)
        compiled = engine.grammars.get(key)
        if compiled is None:
            if engine.compiler is None:
                vocab = engine.model.config.vocab_size  # may exceed the tokenizer's (padded embeddings)
                engine.compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(engine.tokenizer, vocab_size=vocab))
            compiled = engine.compiler.compile_structural_tag(tool_call_structural_tag(tools, choice, parallel))
            if len(engine.grammars) >= _GRAMMAR_CACHE_SIZE:
                engine.grammars.pop(next(iter(engine.grammars)))
            engine.grammars[key] = compiled
        return compiled

    def _take_cache(self, engine: _Engine, ids: list[int]) -> tuple[Any, int]:
        """The previous KV cache cropped to its common prefix with ``ids`` (None, 0 when not worth it)."""
        entry, engine.kv = engine.kv, None  # taken: generate() extends it in place
        if entry is None or not self.reuse_kv_cache:
            return None, 0
        cached_ids, cache = entry
        n = min(_common_prefix(cached_ids, ids), len(ids) - 1)  # at least one prompt token must be fed
        if n < MIN_REUSED_PREFIX or cache.get_seq_length() != len(cached_ids) or not getattr(cache, "is_croppable", True):
            return None, 0
        extra = cache.get_seq_length() - n
        if extra > 0:
            cache.crop(-extra)  # negative = remove that many tokens (accepted by transformers 4.x and 5.x)
        return cache, n

    def _run(self, engine: _Engine, job: _Job, streamer: Any, cancel: threading.Event | None = None) -> list[int]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        model = engine.model
        gen = dict(job.gen_kwargs)
        if streamer is not None:
            gen["streamer"] = streamer
        if cancel is not None:

            class _Cancelled(StoppingCriteria):
                def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                    return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

            gen["stopping_criteria"] = StoppingCriteriaList([_Cancelled()])
        if self.temperature > 0:
            torch.manual_seed(self.seed)  # reproducible sampling for a given prompt
        with torch.inference_mode():
            out = model.generate(**gen)
        seq = out.sequences[0].tolist()
        new_ids = seq[len(job.ids) :]
        cache = getattr(out, "past_key_values", None)
        if self.reuse_kv_cache and cache is not None:
            engine.kv = (seq[: cache.get_seq_length()], cache)
        return new_ids

    def _decode(self, engine: _Engine, new_ids: list[int], stop: list[str]) -> str:
        text = engine.tokenizer.decode(new_ids, skip_special_tokens=True)
        return _cut_at_stop(text, stop) if stop else text

    def _usage(self, job: _Job, new_ids: list[int]) -> dict:
        return {"input_tokens": len(job.ids), "output_tokens": len(new_ids), "total_tokens": len(job.ids) + len(new_ids)}

    def _metadata(self, job: _Job, new_ids: list[int], seconds: float, text: str) -> dict:
        eos = set(job.gen_kwargs["eos_token_id"])
        cut = len(new_ids) >= self.max_new_tokens and (not new_ids or new_ids[-1] not in eos)
        return {
            "model_name": self.model_path or "smollm2-135m-instruct",
            "generation_seconds": round(seconds, 4),
            "tokens_per_second": round(len(new_ids) / seconds, 2) if seconds > 0 else None,
            "constrained": job.constrained,
            "tool_choice": job.tool_choice,
            "prefix_tokens_reused": job.reused,
            "finish_reason": "length" if cut else "stop",
            "raw_output": text,
        }


# -- helpers ---------------------------------------------------------------------------------------------------------


def _tool_call_chunks(parsed: ParsedOutput) -> list[dict]:
    chunks = [
        {"name": c["name"], "args": json.dumps(c["args"], ensure_ascii=False), "id": c["id"], "index": i, "type": "tool_call_chunk"}
        for i, c in enumerate(parsed.tool_calls)
    ]
    offset = len(chunks)
    chunks += [
        {"name": c["name"], "args": c["args"], "id": c["id"], "index": offset + i, "type": "tool_call_chunk"}
        for i, c in enumerate(parsed.invalid_tool_calls)
    ]
    return chunks


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    import numpy as np

    n = min(len(a), len(b))
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


def _partial_suffix(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that is a proper prefix of ``stop``."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


__all__ = ["LocalChatModel", "normalize_tool_choice", "tool_call_structural_tag", "xgrammar_schema"]

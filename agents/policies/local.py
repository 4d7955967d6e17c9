"""A langchain-core chat model over a local language model, with grammar-constrained calls and answers.

:class:`LocalChatModel` renders the conversation with :mod:`recagent.agents.prompt_format` (the
same format SFT and RL train on), tokenizes it with the training tokenizer, decodes with an engine
(:mod:`.engines`: llama.cpp by default, transformers for any Hugging Face checkpoint) under an
xgrammar grammar (:mod:`.grammar`), and parses the reply strictly into ``tool_calls`` /
``invalid_tool_calls``. The engine loads lazily, once per instance; copies made with
``model_copy`` (say, unconstrained or sampling) share the loaded engine, its grammar cache, its KV
cache and the lock that serialises decoding.

Call-time keywords (usually set once with :meth:`LocalChatModel.bind_tools`): ``tools`` (OpenAI
schemas), ``tool_choice``, ``parallel_tool_calls``; per call, ``cite_items`` (the
:class:`~.grammar.CitableItem` s an answer may cite: every item a tool returned in this
conversation), ``cite_required`` (the answer cites at least this many of them) and ``listwise_k`` (a
list-wise answer: a JSON list of exactly min(k, n) distinct ids of those n items). An answer under
``cite_items`` can only cite those items (see :mod:`.grammar`). ``call_ids`` (a :class:`~.grammar.CallIds`)
narrows the calls' user- and item-id, saved-set, count and year arguments to what the conversation holds.

**No repeated calls** (``no_repeat_calls``). A call equal to one made since the user's last message (same tool,
same arguments) can only return the result already in the conversation; the reply is then decoded once more
with that tool out of the grammar (the prompt unchanged), so the model answers or calls another tool
(``response_metadata["repeated_calls"]`` names the tools left out). No synthesized
gold call after a tool result calls that result's tool again (0 of 2,479 in synth4's train split,
``benchmarks/tool_separability.py``), yet the trained adapters do: the guard fired on 5 of the shipped adapter's
340 validation replies (``benchmarks/results/policy_checkpoints_sft_names.json``).

**Streaming.** :meth:`LocalChatModel._stream` yields ``content`` text as it is decoded. Tool-call
blocks are held back rather than streamed as text, so the concatenated content equals the
non-streaming ``content``; the last chunk carries every call as ``tool_call_chunks`` (valid ones
with their JSON arguments, invalid ones with the raw block, which langchain's aggregation keeps
invalid), plus usage and metadata. The strict parse errors, which langchain's chunk aggregation
cannot carry, are in that chunk's ``response_metadata["invalid_tool_calls"]``.

**Budgets.** ``max_new_tokens`` caps every reply; a reply that can only be one tool call
(``tool_choice`` required or a tool name, one call per reply) is capped at ``max_call_tokens``
instead, sized from the longest synthesized call (``benchmarks/results/token_budgets.json``).
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from recagent.agents.call_ids import set_just_saved, wish_likens
from recagent.agents.context import FEEDBACK
from recagent.agents.policies.call_filter import all_of, lists_once
from recagent.agents.policies.engines import DecodeJob, DecodeResult, Engine
from recagent.agents.policies.grammar import (
    CITATION_ON_ITS_OWN_LINE,
    AnswerRule,
    CallIds,
    CitableItem,
    GrammarCache,
    answer_filter,
    ground_call_arguments,
    left_out_for_lookup,
    left_out_for_turn_down,
    left_out_for_user,
    lookup_names,
    needs_user,
    normalize_tool_choice,
    reads_given_items,
    takes_years,
)
from recagent.agents.prompt_format import (
    ContentStreamFilter,
    ParsedOutput,
    encode_prompt,
    format_prompt,
    parse_assistant_output,
    partial_suffix,
    tool_names_of,
)
from recagent.agents.tool_router import ToolRouter, turns_of_messages

EngineName = Literal["auto", "llama_cpp", "transformers"]
_CITED_ID = re.compile(r"\[\d+\]")  # an item a tool result shows ("item: [50] Star Wars (1977)")
_SLOT_LOCK = threading.Lock()


@dataclass
class _Slot:
    """A loaded engine and its grammar cache, shared by copies of one chat model that load the same weights."""

    key: tuple
    engine: Any = None
    grammars: GrammarCache | None = None


def narrow_for_missing_user(keep: set[str], nameless: set[str], router: ToolRouter | None) -> tuple[set[str], bool]:
    """The tools a call may still name once ``nameless`` (tools needing a user nobody gave) are out, and whether the
    reply must answer: none is left, or (where ``router`` narrowed the grammar) none the router judges, as the tool it
    chose was one of them. Synthesized replies there ask for the id (benchmarks/user_id_asks.py)."""
    if not nameless:
        return keep, False
    left = keep - nameless
    judged = {t for t in left if router.knows(t)} if router is not None else left
    return left, not judged


@dataclass
class _Job:
    """One prepared reply: the decode job plus what the parser and metadata need."""

    decode: DecodeJob
    tool_names: set[str] | None
    tool_choice: str | None
    constrained: bool
    engine: str
    routed: list[str] | None = None  # the tools the router left in the grammar (None: no router ran)
    decided: str | None = None  # the router's call or answer (None: the policy chose)
    left_out: list[str] | None = None  # tools the grammar left out for want of a user id (ask_for_user)


class LocalChatModel(BaseChatModel):
    """A local language model as a tool-calling langchain chat model (offline, CPU by default)."""

    model_path: str | None = Field(
        None, description="a GGUF file or a Hugging Face checkpoint folder; None = the offline SmolLM2-135M-Instruct"
    )
    adapter_path: str | None = Field(None, description="peft LoRA adapter folder (llama.cpp: converted to GGUF once)")
    tokenizer_path: str | None = Field(
        None,
        description="llama.cpp: the training tokenizer's folder; None = the model's own (default: the converted checkpoint's)",
    )
    engine: EngineName = Field(
        "auto", description="llama_cpp (GGUF), transformers (HF checkpoint) or auto: llama_cpp for GGUF/default models"
    )
    max_new_tokens: int = Field(256, ge=1, description="longest reply")
    max_call_tokens: int | None = Field(
        None,
        ge=1,
        description="budget of a reply that can only be one tool call (instead of max_new_tokens); None = max_new_tokens",
    )
    temperature: float = Field(0.0, ge=0, description="sampling temperature; 0 = greedy")
    constrained: bool = Field(True, description="grammar-constrained tool calls and answer citations (xgrammar)")
    seed: int = Field(0, description="seed set before each sampled reply")
    reuse_kv_cache: bool = Field(True, description="reuse the previous reply's KV cache for a shared prefix")
    jump_forward: bool = Field(
        True, description="llama.cpp: append text the grammar forces in one batched step instead of token by token"
    )
    parallel_tool_calls: bool = Field(
        False, description="allow several calls per reply (a bind-time parallel_tool_calls overrides it)"
    )
    dtype: Literal["float32", "bfloat16"] | None = Field(
        None, description="transformers compute dtype; None = by hardware"
    )
    num_threads: int | None = Field(
        None, ge=1, description="CPU threads (llama.cpp: per engine; transformers: process-wide)"
    )
    n_ctx: int = Field(8192, ge=512, description="llama.cpp context window in tokens")
    no_repeat_calls: bool = Field(
        True,
        description="decode again, without its tool, a reply whose call repeats one made since the user's last "
        "message (same tool and arguments: its result is already there)",
    )
    gguf_type: Literal["q8_0", "q4_1"] = Field(
        "q8_0", description="llama.cpp, default model: the shipped Q4_1 file or its Q8_0 copy (faster prefill on AVX2)"
    )
    router_path: str | None = Field(
        None, description="a tool router file (tool_router.npz, recagent train router); None = no router"
    )
    router_top_k: int = Field(
        0,
        ge=0,
        description="a call may name only the router's k likeliest offered tools (and any it does not know); 0 = all",
    )

    router_reply: bool = Field(
        True,
        description="a router fit with answers decides call or answer after a tool result, and after a user message an "
        "answer or a call it is sure of (router_answer_p, router_call_p); no effect without such a router or a grammar",
    )
    router_answer_p: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="after a user message: answer when the router gives answering at least this probability",
    )
    router_call_p: float = Field(
        0.03,
        ge=0.0,
        le=0.5,
        description="after a user message: call when the router gives answering at most this probability; 0 = never",
    )
    router_save_p: float = Field(
        0.8,
        ge=0.5,
        le=1.0,
        description="a router fit with saves decides whether a call saves its result where it is this sure either "
        "way (the grammar requires or drops the save argument); 1 = never",
    )

    ask_for_user: bool = Field(
        True,
        description="with a grammar and call ids, under tool choice auto: a tool that requires a user id is left out "
        "while the conversation names no known user; where that was the router's tool (or all there was) the reply is "
        "an answer, which asks for the id",
    )

    _slot: Any = PrivateAttr(default=None)
    _router: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "recagent-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "adapter_path": self.adapter_path,
            "engine": self.resolved_engine(),
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "constrained": self.constrained,
        }

    # -- public ----------------------------------------------------------------------------------------------------

    def bind_tools(self, tools: Sequence[Any], tool_choice: Any = None, **kwargs: Any):  # type: ignore[override]
        """Bind tools (langchain tools, pydantic models, functions or OpenAI schemas) for every call."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        choice = normalize_tool_choice(tool_choice, tool_names_of(formatted))
        return self.bind(tools=formatted, tool_choice=choice, **kwargs)

    def resolved_engine(self) -> str:
        """The engine ``auto`` stands for: llama.cpp for the default model or a ``.gguf`` file when installed."""
        if self.engine != "auto":
            return self.engine
        gguf = self.model_path is None or str(self.model_path).endswith(".gguf")
        return "llama_cpp" if gguf and _has_llama_cpp() else "transformers"

    def load(self) -> Engine:
        """Load (once) and return the engine; ``.tokenizer`` is the training tokenizer."""
        slot = self._get_slot()
        with _SLOT_LOCK:
            if slot.engine is None:
                slot.engine = self._build_engine()
                slot.grammars = None
        return slot.engine

    def attach(self, engine: Engine) -> LocalChatModel:
        """Use ``engine`` (say, over a model being trained) instead of loading the configured weights; returns self."""
        slot = self._get_slot()
        with _SLOT_LOCK:
            slot.engine, slot.grammars = engine, None
        return self

    def decode_job(self, messages: Sequence[BaseMessage], **kwargs: Any) -> DecodeJob:
        """The decode job (prompt ids, grammar, budget) of the reply to ``messages`` under call-time ``kwargs``."""
        return self._prepare(self.load(), list(messages), None, kwargs).decode

    def tool_router(self) -> ToolRouter:
        """The tool router at ``router_path``, loaded once (a copy with another path loads its own)."""
        if self._router is None or self._router[0] != self.router_path:
            self._router = (self.router_path, ToolRouter.load(self.router_path))
        return self._router[1]

    def grammars(self) -> GrammarCache:
        """The engine's compiled-grammar cache."""
        slot = self._get_slot()
        engine = self.load()
        if slot.grammars is None:
            slot.grammars = GrammarCache(engine.tokenizer, engine.vocab_size)
        return slot.grammars

    # -- BaseChatModel hooks ---------------------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        engine = self.load()
        job, result, text, parsed, seconds = self._decode_reply(engine, messages, stop, kwargs)
        repeated = None
        if retry := self._repeat_retry(engine, job, parsed, messages, stop, kwargs):
            job, result, text, parsed, more_seconds, repeated = retry
            seconds += more_seconds
        meta = self._metadata(job, result, seconds, text)
        if repeated:
            meta["repeated_calls"] = repeated  # the guard decoded again without these tools
        message = AIMessage(
            content=parsed.content,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata=_usage(job, result),
            response_metadata=meta,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        engine = self.load()
        with engine.lock:  # held across yields: the engine and its KV cache serve one stream at a time
            job = self._prepare(engine, messages, stop, kwargs)
            tokens: queue.Queue = queue.Queue()
            cancel = threading.Event()
            result: dict[str, Any] = {}

            def work() -> None:
                try:
                    result["out"] = engine.decode(job.decode, tokens.put, cancel)
                except BaseException as e:  # re-raised in the consumer's thread below
                    result["error"] = e
                finally:
                    tokens.put(None)

            t0 = time.perf_counter()
            thread = threading.Thread(target=work, name="recagent-local-decode", daemon=True)
            thread.start()
            ids: list[int] = []
            raw, fed, stopped = "", 0, False  # decoded text so far; how much of it went to the content filter
            content = ContentStreamFilter()
            stops = job.decode.stop
            try:
                while (token := tokens.get()) is not None:
                    ids.append(token)
                    text = engine.tokenizer.decode(ids, skip_special_tokens=True)
                    if text.endswith("\ufffd"):
                        continue  # a multi-byte character is not complete yet
                    raw = text
                    safe = len(raw)
                    if stops:  # hold back text that may be the start of a stop string
                        cut = _cut_at_stop(raw, stops)
                        stopped = len(cut) < len(raw)
                        safe = len(cut) if stopped else len(raw) - max(partial_suffix(raw, s) for s in stops)
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
                cancel.set()  # the consumer stopped early, or a stop string was seen: let decoding return
                thread.join()
            if "error" in result:
                raise result["error"]
            seconds = time.perf_counter() - t0
            out: DecodeResult = result["out"]
        text = self._decode_text(engine, out.new_ids, stops)
        rest = ("" if stopped else content.feed(text[fed:])) + content.finish()
        parsed = parse_assistant_output(text, job.tool_names)
        repeated = None
        if retry := self._repeat_retry(engine, job, parsed, messages, stop, kwargs):
            # a reply of calls streamed no content (the grammar: words or calls), so the new reply goes out whole
            job, out, text, parsed, more_seconds, repeated = retry
            seconds += more_seconds
            rest = parsed.content
        meta = self._metadata(job, out, seconds, text)
        if repeated:
            meta["repeated_calls"] = repeated
        if parsed.invalid_tool_calls:
            meta["invalid_tool_calls"] = parsed.invalid_tool_calls
        last = AIMessageChunk(
            content=rest,
            tool_call_chunks=_tool_call_chunks(parsed),
            usage_metadata=_usage(job, out),
            response_metadata=meta,
            chunk_position="last",
        )
        chunk = ChatGenerationChunk(message=last)
        if run_manager and rest:
            run_manager.on_llm_new_token(rest, chunk=chunk)
        yield chunk

    # -- internals ---------------------------------------------------------------------------------------------------

    def _repeat_retry(
        self,
        engine: Engine,
        job: _Job,
        parsed: ParsedOutput,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict,
    ) -> tuple[_Job, DecodeResult, str, ParsedOutput, float, list[str]] | None:
        """The reply decoded again without the tools whose calls repeat earlier ones (see the module docstring);
        None when no call repeats, the guard is off, or the caller required a call (a tool choice other than auto)."""
        repeated = repeated_call_names(parsed.tool_calls, messages) if self.no_repeat_calls else set()
        if not repeated or job.tool_choice not in (None, "auto"):
            return None
        return *self._decode_reply(engine, messages, stop, kwargs, without=repeated), sorted(repeated)

    def _decode_reply(
        self,
        engine: Engine,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict,
        without: Collection[str] = frozenset(),
    ) -> tuple[_Job, DecodeResult, str, ParsedOutput, float]:
        """One whole reply: its job, the engine's result, the text, the parsed reply and the decode seconds."""
        with engine.lock:
            job = self._prepare(engine, messages, stop, kwargs, without)
            t0 = time.perf_counter()
            result = engine.decode(job.decode, None, None)
            seconds = time.perf_counter() - t0
        text = self._decode_text(engine, result.new_ids, job.decode.stop)
        return job, result, text, parse_assistant_output(text, job.tool_names), seconds

    def _get_slot(self) -> _Slot:
        key = (
            self.model_path,
            self.adapter_path,
            self.tokenizer_path,
            self.resolved_engine(),
            self.dtype,
            self.num_threads,
            self.n_ctx,
            self.gguf_type,
        )
        with _SLOT_LOCK:
            if self._slot is None or self._slot.key != key:  # a copy with other weights gets its own
                self._slot = _Slot(key)
            return self._slot

    def _build_engine(self) -> Engine:
        from recagent.agents.policies import engines

        if self.resolved_engine() == "llama_cpp":
            gguf, tokenizer = _gguf_and_tokenizer(self.model_path, self.tokenizer_path, self.gguf_type)
            lora = _adapter_gguf(self.adapter_path, gguf) if self.adapter_path else None
            return engines.LlamaCppEngine(gguf, tokenizer, lora_gguf=lora, n_ctx=self.n_ctx, n_threads=self.num_threads)
        import torch

        from recagent.agents.local_model import load_causal_lm

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        dtype = getattr(torch, self.dtype) if self.dtype else None
        model, tokenizer = load_causal_lm(self.model_path, self.adapter_path, dtype)
        return engines.TransformersEngine(model, tokenizer)

    def _prepare(
        self,
        engine: Engine,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict,
        without: Collection[str] = frozenset(),
    ) -> _Job:
        tools = kwargs.get("tools") or None
        if tools:
            tools = [convert_to_openai_tool(t) for t in tools]  # a no-op for OpenAI schemas
        names = tool_names_of(tools) if tools else set()
        choice = normalize_tool_choice(kwargs.get("tool_choice"), names) if tools else None
        parallel = kwargs.get("parallel_tool_calls")
        parallel = self.parallel_tool_calls if parallel is None else bool(parallel)
        tok = engine.tokenizer
        ids = encode_prompt(tok, format_prompt(tok, messages, tools))  # data text can never become a special token
        asked = choice
        routing = self.router_path and (self.router_top_k or self.router_reply)
        router = self.tool_router().reading(tools or []) if routing else None  # unseen tools read by their words
        turns = turns_of_messages(messages) if routing else []
        decided = None
        # the router's call-or-answer only where the caller left it open and no repeated call was just taken out
        if self.constrained and self.router_reply and router is not None and tools and not without:
            if choice in (None, "auto"):
                decided = router.reply(turns, self.router_answer_p, self.router_call_p)
                choice = {"answer": "none", "call": "required"}.get(decided or "", choice)
        # the prompt shows the tools as trained; only the grammar narrows their ids, sets, counts and years
        call_ids = kwargs.get("call_ids")
        if self.constrained and tools and asked in (None, "auto") and not without:
            # "is the godfather on here?", "find Amaeus for me": the model answered from what it knew or as out of
            # scope, and the router too ("find Amaeus for me" answered as out of scope, validation); a look-up knows
            if call_ids is not None and call_ids.asks_for_title:
                choice, decided = "required", None
        if (
            self.constrained
            and tools
            and asked in (None, "auto")
            and not without
            and _first_turn_down(messages, call_ids)
        ):
            # "None of those ... Can you show me different ones?": the films shown were turned down, so only a call
            # finds others (the router read it as an answer, which showed a film turned down again)
            choice, decided = "required", None
        if (
            self.constrained
            and tools
            and asked in (None, "auto")
            and not without
            and (_saved_for_later(messages, tools, call_ids) or _looked_up_for_a_likeness(messages, tools))
        ):
            # a search's result saved for a later tool, or a look-up of the title a wish is likened to: the chain goes
            # on (validation: similar items saved as "cands", then an answer from them where the request wanted them
            # ranked; "what's similar to fire down below?" answered with the film looked up)
            choice, decided = "required", None
        keep = names - set(without)  # without: tools whose call would repeat one made since the user's last message
        if self.constrained and choice in (None, "auto", "required"):
            # a look-up with nothing to look up is no choice, for the router or the model ("popular stuff from the
            # 90s" looked up the title "popular"); a named tool stays the caller's
            # nor, after a turn-down, one that could only rank or look up the films turned down
            left_out = left_out_for_lookup(tools or [], call_ids) | left_out_for_turn_down(tools or [], call_ids)
            keep = (keep - left_out) or keep
            if call_ids is not None and call_ids.asks_for_title:
                # a look-up answers it: the router's retrieve_for_user for "find Amaeus for me" needed a user id, so
                # the reply asked for one (validation)
                keep = (keep & lookup_names(tools or [])) or keep
        routed = None
        # the router narrows the grammar only: unconstrained, the model may write any name it likes
        narrows = bool(self.constrained and tools)
        if narrows and self.router_top_k and router is not None and keep and choice in (None, "auto", "required"):
            offered = keep
            keep = router.allowed(turns, offered, self.router_top_k)
            if parallel:  # "... And separately: popular dramas from the 90s" needs a second tool beside the first
                dated = {t["function"]["name"] for t in tools or [] if takes_years(t)}
                keep |= router.second_request_tools(turns, offered, dated)
            routed = sorted(keep)
        nameless: set[str] = set()
        if narrows and self.ask_for_user and asked in (None, "auto") and choice != "none":
            nameless = keep & left_out_for_user(tools or [], call_ids)
            keep, answers = narrow_for_missing_user(keep, nameless, router if routed is not None else None)
            if routed is not None:
                routed = sorted(keep)
            if answers:  # even where the router was sure of a call: the one it meant needs the user
                choice, decided = "none", None
        call_only = choice not in (None, "auto", "none")  # required or a named tool: the reply is calls
        answer = (
            None
            if call_only
            else _answer_rule(kwargs.get("cite_items"), kwargs.get("listwise_k"), kwargs.get("cite_required"))
        )
        constrained = bool(self.constrained and (tools or answer is not None))
        if call_ids is not None and router is not None and routed and len(routed) == 1 and self.router_save_p < 1:
            # one tool left: the save head says whether its call stores the result for a later tool
            call_ids = replace(call_ids, saves=router.saves(turns, routed[0], self.router_save_p))
        grammar_tools = ground_call_arguments(tools or [], call_ids)
        if keep != names:
            grammar_tools = [t for t in grammar_tools if t["function"]["name"] in keep]
        grammar = self.grammars().get(grammar_tools, choice or "none", parallel, answer) if constrained else None
        budget = self.max_new_tokens
        if self.max_call_tokens and call_only and not parallel:
            budget = self.max_call_tokens  # the reply can only be one call: its own budget
        if not self.reuse_kv_cache:
            engine.forget_cache()
        decode = DecodeJob(
            ids=ids,
            grammar=grammar,
            max_new_tokens=budget,
            temperature=self.temperature,
            seed=self.seed,
            stop=list(stop or []),
            eos_ids=engine.eos_ids(),
            # the grammar lets a list repeat a value (no grammar states uniqueItems): the check refuses it
            text_filter=all_of(answer_filter(answer), lists_once(grammar_tools)) if constrained else None,
            jump_forward=self.jump_forward,
            # an answer that must cite opens a citation on its own line where the model would end without one:
            # measured, the base model refused "[" however long it was made to go on
            end_redirect=_end_redirect(tok, answer) if constrained else [],
        )
        # with no tools the name set is empty: any <tool_call> block is reported as an invalid call
        return _Job(
            decode, names, asked, constrained, self.resolved_engine(), routed, decided, sorted(nameless) or None
        )

    def _decode_text(self, engine: Engine, new_ids: list[int], stop: list[str]) -> str:
        text = engine.tokenizer.decode(new_ids, skip_special_tokens=True)
        return _cut_at_stop(text, stop) if stop else text

    def _metadata(self, job: _Job, out: DecodeResult, seconds: float, text: str) -> dict:
        ids = out.new_ids
        cut = len(ids) >= job.decode.max_new_tokens and (not ids or ids[-1] not in job.decode.eos_ids)
        return (
            {
                "model_name": self.model_path or "smollm2-135m-instruct",
                "engine": job.engine,
                "generation_seconds": round(seconds, 4),
                "prefill_seconds": round(out.prefill_seconds, 4),
                "tokens_per_second": round(len(ids) / out.decode_seconds, 2) if out.decode_seconds > 0 else None,
                "constrained": job.constrained,
                "tool_choice": job.tool_choice,
                "prefix_tokens_reused": out.reused,
                "finish_reason": "length" if cut else "stop",
                "raw_output": text,
            }
            | ({"routed_tools": job.routed} if job.routed is not None else {})
            | ({"router_reply": job.decided} if job.decided else {})
            | ({"left_out_for_user": job.left_out} if job.left_out else {})
        )


# -- helpers ---------------------------------------------------------------------------------------------------------


def repeated_call_names(calls: Sequence[dict], messages: Sequence[BaseMessage]) -> set[str]:
    """Names of ``calls`` equal (tool and arguments) to a call made since the conversation's last user message."""
    last_user = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    made = [
        (c["name"], c.get("args") or {})
        for m in messages[last_user + 1 :]
        if isinstance(m, AIMessage)
        for c in m.tool_calls
    ]
    return {c["name"] for c in calls if (c["name"], c.get("args") or {}) in made}


def _has_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _gguf_and_tokenizer(model_path: str | None, tokenizer_path: str | None, gguf_type: str) -> tuple[Path, Any]:
    """The GGUF file and the training tokenizer (by default the one the converted HF checkpoint carries)."""
    from recagent.agents.local_model import LocalModelError, default_gguf, ensure_default_model, load_tokenizer

    if model_path is None:
        # the converted checkpoint's tokenizer loads in a second; reading it out of the GGUF takes ~20 s
        gguf, tok_source = default_gguf(gguf_type), tokenizer_path or ensure_default_model(progress=False)
    else:
        gguf = Path(model_path).expanduser()
        tok_source = tokenizer_path or gguf
    if not gguf.is_file():
        raise LocalModelError(
            f"no GGUF file at {gguf} (engine llama_cpp needs one; use engine=transformers for a checkpoint folder)"
        )
    return gguf, load_tokenizer(tok_source)


def _adapter_gguf(adapter: str, base: Path) -> Path:
    """The GGUF form of a peft adapter folder, converted once into the cache (keyed by the adapter's content)."""
    from recagent.agents.lora_gguf import cached_adapter_gguf

    return cached_adapter_gguf(Path(adapter).expanduser(), base_gguf=base)


def _first_turn_down(messages: Sequence[BaseMessage], call_ids: CallIds | None) -> bool:
    """Is the next step the first since a request that turns the films shown down and asks for no title
    (:attr:`CallIds.turns_down`)?"""
    last = messages[-1] if messages else None
    return bool(
        call_ids is not None
        and call_ids.turns_down
        and last is not None
        and last.type == "human"
        and not last.additional_kwargs.get(FEEDBACK)
    )


def _saved_for_later(messages: Sequence[BaseMessage], tools: Sequence[dict], call_ids: CallIds | None) -> bool:
    """Does the next step follow a result saved under a set name, in a conversation that names a known user, by calls
    that need no user (a search, similar items, a filter: the user's ranking follows), or by a user's own retrieval
    (a user and nothing given) where the request names genres it wants or not (a filter follows)? Every such
    synthesized step is a call: the set is saved for the tool that reads it next. Else a user's own retrieval may be
    saved for a follow-up the user may never ask (173 synthesized answers follow one, none where the request names a
    genre). With no user known the router decides: development, "thrillers without any horror in them" had its filter
    saved (the save head), then a forced ranking asked for a user id."""
    if call_ids is None or not call_ids.users or set_just_saved(messages) is None:
        return False
    made = next((m.tool_calls for m in reversed(messages) if m.type == "ai" and getattr(m, "tool_calls", None)), [])
    by_name = {t["function"]["name"]: t for t in tools}
    if not made or any(c["name"] not in by_name for c in made):
        return False
    genres = bool(call_ids.genres_wanted or call_ids.genres_unwanted)
    return all(
        not needs_user(tool) or (genres and not reads_given_items(tool)) for tool in (by_name[c["name"]] for c in made)
    )


def _looked_up_for_a_likeness(messages: Sequence[BaseMessage], tools: Sequence[dict]) -> bool:
    """Does the next step follow look-ups alone, since a wish likened to something (:func:`wish_likens`: "movies like
    Heat", "more like a film I enjoyed" then its title)? Every such synthesized step is a call (652 of 652 in
    training): the item looked up is where the search starts."""
    if not messages or messages[-1].type != "tool" or not wish_likens(messages):
        return False
    if not _CITED_ID.search(str(messages[-1].content)):
        return False  # the look-up found nothing: the answer says so
    asked = max((i for i, m in enumerate(messages) if m.type == "human"), default=-1)
    made = [c["name"] for m in messages[asked + 1 :] if m.type == "ai" for c in getattr(m, "tool_calls", None) or []]
    looks_up = lookup_names(tools)
    return bool(made) and all(name in looks_up for name in made)


def _answer_rule(cite_items: Any, listwise_k: Any, cite_required: Any = False) -> AnswerRule | None:
    if cite_items is None and listwise_k is None:
        return None
    items = tuple(i if isinstance(i, CitableItem) else CitableItem(*i) for i in (cite_items or ()))
    distinct = len({i.item_id for i in items})
    return AnswerRule(items=items, listwise_k=listwise_k, cite_required=min(int(cite_required or 0), distinct))


def _end_redirect(tok: Any, answer: AnswerRule | None) -> list[int]:
    """What an answer that must cite writes where the model would end without a citation: a citation's opening."""
    if answer is None or not answer.cite_required:
        return []
    return tok.encode(CITATION_ON_ITS_OWN_LINE, add_special_tokens=False)


def _usage(job: _Job, out: DecodeResult) -> dict:
    n_in, n_out = len(job.decode.ids), len(out.new_ids)
    return {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}


def _tool_call_chunks(parsed: ParsedOutput) -> list[dict]:
    chunks = [
        {
            "name": c["name"],
            "args": json.dumps(c["args"], ensure_ascii=False),
            "id": c["id"],
            "index": i,
            "type": "tool_call_chunk",
        }
        for i, c in enumerate(parsed.tool_calls)
    ]
    offset = len(chunks)
    chunks += [
        {"name": c["name"], "args": c["args"], "id": c["id"], "index": offset + i, "type": "tool_call_chunk"}
        for i, c in enumerate(parsed.invalid_tool_calls)
    ]
    return chunks


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


__all__ = ["LocalChatModel"]

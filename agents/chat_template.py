"""The tool-call prompt format again, as a Jinja chat template for Hugging Face tooling.

:mod:`recagent.agents.prompt_format` is the definition of the format: ``render_messages`` /
``render_openai_messages`` turn a conversation plus tool schemas into plain role/content turns,
and SmolLM2's own ChatML template (``<|im_start|>{role}\\n{content}<|im_end|>\\n``) renders those.
Tools that only read a tokenizer's Jinja ``chat_template`` never call that Python code: TRL's
``SFTTrainer`` calls ``tokenizer.apply_chat_template(messages, tools=tools)`` on OpenAI-format rows
(and needs ``{% generation %}`` markers for ``assistant_only_loss``), and vLLM renders served
requests the same way. SmolLM2's template knows nothing of tools (and fails on ``content=None``),
so :data:`TOOL_CHAT_TEMPLATE` renders OpenAI-format messages and ``tools`` in one step into exactly
the text ``render_openai_messages`` followed by SmolLM2's template gives; ``tests/test_chat_template.py``
keeps the two identical on synthesized datasets and edge cases. The template's literal strings
(the tools instruction, tags, default system prompt, JSON type names) are taken from
``prompt_format`` when this module is imported, so a wording change there reaches the template too.

The compact tools block (one ``name(arguments): description`` line per tool, see
:mod:`~recagent.agents.prompt_format`) is rendered by macros that mirror the Python functions one
to one: ``tool_line`` (``render_tool_line``), ``params_of``, ``param_of``, ``type_of``,
``simple_type_of``, ``literal_of``, ``ref_of``, ``union_of``. Enum values and defaults go through
``tojson``, which transformers (and vLLM, which renders with transformers) define as
``json.dumps(x, ensure_ascii=False)``: the same text as the Python side, keys unsorted and ``<>&'``
unescaped. Jinja's built-in ``tojson`` would differ, so the template needs transformers' renderer.
Presence is tested with ``in``, never ``is defined``: ``schema['items']`` on a dict without that
key finds the dict's ``items`` method in Jinja.

**Data never makes markup** (see :mod:`~recagent.agents.prompt_format`). The ``clean`` macro is
``prompt_format.neutralize``: a word joiner after the ``<`` of every special token in data text, and of
our tags in a tool conversation (``tools`` given, or a ``tool`` message or ``tool_calls`` among the
messages, as ``is_tool_conversation`` decides). It is applied where the Python renderer neutralises:
system, user, assistant and tool text, call names and arguments, tool names and signature lines.
Outside a tool conversation tags are left alone because the messages may be ``render_messages``'
own output (``format_prompt`` with a tokenizer carrying this template), whose turns hold real tags;
special tokens are never in those turns, so they are neutralised always.

Each assistant turn's text and its ``<|im_end|>`` sit inside ``{% generation %}`` markers, so
``return_assistant_tokens_mask=True`` (TRL's ``assistant_only_loss``) covers exactly what the
model writes, including the token that ends its turn, and nothing of system, user or tool turns.

**Precondition (JSON text).** A Jinja template cannot parse JSON, while the Python renderer parses
``function.arguments`` strings and dumps them again. The two agree whenever that
text is already canonical, i.e. what ``json.dumps(value, ensure_ascii=False)`` writes:

- ``function.arguments`` given as a string is emitted verbatim, so it must be canonical JSON of an
  object (given as a mapping, as vLLM passes it, it is dumped like ``json.dumps``; empty or missing
  arguments render as ``{}``);
- a tool message's content is text, embedded verbatim in both (our tools write compact lines,
  :mod:`recagent.tools.result_text`).

Synthesized dialogs satisfy this (the dialog builder re-serialises every call's arguments with
``json.dumps(..., ensure_ascii=False)``, including an LLM generator's raw text). For other data,
:func:`canonical_openai_messages` rewrites the arguments so that the template's output equals the
Python renderer's.
Message contents are strings, ``None`` or lists of text blocks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from recagent.agents import prompt_format as pf

SMOLLM2_DEFAULT_SYSTEM = (
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # SmolLM2's template adds it
)

_TOOLS_HEAD, _TOOLS_TAIL = pf.TOOLS_INSTRUCTION.format(tools="\0").split("\0")  # the text around the schemas

# Every tag trims the template's own whitespace ({%- -%}) and all output comes from {{ }} expressions,
# so the rendering does not depend on trim_blocks/lstrip_blocks. @NAME@ marks a string constant.
_TEMPLATE_SOURCE = r"""
{#- Data text with a word joiner after the '<' of every special token (and of our tags when tags is true):
    prompt_format.neutralize, one replace per marker (each has one '<', at its start, so the order is free). -#}
{%- macro clean(text, tags) -%}
  {%- set out = namespace(text=text|string) -%}
  {%- if '<' in out.text -%}
    {%- for marker in (@MARKERS@ if tags else @SPECIAL_TOKENS@) -%}
      {%- set out.text = out.text|replace(marker, marker[:1] + @JOINER@ + marker[1:]) -%}
    {%- endfor -%}
  {%- endif -%}
  {{- out.text -}}
{%- endmacro -%}

{%- macro text_of(content) -%}
  {%- if content is none or content is undefined -%}
  {%- elif content is string -%}{{- content -}}
  {%- elif content is mapping or content is not iterable -%}
    {{- raise_exception('message content must be a string, null or a list of text blocks') -}}
  {%- else -%}
    {%- for block in content -%}
      {%- if block is string -%}{{- block -}}
      {%- elif block is mapping and block['type'] == 'text' and block['text'] is string -%}{{- block['text'] -}}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro -%}

{#- The tools block: one signature line per tool, rule for rule as prompt_format.render_tool_line. -#}
{%- macro literal_of(values) -%}
  {{- 'Literal' + values|tojson(separators=(',', ':')) -}}
{%- endmacro -%}

{%- macro union_of(parts) -%}
  {{- parts|join('|') if parts else 'null' -}}
{%- endmacro -%}

{%- macro ref_of(ref, root, seen, drop_null) -%}
  {%- set parts = ref.split('/') -%}
  {%- set target = root[parts[1]] if parts|length == 3 and parts[0] == '#' and parts[1] in root else none -%}
  {%- if ref in seen or target is not mapping or parts[2] not in target -%}
    {{- parts[-1] or 'any' -}}
  {%- else -%}
    {{- type_of(target[parts[2]], root, seen + [ref], drop_null) -}}
  {%- endif -%}
{%- endmacro -%}

{%- macro simple_type_of(t, s, root, seen) -%}
  {%- if t == 'array' -%}
    {%- if 'items' in s and s['items'] is mapping -%}
      {{- 'list[' + type_of(s['items'], root, seen, false) + ']' -}}
    {%- else -%}
      {{- 'list' -}}
    {%- endif -%}
  {%- elif t == 'object' or (not t and 'properties' in s and s['properties'] is mapping) -%}
    {%- if 'properties' in s and s['properties'] -%}
      {{- '{' + params_of(s, root, seen) + '}' -}}
    {%- elif 'additionalProperties' in s and s['additionalProperties'] is mapping -%}
      {{- 'dict[str, ' + type_of(s['additionalProperties'], root, seen, false) + ']' -}}
    {%- else -%}
      {{- 'dict' -}}
    {%- endif -%}
  {%- else -%}
    {{- @TYPE_NAMES@[t] if t in @TYPE_NAMES@ else (t or 'any') -}}
  {%- endif -%}
{%- endmacro -%}

{%- macro type_of(s, root, seen, drop_null) -%}
  {%- if s is not mapping -%}
    {{- 'any' -}}
  {%- elif '$ref' in s -%}
    {{- ref_of(s['$ref']|string, root, seen, drop_null) -}}
  {%- elif 'const' in s -%}
    {{- literal_of([s['const']]) -}}
  {%- elif 'enum' in s -%}
    {%- set acc = namespace(values=[]) -%}
    {%- for v in s['enum'] if not (drop_null and v is none) -%}{%- set acc.values = acc.values + [v] -%}{%- endfor -%}
    {{- literal_of(acc.values) -}}
  {%- elif 'anyOf' in s or 'oneOf' in s -%}
    {%- set acc = namespace(parts=[]) -%}
    {%- for b in (s['anyOf'] if 'anyOf' in s else s['oneOf']) -%}
      {%- if not (drop_null and b is mapping and 'type' in b and b['type'] == 'null') -%}
        {%- set acc.parts = acc.parts + [type_of(b, root, seen, false)] -%}
      {%- endif -%}
    {%- endfor -%}
    {{- union_of(acc.parts) -}}
  {%- elif 'allOf' in s -%}
    {%- set acc = namespace(parts=[]) -%}
    {%- for b in s['allOf'] -%}{%- set acc.parts = acc.parts + [type_of(b, root, seen, false)] -%}{%- endfor -%}
    {{- acc.parts|join('&') or 'any' -}}
  {%- elif 'type' in s and s['type'] is iterable and s['type'] is not string and s['type'] is not mapping -%}
    {%- set acc = namespace(parts=[]) -%}
    {%- for t in s['type'] if not (drop_null and t == 'null') -%}
      {%- set acc.parts = acc.parts + [simple_type_of(t|string, s, root, seen)] -%}
    {%- endfor -%}
    {{- union_of(acc.parts) -}}
  {%- else -%}
    {{- simple_type_of((s['type']|string) if 'type' in s and s['type'] is not none else '', s, root, seen) -}}
  {%- endif -%}
{%- endmacro -%}

{%- macro param_of(name, s, required, root, seen) -%}
  {%- set default = s['default'] if s is mapping and 'default' in s else none -%}
  {#- an optional argument that defaults to null is simply left out, so its null branch is noise -#}
  {{- name|string + ('' if required else '?') + ': ' + type_of(s, root, seen, not required and default is none) -}}
  {%- if default is not none -%}{{- '=' + default|tojson -}}{%- endif -%}
{%- endmacro -%}

{%- macro params_of(s, root, seen) -%}
  {%- set required = s['required'] if 'required' in s and s['required'] else [] -%}
  {%- set acc = namespace(parts=[]) -%}
  {%- for name, prop in (s['properties'] if 'properties' in s and s['properties'] else {}).items() -%}
    {%- set acc.parts = acc.parts + [param_of(name, prop, name in required, root, seen)] -%}
  {%- endfor -%}
  {{- acc.parts|join(', ') -}}
{%- endmacro -%}

{%- macro tool_line(fn) -%}
  {%- set params = fn['parameters'] if 'parameters' in fn and fn['parameters'] else {} -%}
  {%- set description = (fn['description'] if 'description' in fn and fn['description'] else '')|string -%}
  {%- set description = description.split()|join(' ') -%}
  {{- fn['name']|string + '(' + params_of(params, params, []) + ')' + ((': ' + description) if description else '') -}}
{%- endmacro -%}

{%- set ns = namespace(tools_text=none, has_system=false, tags=(true if tools else false)) -%}
{%- if tools -%}
  {%- set acc = namespace(lines=[]) -%}
  {%- for tool in tools -%}
    {%- if tool is mapping and tool['type'] == 'function' and 'function' in tool -%}
      {%- set acc.lines = acc.lines + [clean(tool_line(tool['function']), true)] -%}
    {%- elif tool is mapping and 'name' in tool and 'parameters' in tool -%}
      {%- set acc.lines = acc.lines + [clean(tool_line(tool), true)] -%}
    {%- else -%}
      {{- raise_exception("a tool schema must be an OpenAI tool {'type': 'function', 'function': {...}}") -}}
    {%- endif -%}
  {%- endfor -%}
  {%- set ns.tools_text = @TOOLS_HEAD@ + acc.lines|join('\n') + @TOOLS_TAIL@ -%}
{%- endif -%}
{%- for message in messages -%}
  {%- if message['role'] in ('system', 'developer') -%}{%- set ns.has_system = true -%}{%- endif -%}
  {#- A tool conversation (tools, calls or results): only there are our tags neutralised in data (is_tool_conversation). -#}
  {%- if message['role'] == 'tool' or (message['tool_calls'] is defined and message['tool_calls']) -%}
    {%- set ns.tags = true -%}
  {%- endif -%}
{%- endfor -%}

{%- if ns.tools_text is not none and not ns.has_system -%}
  {{- '<|im_start|>system\n' + ns.tools_text + '\n\n' + @DEFAULT_SYSTEM@ + '<|im_end|>\n' -}}
{%- elif messages and messages[0]['role'] not in ('system', 'developer') -%}
  {{- '<|im_start|>system\n' + @SMOLLM2_SYSTEM@ + '<|im_end|>\n' -}}
{%- endif -%}

{%- for message in messages -%}
  {%- set index = loop.index0 -%}
  {%- set role = message['role'] -%}
  {%- set text = clean(text_of(message['content']), ns.tags)|string -%}

  {%- if role in ('system', 'developer') -%}
    {%- if ns.tools_text is not none -%}
      {#- The tools block opens the first system turn (a prefix shared by all system prompts). -#}
      {%- set text = (ns.tools_text + '\n\n' + text) if text else ns.tools_text -%}
      {%- set ns.tools_text = none -%}
    {%- endif -%}
    {{- '<|im_start|>system\n' + text + '<|im_end|>\n' -}}

  {%- elif role == 'user' -%}
    {{- '<|im_start|>user\n' + text + '<|im_end|>\n' -}}

  {%- elif role == 'assistant' -%}
    {%- set reply = namespace(parts=([text|trim] if text|trim else [])) -%}
    {%- if message['tool_calls'] is defined and message['tool_calls'] -%}
      {%- for call in message['tool_calls'] -%}
        {%- set fn = call['function'] -%}
        {%- set args = fn['arguments'] if fn['arguments'] is defined else none -%}
        {%- if args is string and args -%}{%- set args_json = args -%}
        {%- elif args is mapping -%}{%- set args_json = args|tojson -%}
        {%- elif not args -%}{%- set args_json = '{}' -%}
        {%- else -%}{{- raise_exception('tool call arguments must be a JSON object (text or mapping)') -}}
        {%- endif -%}
        {%- set body = clean('{"name": ' + fn['name']|tojson + ', "arguments": ' + args_json + '}', true) -%}
        {%- set reply.parts = reply.parts + [@CALL_OPEN@ + body + @CALL_CLOSE@] -%}
      {%- endfor -%}
    {%- endif -%}
    {{- '<|im_start|>assistant\n' -}}
    {%- generation -%}
      {{- reply.parts|join(@SEP@) + '<|im_end|>' -}}
    {%- endgeneration -%}
    {{- '\n' -}}

  {%- elif role == 'tool' -%}
    {%- set look = namespace(name=(message['name'] if message['name'] is defined and message['name'] else none)) -%}
    {%- if look.name is none -%}
      {#- Label the result with the name of the (latest earlier) call that has its tool_call_id. -#}
      {%- for earlier in messages[:index] -%}
        {%- if earlier['role'] == 'assistant' and earlier['tool_calls'] is defined and earlier['tool_calls'] -%}
          {%- for call in earlier['tool_calls'] -%}
            {%- if (call['id'] if call['id'] is defined and call['id'] else '') == message['tool_call_id'] -%}
              {%- set look.name = call['function']['name'] -%}
            {%- endif -%}
          {%- endfor -%}
        {%- endif -%}
      {%- endfor -%}
    {%- endif -%}
    {%- if index > 0 and messages[index - 1]['role'] == 'tool' -%}
      {{- @SEP@ -}}
    {%- else -%}
      {{- '<|im_start|>' + @TOOL_ROLE@ + '\n' -}}
    {%- endif -%}
    {{- @RESPONSE_OPEN@ + ((clean(look.name, true) + '\n') if look.name else '') + text + @RESPONSE_CLOSE@ -}}
    {%- if loop.last or messages[index + 1]['role'] != 'tool' -%}
      {{- '<|im_end|>\n' -}}
    {%- endif -%}

  {%- else -%}
    {{- raise_exception('cannot render a message with role ' + role|string + ' (expected system, user, assistant or tool)') -}}
  {%- endif -%}
{%- endfor -%}

{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"""


def _build_template() -> str:
    """The template source with the format's constants filled in as Jinja string literals."""
    constants = {
        "TOOLS_HEAD": _TOOLS_HEAD,
        "TOOLS_TAIL": _TOOLS_TAIL,
        "DEFAULT_SYSTEM": pf.DEFAULT_SYSTEM_PROMPT,
        "SMOLLM2_SYSTEM": SMOLLM2_DEFAULT_SYSTEM,
        "CALL_OPEN": pf.TOOL_CALL_OPEN,
        "CALL_CLOSE": pf.TOOL_CALL_CLOSE,
        "RESPONSE_OPEN": pf.TOOL_RESPONSE_OPEN,
        "RESPONSE_CLOSE": pf.TOOL_RESPONSE_CLOSE,
        "SEP": pf.BLOCK_SEPARATOR,
        "TOOL_ROLE": pf.TOOL_RESPONSE_ROLE,
        "TYPE_NAMES": pf.JSON_TYPE_NAMES,
        "JOINER": pf.WORD_JOINER,
        "SPECIAL_TOKENS": list(pf.SPECIAL_TOKENS),
        "MARKERS": list(pf.SPECIAL_TOKENS + pf.FORMAT_TAGS),
    }
    # json.dumps writes an ASCII-only, backslash-escaped literal that Jinja reads back unchanged.
    return re.sub(r"@([A-Z0-9_]+)@", lambda m: json.dumps(constants[m.group(1)]), _TEMPLATE_SOURCE.strip())


TOOL_CHAT_TEMPLATE = _build_template()


def apply_tool_template(tokenizer: Any) -> Any:
    """Set :data:`TOOL_CHAT_TEMPLATE` as the tokenizer's chat template and return the tokenizer."""
    tokenizer.chat_template = TOOL_CHAT_TEMPLATE
    return tokenizer


def canonical_openai_messages(messages: Sequence[dict]) -> list[dict]:
    """Copies of OpenAI-format messages whose call arguments are canonical JSON text (the precondition)."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                fn = dict(call["function"])
                args = fn.get("arguments")
                if isinstance(args, str) and args:  # parsed as langchain's convert_to_messages does
                    args = json.loads(args, strict=False)
                fn["arguments"] = json.dumps(args or {}, ensure_ascii=False)
                calls.append({**call, "function": fn})
            m["tool_calls"] = calls
        out.append(m)
    return out


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    return "".join(
        b if isinstance(b, str) else b["text"]
        for b in content
        if isinstance(b, str) or (b.get("type") == "text" and isinstance(b.get("text"), str))
    )

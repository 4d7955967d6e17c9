"""TRL-style training configs in and out of YAML, with ``key=value`` overrides and one-line errors.

TRL's configs (``SFTConfig``, ``GRPOConfig``, ...) are dataclasses that extend
``transformers.TrainingArguments``; a recagent job config subclasses one and adds its own fields.
This module gives such classes what :class:`recagent.config.JobConfig` gives the pydantic configs:

- :func:`load_config`: a YAML mapping, then keyword ``values`` (what CLI flags set), then dotted
  ``key=value`` overrides (values parsed as YAML scalars; ``a.b=1`` sets key ``b`` of the mapping
  field ``a``), built with ``transformers.HfArgumentParser(cls).parse_dict(..., allow_extra_keys=False)``.
  Overrides are parsed and set by :func:`recagent.config.parse_override` and :func:`~recagent.config.set_dotted`,
  the same code as for the pydantic configs, so both kinds read ``key=value`` alike and fail with the same lines.
- Every value is checked against its field's type first (pydantic, lax: ``"1e-4"`` is a float, ``"3"``
  an int), and strings against the choices of enum fields (``eval_strategy``, ``lr_scheduler_type``...),
  so an unknown key or a bad value is one :class:`~recagent.errors.ConfigError` line that names the key
  (with the nearest known key for a typo); errors the class's ``__post_init__`` raises become one line too.
- :func:`save_config` writes the resolved config (the fields that differ from their class defaults,
  plus every field the subclass adds) as YAML that :func:`load_config` reads back. Hub tokens are never
  written.

The resolved config records what ran, including what ``__post_init__`` decided (e.g. ``use_cpu`` on a
machine without a GPU), so loading it elsewhere reproduces that run rather than re-deciding.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from recagent.config import parse_override, read_yaml_mapping, set_dotted
from recagent.errors import ConfigError, RecagentError

T = TypeVar("T")

_SECRET = re.compile(r"hub.*token|token.*hub|api_key|password|secret")  # field names never written to disk


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass config")
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def own_fields(cls: type) -> list[str]:
    """Fields that ``cls`` (or a recagent base between it and the library config) adds to that library config."""
    base_names: set[str] = set()
    for base in cls.__mro__[1:]:
        module = getattr(base, "__module__", "")
        if dataclasses.is_dataclass(base) and not module.startswith("recagent"):
            base_names = {f.name for f in dataclasses.fields(base)}
            break
    return [name for name in _init_fields(cls) if name not in base_names]


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _adapter(tp: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    try:
        return TypeAdapter(tp, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # a type pydantic cannot describe: the dataclass gets the value unchecked
        return None


def _enum_choices(tp: Any) -> list[str] | None:
    """Allowed strings of an ``Enum | str`` field (TrainingArguments' strategies, schedulers, optimisers)."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
    if not enums:
        return None
    return [str(m.value) for e in enums for m in e]


def _check_value(cls: type, key: str, value: Any, raw: str | None, source: str) -> Any:
    """The value as the field's type wants it (numbers parsed from text), or a ConfigError naming the key."""
    tp = _type_hints(cls).get(key)
    adapter = _adapter(tp) if tp is not None else None
    if adapter is not None:
        from pydantic import ValidationError

        try:
            value = adapter.validate_python(value)
        except ValidationError as e:
            if raw is not None and raw != value:  # `-o run_name=2024`: the YAML int was meant as text
                try:
                    return _check_value(cls, key, raw, None, source)
                except ConfigError:
                    pass
            msgs = list(dict.fromkeys(err["msg"] for err in e.errors()))[:3]
            raise ConfigError(f"invalid config ({source}): {key}: {'; '.join(msgs)} (got {value!r})") from None
    choices = _enum_choices(tp)
    if choices and isinstance(value, str) and value not in choices:
        raise ConfigError(f"invalid config ({source}): {key}: {value!r} is not one of {choices}")
    return value


def _accepts_mapping(cls: type, key: str) -> bool:
    adapter = _adapter(_type_hints(cls).get(key))
    if adapter is None:
        return True
    from pydantic import ValidationError

    try:
        adapter.validate_python({})
    except ValidationError:
        return False
    return True


def _unknown_key(cls: type, key: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_init_fields(cls)), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; the fields are those of {cls.__name__} (see its --help)"
    return ConfigError(f"invalid config ({source}): unknown key {key!r}{hint}")


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` from a YAML file, then ``values``, then ``key=value`` overrides (later wins)."""
    from transformers import HfArgumentParser

    fields = _init_fields(cls)
    data: dict[str, Any] = {}
    raws: dict[str, str] = {}
    sources: dict[str, str] = {}
    if path is not None:
        for key, value in read_yaml_mapping(path).items():
            if key not in fields:
                raise _unknown_key(cls, str(key), str(path))
            data[key], sources[key] = value, str(path)
    for key, value in (values or {}).items():
        if key not in fields:
            raise _unknown_key(cls, key, "arguments")
        data[key], sources[key] = (str(value) if isinstance(value, Path) else value), "arguments"
    for item in overrides:
        key, value, raw = parse_override(item)
        top = key.split(".", 1)[0]
        if top not in fields:
            raise _unknown_key(cls, top, "overrides")
        if "." in key:
            if not _accepts_mapping(cls, top):
                raise ConfigError(f"override {key!r}: {top!r} is not a mapping field; use {top}=VALUE")
            set_dotted(data, key, value)
            raws.pop(top, None)
        else:
            data[key], raws[key] = value, raw
        sources[top] = "overrides"
    checked = {k: _check_value(cls, k, v, raws.get(k), sources.get(k, "config")) for k, v in data.items()}
    source = "overrides" if overrides else (str(path) if path is not None else "arguments")
    try:
        (cfg,) = HfArgumentParser(cls).parse_dict(checked, allow_extra_keys=False)
    except RecagentError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid config ({source}): {_one_line(e)}") from None
    return cfg


def _plain(value: Any) -> Any:
    """YAML-safe form of a config value."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return value


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def config_to_dict(cfg: Any, only_changed: bool = True) -> dict[str, Any]:
    """The config's fields as plain values: with ``only_changed``, those that differ from the class defaults
    plus every field the subclass adds. Hub tokens and other secrets are left out."""
    cls = type(cfg)
    mine = set(own_fields(cls))
    out: dict[str, Any] = {}
    for name, f in _init_fields(cls).items():
        if _SECRET.search(name):
            continue
        value = _plain(getattr(cfg, name))
        if only_changed and name not in mine and value == _plain(_default(f)):
            continue
        out[name] = value
    return out


def save_config(cfg: Any, path: str | Path, only_changed: bool = True) -> Path:
    """Write the resolved config as YAML that :func:`load_config` reads back; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cls = type(cfg)
    head = (
        f"# {cls.__module__}.{cls.__qualname__}, resolved"
        + ("; fields at their defaults are omitted" if only_changed else "")
        + "\n"
    )
    body = yaml.safe_dump(config_to_dict(cfg, only_changed), sort_keys=False, allow_unicode=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(head + body)
    tmp.replace(path)
    return path


def resolve_device(cfg: Any) -> None:
    """bf16 on a CUDA GPU that supports it, bf16 autocast on a CPU with native bf16 (AMX/AVX512-BF16), else float32.

    A GPU-only precision asked for without a GPU is an error.
    """
    import torch

    from recagent.agents.local_model import cpu_has_bf16

    cuda = torch.cuda.is_available()
    if cfg.bf16 is None:
        if cuda and not cfg.use_cpu:
            cfg.bf16 = not cfg.fp16 and torch.cuda.is_bf16_supported()
        else:  # measured: a full fine-tuning step of the 135M model takes half the time under CPU bf16 autocast
            cfg.bf16 = not cfg.fp16 and cpu_has_bf16()
            cfg.use_cpu = cfg.use_cpu or cfg.bf16  # Trainer: bf16 without CUDA is CPU autocast only with use_cpu
    if not cuda and not cfg.use_cpu:
        if cfg.bf16 or cfg.fp16:
            which = "bf16" if cfg.bf16 else "fp16"
            raise ConfigError(
                f"{which}=true needs a CUDA GPU and none is visible: set {which}=false to train in float32 on "
                "the CPU, or use_cpu=true to keep CPU autocast (fast only on CPUs with AMX/AVX512-BF16)"
            )
        cfg.use_cpu = True

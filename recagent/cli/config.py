"""``recagent config show JOB``: every config key of a job, with its type, default and help text.

A job is a command that takes ``--config FILE`` and ``-o KEY=VALUE``. Its keys are the fields of its config
class: a pydantic :class:`~recagent.config.JobConfig` (help: each ``Field``'s description; nested sections as
dotted keys, as ``-o`` takes them) or a TRL dataclass config (help: each field's ``metadata["help"]``; the keys
recagent adds first, then those of the library config it extends).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="Job configs: the keys --config files and -o overrides take.", no_args_is_help=True)
err_console = Console(stderr=True, soft_wrap=True)

# job (the command words) -> (module, config class); the module is imported only for the job shown
JOBS: dict[str, tuple[str, str]] = {
    "recs train": ("recagent.tools.recommenders.registry", "TrainJobConfig"),
    "chat": ("recagent.agents.config", "AgentConfig"),
    "recommend": ("recagent.agents.config", "AgentConfig"),
    "serve": ("recagent.serve.config", "ServeConfig"),
    "mcp": ("recagent.serve.mcp_server", "McpConfig"),
    "synth": ("recagent.synth.config", "SynthConfig"),
    "train sft": ("recagent.rl.sft", "SFTJobConfig"),
    "train rl": ("recagent.rl.train_rl", "RLJobConfig"),
    "train router": ("recagent.rl.train_router", "RouterJobConfig"),
    "eval": ("recagent.evaluation.config", "EvalConfig"),
}
_MISSING = object()
_MAX_CHOICES = 12  # an enum with more values is shown by its name


@dataclass(frozen=True)
class Key:
    """One config key as ``config show`` prints it."""

    name: str
    type: str
    default: str
    help: str


def _type_name(tp: Any) -> str:
    """A type as a reader writes it: ``int | None``, ``'local' | 'openai'``, ``list[str]``."""
    if tp is None or tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        if str in args and any(isinstance(a, type) and issubclass(a, enum.Enum) for a in args):
            args = tuple(a for a in args if a is not str)  # TrainingArguments' `Enum | str`: the enum says which
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]" if args else name
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [repr(m.value) for m in tp]
        return " | ".join(values) if len(values) <= _MAX_CHOICES else f"str (one of {tp.__name__})"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _default_text(value: Any) -> str:
    """A default as one would write it after ``-o KEY=`` (a YAML value)."""
    if value is _MISSING:
        return "(required)"
    text = yaml.safe_dump(_plain(value), default_flow_style=True, width=1_000_000, allow_unicode=True).strip()
    return text.removesuffix("\n...").strip()


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _section_of(tp: Any) -> type | None:
    """The pydantic model a field holds (alone or optional), if any: its keys are listed as ``field.key``."""
    from pydantic import BaseModel

    candidates = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    models = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def pydantic_keys(cls: type, prefix: str = "") -> list[Key]:
    """Every key of a pydantic config, nested sections as dotted keys after the section's own line."""
    from pydantic_core import PydanticUndefined

    keys: list[Key] = []
    for name, f in cls.model_fields.items():
        default = f.get_default(call_default_factory=True)
        section = _section_of(f.annotation)
        if section is not None and default is not None and default is not PydanticUndefined:
            keys.append(Key(prefix + name, f"{section.__name__} (section)", "", _one_line(f.description)))
        else:
            default = _MISSING if default is PydanticUndefined else default
            keys.append(Key(prefix + name, _type_name(f.annotation), _default_text(default), _one_line(f.description)))
        if section is not None:
            keys.extend(pydantic_keys(section, f"{prefix}{name}."))
    return keys


def dataclass_keys(cls: type) -> tuple[list[Key], list[Key], str]:
    """A TRL dataclass config's keys: (those recagent adds, those of the library config, that config's name)."""
    from recagent.rl.config_io import own_fields

    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    mine = own_fields(cls)
    base = next(
        (b for b in cls.__mro__[1:] if dataclasses.is_dataclass(b) and not b.__module__.startswith("recagent")), cls
    )

    def key(name: str) -> Key:
        f = fields[name]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = _MISSING
        return Key(name, _type_name(hints.get(name)), _default_text(default), _one_line(f.metadata.get("help")))

    return [key(n) for n in mine], [key(n) for n in fields if n not in mine], base.__qualname__


def job_groups(job: str) -> tuple[type, list[tuple[str | None, list[Key]]]]:
    """The config class of ``job`` and its keys in titled groups (the first untitled)."""
    module, name = JOBS[job]
    cls = getattr(importlib.import_module(module), name)
    if dataclasses.is_dataclass(cls):
        mine, theirs, base = dataclass_keys(cls)
        return cls, [("keys recagent adds", mine), (f"keys of {base} (TRL / transformers TrainingArguments)", theirs)]
    groups: list[tuple[str | None, list[Key]]] = [(None, pydantic_keys(cls))]
    if job == "recs train":  # `params` holds the chosen model's own config
        from recagent.tools.recommenders import MODELS

        for model, model_cls in MODELS.items():
            groups.append((f"params of {model} (model={model})", pydantic_keys(model_cls.config_cls, "params.")))
    return cls, groups


def _job_name(words: list[str]) -> str:
    return " ".join(" ".join(words).replace("-", " ").replace("_", " ").split()).lower()


@app.callback()
def _config() -> None:
    """Job configs: the keys --config files and -o overrides take."""


@app.command("show")
def show(
    job: list[str] = typer.Argument(..., metavar="JOB", help=f"one of: {', '.join(JOBS)}"),
) -> None:
    """Every config key of JOB with its type, default and help text (YAML for --config, KEY=VALUE for -o)."""
    name = _job_name(job)
    if name not in JOBS:
        message = f"unknown job {name!r}; known jobs: " + ", ".join(JOBS)
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        raise typer.Exit(2)
    cls, groups = job_groups(name)
    typer.echo(
        f"recagent {name}: {cls.__module__}.{cls.__qualname__}. A --config YAML file takes these keys "
        "(dotted ones as nested mappings); -o KEY=VALUE sets one (VALUE read as YAML)."
    )
    for title, keys in groups:
        if title:
            typer.echo(f"\n# {title}")
        for k in keys:
            typer.echo(f"{k.name}: {k.type}" + (f" = {k.default}" if k.default else ""))
            if k.help:
                typer.echo(f"    {k.help}")

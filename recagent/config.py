"""Job configs: pydantic models loadable from YAML and overridable with ``key=value`` strings.

Each job (training a recommender, building the tools, ...) has one config class that
subclasses :class:`JobConfig`. The resolved config is saved next to every artifact it made.

The two helpers every config kind shares live here, once:

- ``key=value`` overrides: :func:`parse_override` (dotted key, value parsed as a YAML scalar) and
  :func:`set_dotted` (``a.b=1`` sets key ``b`` of the mapping ``a``). :class:`JobConfig` uses them, and so
  does ``recagent.rl.config_io`` for the TRL dataclass configs.
- pydantic validation errors as one line: :func:`describe_validation_error` (``loc: msg; ...`` and the
  first location, i.e. the offending field) and :func:`format_validation_error` (``invalid config (SOURCE): ...``).
  Config errors, tool-argument errors and the held-out request file use them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from recagent.errors import ConfigError

_LOC_CHARS = 40  # a location step (an argument name, an unknown key) longer than this is clipped


def _loc_step(part: Any) -> str:
    """One step of an error location; an unknown key is echoed back, so a hostile one is clipped and escaped."""
    text = str(part)
    if len(text) <= _LOC_CHARS and text.isprintable():
        return text
    clipped = repr(text) if len(text) <= _LOC_CHARS else repr(text[:_LOC_CHARS]) + "..."
    # one printable line: whitespace collapsed, a lone surrogate escaped (it could not be encoded when printed)
    flat = " ".join(clipped.split()).encode("utf-8", "backslashreplace").decode("utf-8")
    return flat if len(flat) <= _LOC_CHARS + 10 else flat[: _LOC_CHARS + 7] + "..."


def describe_validation_error(
    err: ValidationError | Iterable[Mapping[str, Any]], drop: Collection[Any] = (), limit: int | None = None
) -> tuple[str, str | None]:
    """``"loc: msg; loc: msg"`` for a pydantic error, and the first location (the offending field) or None.

    ``err`` is a :class:`~pydantic.ValidationError` or the list of error dicts one gives (FastAPI's
    ``RequestValidationError.errors()`` too). Location steps in ``drop`` (e.g. FastAPI's ``"body"``) are left
    out, the ``Value error, `` prefix of validators' messages is removed (they are whole sentences), and at most
    ``limit`` problems are listed.
    """
    errors = err.errors() if hasattr(err, "errors") else err
    problems: list[str] = []
    first: str | None = None
    for e in errors:
        loc = ".".join(_loc_step(p) for p in e.get("loc", ()) if p not in drop)
        first = first or (loc or None)
        msg = " ".join(str(e.get("msg", "")).removeprefix("Value error, ").split())
        problems.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(problems[:limit]), first


def format_validation_error(err: ValidationError, source: str) -> str:
    """A config's validation error as one line: ``invalid config (SOURCE): loc: msg; ...``."""
    return f"invalid config ({source}): " + describe_validation_error(err)[0]


def parse_override(item: str) -> tuple[str, Any, str]:
    """``key=value`` -> (dotted key, value parsed as a YAML scalar, raw text after ``=``); one-line errors."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has no key")
    if "" in key.split("."):
        raise ConfigError(f"override {item!r}: the key {key!r} has an empty part")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key, value, raw


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` (``a.b.c``) in nested mappings, making the sections that are missing or None.

    A section held as JSON text (TrainingArguments' dict fields take that) is read as its mapping; each section
    on the way is copied, so a default shared with the config class is never changed in place.
    """
    *sections, last = key.split(".")
    node = data
    for depth, name in enumerate(sections):
        child = node.get(name)
        if child is None:
            child = {}
        elif isinstance(child, str):
            try:
                child = json.loads(child)
            except json.JSONDecodeError:
                pass
        if not isinstance(child, dict):
            where = ".".join(sections[: depth + 1])
            raise ConfigError(f"override {key!r}: {where!r} is not a mapping field; use {where}=VALUE")
        node[name] = child = dict(child)
        node = child
    node[last] = value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``data`` with each ``key=value`` override set in it (later wins); returns ``data``."""
    for item in overrides:
        key, value, _ = parse_override(item)
        set_dotted(data, key, value)
    return data


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file, or a one-line :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


class JobConfig(BaseModel):
    """Base of every job config: strict keys, YAML in and out, dotted CLI overrides."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def build(cls, **values: Any) -> Self:
        """Construct from keyword values, reporting problems as one :class:`ConfigError` line."""
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, cls.__name__)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        """Load a config from a YAML file."""
        data = read_yaml_mapping(path)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, str(path))) from None

    def with_overrides(self, overrides: list[str] | None) -> Self:
        """Return a copy with ``a.b=value`` overrides applied (values parsed as YAML scalars)."""
        if not overrides:
            return self
        data = apply_overrides(self.model_dump(), overrides)
        try:
            return type(self).model_validate(data)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, "overrides")) from None

    def to_yaml(self, path: str | Path) -> None:
        """Write the resolved config as YAML (saved next to every artifact)."""
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))

"""Job configs: pydantic models loadable from YAML and overridable with ``key=value`` strings.

Each job (training a recommender, building the tools, ...) has one config class that
subclasses :class:`JobConfig`. The resolved config is saved next to every artifact it made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from recagent.errors import ConfigError


def format_validation_error(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"invalid config ({source}): " + "; ".join(parts)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        nxt = cur.get(k)
        if nxt is None:
            nxt = cur[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
        cur = nxt
    cur[keys[-1]] = value


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
        data = self.model_dump()
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like key=value")
            key, raw = item.split("=", 1)
            try:
                value = yaml.safe_load(raw) if raw else ""
            except yaml.YAMLError:
                value = raw
            _set_dotted(data, key.strip(), value)
        try:
            return type(self).model_validate(data)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, "overrides")) from None

    def to_yaml(self, path: str | Path) -> None:
        """Write the resolved config as YAML (saved next to every artifact)."""
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))

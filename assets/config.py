"""Asset config classes generated from the dataclasses they configure: written once.

A curation stage's fields (or a settings dataclass's) are its configuration; the Dagster
config a person edits in the launchpad is derived from them here, with the same names,
defaults and help (`field(metadata={"help": ...})`), so following a setting from the UI to
the code that uses it is one step, and a new field appears in the UI without another edit.
JSON has no tuples: a tuple field is a list in the config and becomes a tuple again in
`build`; a tuple of (name, number) pairs, the form a mapping takes in a frozen dataclass,
is a mapping in the config.
"""

import collections.abc
import dataclasses
import functools
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from dagster import Config
from pydantic import Field, create_model

T = TypeVar("T")
FORCE_HELP = "re-run even when the output is up to date (same config, code and inputs)"


def _is_pairs(annotation: Any) -> bool:
    """tuple[tuple[str | int, <a number>], ...]: a mapping written as pairs."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is not tuple or len(args) != 2 or args[1] is not ...:
        return False
    key, value = (typing.get_args(args[0]) + (None, None))[:2]
    return typing.get_origin(args[0]) is tuple and key in (str, int) and value in (int, float)


def _sequence(annotation: Any) -> Any | None:
    """The item type of a tuple[X, ...] or Sequence[X] field, else None."""
    origin = typing.get_origin(annotation)
    if origin not in (tuple, list, collections.abc.Sequence):
        return None
    args = [a for a in typing.get_args(annotation) if a is not ...]
    return args[0] if len(set(args)) == 1 else typing.Union[tuple(args)]  # noqa: UP007


def _mapping(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (dict, collections.abc.Mapping)


def config_type(annotation: Any) -> Any:
    """The JSON-friendly type Dagster's config takes for a dataclass field's type: lists for
    sequences, dicts for mappings (and pairs), a generated config class for a dataclass."""
    if _is_pairs(annotation):
        key, value = typing.get_args(typing.get_args(annotation)[0])
        return dict[key, value]
    if (item := _sequence(annotation)) is not None:
        return list[config_type(item)]
    if _mapping(annotation):
        key, value = typing.get_args(annotation)
        return dict[key, config_type(value)]
    if dataclasses.is_dataclass(annotation):
        return nested_config(annotation)
    return annotation


@functools.cache
def nested_config(cls: type) -> type[Config]:
    """The one config class of a dataclass that is a field of another (a volume of a job)."""
    return config_class(f"{cls.__name__}Config", cls)


def config_value(value: Any) -> Any:
    """A dataclass default as its config default: tuples as lists, pairs as a mapping."""
    if isinstance(value, tuple):
        pairs = value and all(isinstance(v, tuple) and len(v) == 2 for v in value)
        if pairs and all(isinstance(k, str | int) and isinstance(x, int | float) for k, x in value):
            return dict(value)
        return [config_value(v) for v in value]
    if isinstance(value, collections.abc.Mapping):
        return {k: config_value(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return config_value(dataclasses.asdict(value))
    return value


def field_value(annotation: Any, value: Any) -> Any:
    """A config value back as the dataclass field's type."""
    if _is_pairs(annotation):
        return tuple(value.items())
    if (item := _sequence(annotation)) is not None:
        return tuple(field_value(item, v) for v in value)
    if _mapping(annotation):
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        fields = settings_fields(annotation)
        return annotation(**{k: field_value(fields[k][0], v) for k, v in value.items()})
    return value


def settings_fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    """The configurable fields of a dataclass: name -> (type, field). State fields a stage
    sets while running (`metadata={"config": False}`) are not configuration."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: (hints[f.name], f)
        for f in dataclasses.fields(cls)
        if f.metadata.get("config", True) and f.init
    }


def _default(f: dataclasses.Field) -> Any:
    """The field's default; `...` (required in the config too) when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...


def config_class(
    name: str,
    cls: type,
    exclude: Iterable[str] = (),
    preset: Mapping[str, Any] | None = None,
    extra: Mapping[str, tuple[Any, Any, str]] | None = None,
    doc: str | None = None,
) -> type[Config]:
    """The Dagster config class for dataclass `cls`: its fields minus `exclude`, defaults
    replaced by `preset`, plus `extra` run options (name -> (type, default, help))."""
    preset = dict(preset or {})
    fields: dict[str, Any] = {}
    for field_name, (annotation, f) in settings_fields(cls).items():
        if field_name in exclude:
            continue
        default = config_value(preset.get(field_name, _default(f)))
        help_text = f.metadata.get("help")
        fields[field_name] = (
            config_type(annotation),
            Field(default_factory=lambda d=default: _copy(d), description=help_text)
            if isinstance(default, list | dict)
            else Field(default=default, description=help_text),
        )
    for field_name, (annotation, default, help_text) in (extra or {}).items():
        fields[field_name] = (annotation, Field(default=default, description=help_text))
    model = create_model(name, __base__=Config, __module__=cls.__module__, **fields)
    model.__doc__ = doc or f"`{cls.__name__}`'s fields ({cls.__module__})."
    model.__settings__ = cls  # what it was generated from: tests/test_architecture.py
    return model


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def build(cls: type[T], config: Config, **values: Any) -> T:
    """An instance of `cls` from the config generated for it; `values` are fields the asset
    computes (paths, a partition, fingerprints) and win over the config's."""
    dumped = config.model_dump()
    kwargs = {
        name: field_value(annotation, dumped[name])
        for name, (annotation, _) in settings_fields(cls).items()
        if name in dumped
    }
    return cls(**{**kwargs, **values})

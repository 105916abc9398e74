"""The data converter of stageflow's clients and workers: Temporal's own payloads, read back into the dataclasses of
`workflows.types` with each dataclass's field types resolved once per process.

Temporal's JSON converter resolves a dataclass's type hints each time it builds one, and with postponed annotations
that evaluates every field's annotation again: a stage entry's plan, its rules' calls and their outcomes are
dataclasses inside dataclasses, built at every workflow task and activity. This converter builds them the same way
(fields by name, unknown keys ignored, a missing required field an error, `init=False` fields set afterwards, a value
of another type coerced or refused as Temporal's `value_to_type` does) from types resolved and taken apart once into
a reader per field, and writes them without the deep copy Temporal's encoder makes first. The payloads of
`workflows.types` are the same bytes Temporal writes (a set, which a deep copy may reorder, is no part of them), so
every history, worker and client stays interchangeable with one on the default converter.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from temporalio.converter import (
    AdvancedJSONEncoder,
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)


Reader = typing.Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _exact(hint: type) -> Reader:
    """A str, int, float or bool: the value as it is when it has that very type."""

    def read(value: Any) -> Any:
        return value if type(value) is hint else value_to_type(hint, value)

    return read


def _optional(inner: Reader) -> Reader:
    def read(value: Any) -> Any:
        return None if value is None else inner(value)

    return read


def _list(hint: Any, item: Reader) -> Reader:
    def read(value: Any) -> Any:
        if type(value) is not list:
            return value_to_type(hint, value, TYPE_CONVERTERS)
        if item is _same:
            return list(value)
        read_items = []
        for index, part in enumerate(value):
            try:
                read_items.append(item(part))
            except Exception as error:
                raise TypeError(f"Failed converting {hint} index {index}") from error
        return read_items

    return read


def _dict(hint: Any, item: Reader) -> Reader:
    """A mapping with text keys (a JSON object's keys always are)."""

    def read(value: Any) -> Any:
        if type(value) is not dict:
            return value_to_type(hint, value, TYPE_CONVERTERS)
        return dict(value) if item is _same else {key: item(part) for key, part in value.items()}

    return read


def _dataclass(cls: type) -> Reader:
    def read(value: Any) -> Any:
        return _build(cls, value)

    return read


@functools.cache
def _reader(hint: Any) -> Reader:
    """Reads a JSON value as `hint`, as Temporal's `value_to_type` does, with the hint taken apart once: the hints
    of `workflows.types` directly, any other through `value_to_type`."""
    if hint is Any:
        return _same
    if hint in (str, int, float, bool):
        return _exact(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and args[1] is type(None):
        return _optional(_reader(args[0]))
    if origin is list and len(args) == 1:
        return _list(hint, _reader(args[0]))
    if origin is dict and len(args) == 2 and args[0] is str:
        return _dict(hint, _reader(args[1]))
    return lambda value: value_to_type(hint, value, TYPE_CONVERTERS)


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Reader, bool], ...]:
    """Each field of the dataclass: its name, the reader of its resolved type, whether `__init__` takes it."""
    hints = typing.get_type_hints(cls)
    return tuple((field.name, _reader(hints[field.name]), field.init) for field in dataclasses.fields(cls))


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    """The dataclass's field names, in their order (their types unresolved)."""
    return tuple(field.name for field in dataclasses.fields(cls))


def _build(cls: type, value: Any) -> Any:
    """The dataclass from its JSON object: fields by name, unknown keys ignored, a missing required field an error,
    `init=False` fields set afterwards."""
    if not isinstance(value, dict):
        raise TypeError(f"Cannot convert to dataclass {cls}, value is {type(value)} not dict")
    given: dict[str, Any] = {}
    later: dict[str, Any] = {}
    for name, read, init in _fields(cls):
        if name not in value:
            continue
        try:
            converted = read(value[name])
        except Exception as error:
            raise TypeError(f"Failed converting field {name} on dataclass {cls}") from error
        (given if init else later)[name] = converted
    built = cls(**given)
    for name, converted in later.items():
        object.__setattr__(built, name, converted)
    return built


class DataclassConverter(JSONTypeConverter):
    """Builds a dataclass, or a list of them, from its JSON as Temporal's converter does, from field types resolved
    once."""

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return _build(hint, value)
        if typing.get_origin(hint) is list and type(value) is list:
            [item] = typing.get_args(hint) or (Any,)
            if isinstance(item, type) and dataclasses.is_dataclass(item):
                return _reader(hint)(value)
        return JSONTypeConverter.Unhandled


TYPE_CONVERTERS: list[JSONTypeConverter] = [DataclassConverter()]


class Encoder(AdvancedJSONEncoder):
    """Temporal's JSON encoder, which copies a dataclass deeply (`dataclasses.asdict`) before writing it; this one
    hands the encoder the dataclass's fields as they are, and it writes nested ones the same way: the same JSON."""

    def default(self, o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {name: getattr(o, name) for name in _names(type(o))}
        return super().default(o)


class PayloadConverter(CompositePayloadConverter):
    """Temporal's default payload converters, the JSON one writing dataclasses through `Encoder` and reading them
    through `DataclassConverter`."""

    def __init__(self) -> None:
        super().__init__(*(
            JSONPlainPayloadConverter(encoder=Encoder, custom_type_converters=TYPE_CONVERTERS)
            if isinstance(converter, JSONPlainPayloadConverter) else converter
            for converter in DefaultPayloadConverter.default_encoding_payload_converters
        ))


DATA_CONVERTER = dataclasses.replace(DataConverter.default, payload_converter_class=PayloadConverter)

"""The data converter of stageflow's clients and workers: Temporal's own payloads, read back into the dataclasses of
`workflows.types` with each dataclass's field types resolved once per process.

Temporal's JSON converter resolves a dataclass's type hints each time it builds one, and with postponed annotations
that evaluates every field's annotation again: a stage entry's plan, its rules' calls and their outcomes are
dataclasses inside dataclasses, built at every workflow task and activity. This converter builds them the same way
(fields by name, unknown keys ignored, a missing required field an error, `init=False` fields set afterwards) from
types resolved once, and writes them without the deep copy Temporal's encoder makes first. The payloads of
`workflows.types` are the same bytes Temporal writes (a set, which a deep copy may reorder, is no part of them), so
every history, worker and client stays interchangeable with one on the default converter.
"""

from __future__ import annotations

import dataclasses
import functools
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


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """Each field of the dataclass: its name, its resolved type, whether `__init__` takes it."""
    hints = typing.get_type_hints(cls)
    return tuple((field.name, hints[field.name], field.init) for field in dataclasses.fields(cls))


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    """The dataclass's field names, in their order (their types unresolved)."""
    return tuple(field.name for field in dataclasses.fields(cls))


class DataclassConverter(JSONTypeConverter):
    """Builds a dataclass from its JSON object as Temporal's converter does, from field types resolved once."""

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return JSONTypeConverter.Unhandled
        if not isinstance(value, dict):
            raise TypeError(f"Cannot convert to dataclass {hint}, value is {type(value)} not dict")
        given: dict[str, Any] = {}
        later: dict[str, Any] = {}
        for name, field_type, init in _fields(hint):
            if name not in value:
                continue
            try:
                converted = value_to_type(field_type, value[name], TYPE_CONVERTERS)
            except Exception as error:
                raise TypeError(f"Failed converting field {name} on dataclass {hint}") from error
            (given if init else later)[name] = converted
        built = hint(**given)
        for name, converted in later.items():
            object.__setattr__(built, name, converted)
        return built


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

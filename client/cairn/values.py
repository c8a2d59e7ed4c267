"""Python values <-> protobuf Struct, refusing anything that is not JSON-like."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2

from .errors import InvalidArgumentError

MAX_SAFE_INT = 2**53


def check_json_like(value: Any, path: str = "variables") -> None:
    """Raise InvalidArgumentError naming the first value that is not null/bool/number/string/list/map."""
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise InvalidArgumentError(f"{path}: integer {value} is beyond ±2**53 and would lose precision")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(f"{path}: {value} is not a JSON number")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(f"{path}: map key {key!r} is not a string")
            check_json_like(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_json_like(item, f"{path}[{i}]")
        return
    raise InvalidArgumentError(
        f"{path}: {type(value).__name__} is not JSON-like (use null, bool, number, string, list or map)"
    )


def to_struct(variables: Mapping[str, Any] | None) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    if variables:
        if not isinstance(variables, Mapping):
            raise InvalidArgumentError(f"variables must be a map, got {type(variables).__name__}")
        check_json_like(variables)
        struct.update(variables)
    return struct


def _restore_ints(value: Any) -> Any:
    """JSON has one number type; whole numbers come back as int, as JSON parsers do."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INT:
        return int(value)
    if isinstance(value, dict):
        return {k: _restore_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_ints(v) for v in value]
    return value


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    return _restore_ints(json_format.MessageToDict(struct))


def to_value(value: Any, path: str = "value") -> struct_pb2.Value:
    """Any JSON-like Python value as a protobuf Value (None is null)."""
    check_json_like(value, path)
    out = struct_pb2.Value()
    json_format.ParseDict(value, out)
    return out


def from_value(value: struct_pb2.Value) -> Any:
    """The Python value of a protobuf Value; an unset one is None."""
    if value.WhichOneof("kind") is None:
        return None
    return _restore_ints(json_format.MessageToDict(value))

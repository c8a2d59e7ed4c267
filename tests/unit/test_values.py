"""The SDK's JSON-like value conversion."""

from __future__ import annotations

import datetime
import math

import pytest

from cairn.errors import InvalidArgumentError
from cairn.values import from_struct, to_struct


def test_round_trip_keeps_json_values() -> None:
    value = {"amount": 12.5, "count": 3, "items": ["a", None, True, {"n": -1}], "empty": {}}
    assert from_struct(to_struct(value)) == value
    assert isinstance(from_struct(to_struct({"n": 3}))["n"], int)


@pytest.mark.parametrize(
    "bad, where",
    [
        ({"when": datetime.date(2020, 1, 1)}, "variables.when: date"),
        ({"s": {1, 2}}, "variables.s: set"),
        ({"b": b"bytes"}, "variables.b: bytes"),
        ({"x": [1, math.nan]}, r"variables.x\[1\]: nan"),
        ({"big": 2**60}, "variables.big: integer"),
        ({"m": {1: "non-string key"}}, "variables.m: map key 1"),
    ],
)
def test_non_json_values_are_refused_with_their_path(bad: dict, where: str) -> None:
    with pytest.raises(InvalidArgumentError, match=where):
        to_struct(bad)


def test_variables_must_be_a_map() -> None:
    with pytest.raises(InvalidArgumentError, match="must be a map"):
        to_struct(["not", "a", "map"])  # type: ignore[arg-type]

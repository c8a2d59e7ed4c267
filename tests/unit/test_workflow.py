"""Pure rules: checksum canonicalization and input validation."""

from __future__ import annotations

import json
import math

import pytest
from google.protobuf import json_format, struct_pb2
from hypothesis import given
from hypothesis import strategies as st

from cairn.v1 import state_pb2
from cairn_server import workflow
from cairn_server.errors import InvalidArgument

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def make_state(variables: dict, labels: dict | None = None, *, step: str = "s", version: int = 3):
    s = state_pb2.WorkflowState(workflow_id="wf-1", version=version, current_step=step)
    s.variables.update(variables)
    s.metadata.labels.update(labels or {})
    return s


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_checksum_ignores_dict_order(variables: dict) -> None:
    forward = make_state(variables)
    backward = make_state(dict(reversed(list(variables.items()))))
    assert workflow.checksum(forward) == workflow.checksum(backward)


def test_checksum_is_canonical_json_of_the_content() -> None:
    a = make_state({"b": 1, "a": [1, {"y": 2, "x": None}]}, {"team": "x"})
    b = make_state({"a": [1, {"x": None, "y": 2}], "b": 1}, {"team": "x"})
    assert workflow.checksum(a) == workflow.checksum(b)
    assert workflow.canonical_bytes(a) == (
        b'{"current_step":"s","labels":{"team":"x"},"variables":{"a":[1.0,{"x":null,"y":2.0}],"b":1.0},'
        b'"version":3,"workflow_id":"wf-1"}'
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda s: setattr(s, "version", 4),
        lambda s: setattr(s, "current_step", "t"),
        lambda s: s.variables.update({"b": 2}),
        lambda s: s.metadata.labels.update({"team": "y"}),
    ],
)
def test_checksum_changes_with_any_content(change) -> None:
    base = make_state({"b": 1}, {"team": "x"})
    other = make_state({"b": 1}, {"team": "x"})
    change(other)
    assert workflow.checksum(base) != workflow.checksum(other)


def test_checksum_ignores_metadata_outside_the_content() -> None:
    a, b = make_state({"k": "v"}), make_state({"k": "v"})
    b.metadata.updated_at.FromSeconds(123)
    b.metadata.size_bytes = 99
    assert workflow.checksum(a) == workflow.checksum(b)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("", "empty"),
        ("x" * 257, "257 bytes"),
        ("has space", "malformed"),
        ("-leading-dash", "malformed"),
        ("nul\x00byte", "malformed"),
        ("ümlaut", "malformed"),
    ],
)
def test_bad_workflow_ids_are_named(bad: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        workflow.validate_workflow_id(bad)


def test_good_workflow_ids() -> None:
    for good in ("order-42", "a", "x" * 256, "tenant/a:b@c+d=e_f.g"):
        workflow.validate_workflow_id(good)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_json_numbers_are_refused(number: float) -> None:
    s = struct_pb2.Struct()
    s.fields["deep"].list_value.values.add().number_value = number
    with pytest.raises(InvalidArgument, match=r"variables\.deep\[0\]"):
        workflow.validate_variables(s)


def test_value_without_kind_is_refused() -> None:
    s = struct_pb2.Struct()
    s.fields["empty"].Clear()
    s.fields["empty"]  # noqa: B018 - creates an unset Value
    with pytest.raises(InvalidArgument, match="no kind"):
        workflow.validate_variables(s)


def test_absurd_nesting_is_refused() -> None:
    s = struct_pb2.Struct()
    node = s
    for _ in range(70):
        node = node.fields["n"].struct_value
    with pytest.raises(InvalidArgument, match="nested deeper"):
        workflow.validate_variables(s)


def test_labels_and_steps_and_versions() -> None:
    with pytest.raises(InvalidArgument, match="labels: key"):
        workflow.validate_labels({"bad key": "v"})
    with pytest.raises(InvalidArgument, match="at most 64"):
        workflow.validate_labels({f"k{i}": "v" for i in range(65)})
    with pytest.raises(InvalidArgument, match="current_step"):
        workflow.validate_step("x" * 300)
    with pytest.raises(InvalidArgument, match="absurd"):
        workflow.validate_expected_version(True, 2**60)
    with pytest.raises(InvalidArgument, match="request_id"):
        workflow.validate_request_id("has space")
    workflow.validate_expected_version(False, 2**60)  # not set: ignored


def test_changed_keys() -> None:
    old, new = struct_pb2.Struct(), struct_pb2.Struct()
    old.update({"same": 1, "changed": 1, "removed": 1})
    new.update({"same": 1, "changed": 2, "added": 1})
    assert workflow.changed_keys(old, new) == ["added", "changed", "removed"]
    assert workflow.changed_keys(None, new) == ["added", "changed", "same"]


def test_body_hash_ignores_only_the_request_id() -> None:
    a = state_pb2.PersistStateRequest(workflow_id="w", current_step="s", request_id="r1")
    b = state_pb2.PersistStateRequest(workflow_id="w", current_step="s", request_id="r2")
    c = state_pb2.PersistStateRequest(workflow_id="w", current_step="t", request_id="r1")
    assert workflow.body_hash("PersistState", a) == workflow.body_hash("PersistState", b)
    assert workflow.body_hash("PersistState", a) != workflow.body_hash("PersistState", c)
    assert workflow.body_hash("PersistState", a) != workflow.body_hash("DeleteWorkflow", a)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=6), _json_values, max_size=6))
def test_variables_to_python_is_exactly_message_to_dict(variables: dict) -> None:
    """The checksum's canonical form must never change: the hand-written conversion equals json_format's."""
    message = struct_pb2.Struct()
    message.update(variables)
    assert workflow.variables_to_python(message) == json_format.MessageToDict(message)
    state = state_pb2.WorkflowState(workflow_id="w", version=3)
    state.variables.CopyFrom(message)
    expected = json.dumps(
        {
            "workflow_id": "w",
            "version": 3,
            "current_step": "",
            "variables": json_format.MessageToDict(message),
            "labels": {},
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode()
    assert workflow.canonical_bytes(state) == expected

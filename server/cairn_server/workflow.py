"""Pure workflow rules: input validation, canonical encoding, checksums and diffs. No I/O.

The checksum is SHA-256 over a canonical JSON encoding of the state's content
(workflow_id, version, current_step, variables, labels, and for a workflow run its run fields in
protobuf's JSON mapping with proto field names): keys sorted, no white space, UTF-8, numbers as
JSON doubles. Dict order never changes it, and any language can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from typing import Any

from google.protobuf import json_format, struct_pb2

from cairn.v1 import state_pb2

from .errors import InvalidArgument

MAX_ID_BYTES = 256
MAX_STEP_BYTES = 256
MAX_LABELS = 64
MAX_LABEL_KEY_BYTES = 63
MAX_LABEL_VALUE_BYTES = 256
MAX_REQUEST_ID_BYTES = 128
MAX_VERSION = 2**53
MAX_DEPTH = 64

_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:/@+=-]*$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")
_REQUEST_ID = re.compile(r"^[\x21-\x7e]+$")


def validate_workflow_id(workflow_id: str, field: str = "workflow_id") -> None:
    if not workflow_id:
        raise InvalidArgument(f"{field} is empty")
    if len(workflow_id.encode()) > MAX_ID_BYTES:
        raise InvalidArgument(f"{field} is {len(workflow_id.encode())} bytes; the limit is {MAX_ID_BYTES}")
    if not _ID.match(workflow_id):
        raise InvalidArgument(
            f"{field} {workflow_id[:64]!r} is malformed: use letters, digits and ._:/@+=- , "
            "starting with a letter, digit or underscore"
        )


def new_checkpoint_id(now_ns: int) -> str:
    """Time-ordered, so that a workflow's checkpoints list oldest first in key order."""
    return f"cp-{now_ns:016x}{secrets.token_hex(4)}"


def validate_checkpoint_id(checkpoint_id: str) -> None:
    validate_workflow_id(checkpoint_id, "checkpoint_id")


def validate_request_id(request_id: str) -> None:
    if len(request_id.encode()) > MAX_REQUEST_ID_BYTES:
        raise InvalidArgument(f"request_id is over {MAX_REQUEST_ID_BYTES} bytes")
    if request_id and not _REQUEST_ID.match(request_id):
        raise InvalidArgument("request_id must be printable ASCII without spaces")


def validate_expected_version(has: bool, value: int) -> None:
    if has and value > MAX_VERSION:
        raise InvalidArgument(f"expected_version {value} is absurd: versions never exceed {MAX_VERSION}")


def validate_step(step: str, field: str = "current_step") -> None:
    if len(step.encode()) > MAX_STEP_BYTES:
        raise InvalidArgument(f"{field} is {len(step.encode())} bytes; the limit is {MAX_STEP_BYTES}")
    if any(ord(c) < 0x20 for c in step):
        raise InvalidArgument(f"{field} contains control characters")


def validate_labels(labels: dict[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"labels: {len(labels)} given; at most {MAX_LABELS}")
    for key, value in labels.items():
        if len(key.encode()) > MAX_LABEL_KEY_BYTES or not _LABEL_KEY.match(key):
            raise InvalidArgument(
                f"labels: key {key[:80]!r} is malformed (letters, digits, ._/-, at most {MAX_LABEL_KEY_BYTES} bytes)"
            )
        if len(value.encode()) > MAX_LABEL_VALUE_BYTES:
            raise InvalidArgument(f"labels: value of {key!r} is over {MAX_LABEL_VALUE_BYTES} bytes")


def validate_variables(variables: struct_pb2.Struct) -> None:
    """Struct already restricts types to JSON's; what remains is NaN/Infinity and absurd nesting."""
    _check_value_struct(variables, "variables", 0)


def validate_json_value(value: struct_pb2.Value, field: str) -> None:
    """A google.protobuf.Value that is JSON-like (an unset Value means null)."""
    if value.WhichOneof("kind") is None:
        return
    _check_value(value, field, 0)


def validate_workflow_type(workflow_type: str) -> None:
    validate_workflow_id(workflow_type, "workflow_type")


def _check_value_struct(struct: struct_pb2.Struct, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{path}: nested deeper than {MAX_DEPTH} levels")
    for key, value in struct.fields.items():
        _check_value(value, f"{path}.{key}", depth + 1)


def _check_value(value: struct_pb2.Value, path: str, depth: int) -> None:
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(f"{path}: value has no kind set (not JSON-like)")
    if kind == "number_value" and not math.isfinite(value.number_value):
        raise InvalidArgument(f"{path}: {value.number_value} is not a JSON number")
    if kind == "struct_value":
        _check_value_struct(value.struct_value, path, depth)
    elif kind == "list_value":
        if depth > MAX_DEPTH:
            raise InvalidArgument(f"{path}: nested deeper than {MAX_DEPTH} levels")
        for i, item in enumerate(value.list_value.values):
            _check_value(item, f"{path}[{i}]", depth + 1)


def variables_to_python(variables: struct_pb2.Struct) -> dict[str, Any]:
    """What `json_format.MessageToDict` gives for a Struct (numbers as floats), at a third of its cost: every
    replica runs this for each write's checksum."""
    return {key: _value_to_python(value) for key, value in variables.fields.items()}


def _value_to_python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if math.isinf(number) or math.isnan(number):
            raise ValueError(f"{number} is not a JSON number")
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return variables_to_python(value.struct_value)
    if kind == "list_value":
        return [_value_to_python(item) for item in value.list_value.values]
    return None  # null_value, or unset


def canonical_bytes(state: state_pb2.WorkflowState) -> bytes:
    body = {
        "workflow_id": state.workflow_id,
        "version": state.version,
        "current_step": state.current_step,
        "variables": variables_to_python(state.variables),
        "labels": dict(state.metadata.labels),
    }
    if state.HasField("run"):
        body["run"] = json_format.MessageToDict(state.run, preserving_proto_field_name=True)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def checksum(state: state_pb2.WorkflowState) -> str:
    return hashlib.sha256(canonical_bytes(state)).hexdigest()


def changed_keys(old: struct_pb2.Struct | None, new: struct_pb2.Struct) -> list[str]:
    """Top-level variable keys added, removed or changed."""
    before = old.fields if old is not None else {}
    after = new.fields
    keys = set(before) | set(after)
    return sorted(k for k in keys if k not in before or k not in after or before[k] != after[k])


def body_hash(method: str, request: Any) -> bytes:
    """What makes two requests "the same" for dedup: the method and every field but request_id."""
    copy = type(request)()
    copy.CopyFrom(request)
    if copy.DESCRIPTOR.fields_by_name.get("request_id") is not None:
        copy.ClearField("request_id")
    return hashlib.sha256(method.encode() + b"\x00" + copy.SerializeToString(deterministic=True)).digest()

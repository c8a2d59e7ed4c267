"""One error type per failure a caller can act on; rpc/status.py maps each to a gRPC code."""

from __future__ import annotations

import grpc


class CairnError(Exception):
    """Base for every failure the API reports; `code` is the gRPC status it becomes."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(
        self, message: str, *, current_version: int | None = None, leader: str | None = None, reason: str = ""
    ):
        super().__init__(message)
        self.message = message
        self.current_version = current_version
        self.leader = leader
        self.reason = reason


class InvalidArgument(CairnError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CairnError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CairnError):
    code = grpc.StatusCode.ALREADY_EXISTS


class VersionConflict(CairnError):
    """expected_version did not match: nothing was written; current_version says what is there."""

    code = grpc.StatusCode.ABORTED


class FailedPrecondition(CairnError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(CairnError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DataLoss(CairnError):
    code = grpc.StatusCode.DATA_LOSS


class Unavailable(CairnError):
    """No leader, lost quorum, or an outcome this node cannot know; retry (same request id)."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(CairnError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(CairnError):
    """No identity, or a bad one (token revoked or expired, a forged forwarding claim)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(CairnError):
    """The caller is known but no role grants the operation on this workflow."""

    code = grpc.StatusCode.PERMISSION_DENIED


def quoted(value: str, limit: int = 64) -> str:
    """A caller's value as it may appear in an error message: quoted and cut (a status message travels in
    HTTP/2 headers, and an over-long one turns the real code into RESOURCE_EXHAUSTED)."""
    return repr(value[:limit]) + ("…" if len(value) > limit else "")


_BY_CODE = {
    cls.code.value[0]: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        VersionConflict,
        FailedPrecondition,
        ResourceExhausted,
        DataLoss,
        Unavailable,
        DeadlineExceeded,
        Unauthenticated,
        PermissionDenied,
    )
}


def error_for_code(code: int, message: str, *, current_version: int | None = None, reason: str = "") -> CairnError:
    """Rebuild the error a recorded apply result stands for (google.rpc.Code numbering)."""
    cls = _BY_CODE.get(code, CairnError)
    return cls(message, current_version=current_version, reason=reason)

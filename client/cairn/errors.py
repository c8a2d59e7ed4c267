"""Typed errors: what a caller can act on, never a raw grpc.RpcError."""

from __future__ import annotations

import grpc

from .wire import CURRENT_VERSION_KEY, LEADER_KEY, REASON_KEY, REASON_LEASE_LOST


class CairnError(Exception):
    """Base of every SDK error; `code` is the gRPC status name."""

    code = "UNKNOWN"

    def __init__(self, message: str, *, leader: str | None = None):
        super().__init__(message)
        self.message = message
        self.leader = leader

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgumentError(CairnError):
    code = "INVALID_ARGUMENT"


class NotFoundError(CairnError):
    code = "NOT_FOUND"


class ConflictError(CairnError):
    """expected_version did not match; nothing was written. `current_version` is what is stored."""

    code = "ABORTED"

    def __init__(self, message: str, *, current_version: int, leader: str | None = None):
        super().__init__(message, leader=leader)
        self.current_version = current_version


class FailedPreconditionError(CairnError):
    code = "FAILED_PRECONDITION"


class AlreadyExistsError(CairnError):
    """The thing to create exists already (a workflow start on a taken id); nothing was changed."""

    code = "ALREADY_EXISTS"


class LeaseLostError(FailedPreconditionError):
    """A worker's write was refused because its lease on the run is gone (expired, cancelled, superseded
    by a newer fencing token). Nothing was written; stop working on the run."""


class ResourceExhaustedError(CairnError):
    code = "RESOURCE_EXHAUSTED"


class DataLossError(CairnError):
    code = "DATA_LOSS"


class UnavailableError(CairnError):
    """No node could serve the call in time. For a write, its outcome is unknown: retrying with the
    same request_id is safe and returns the first result if it did happen."""

    code = "UNAVAILABLE"


class DeadlineExceededError(CairnError):
    """The call's deadline passed. For a write, the outcome is unknown (see UnavailableError)."""

    code = "DEADLINE_EXCEEDED"


class PermissionDeniedError(CairnError):
    code = "PERMISSION_DENIED"


class UnauthenticatedError(CairnError):
    code = "UNAUTHENTICATED"


class InternalError(CairnError):
    code = "INTERNAL"


_BY_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}


_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


def status_code(value: int) -> grpc.StatusCode:
    """The gRPC status for its number (as a stream's StreamError carries it); UNKNOWN for one gRPC lacks."""
    return _BY_NUMBER.get(value, grpc.StatusCode.UNKNOWN)


def from_rpc_error(err: grpc.RpcError) -> CairnError:
    metadata = dict(err.trailing_metadata() or ())
    version = metadata.get(CURRENT_VERSION_KEY)
    return error_for(
        err.code(),
        err.details() or err.code().name,
        leader=metadata.get(LEADER_KEY),
        current_version=int(version) if version is not None else None,
        reason=metadata.get(REASON_KEY, ""),
    )


def error_for(
    code: grpc.StatusCode,
    details: str,
    *,
    leader: str | None = None,
    current_version: int | None = None,
    reason: str = "",
) -> CairnError:
    """The error for a status (a call's, or one answer of a stream) with its trailing values."""
    if code == grpc.StatusCode.ABORTED:
        return ConflictError(details, current_version=current_version or 0, leader=leader)
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason == REASON_LEASE_LOST:
        return LeaseLostError(details, leader=leader)
    return _BY_STATUS.get(code, InternalError)(details, leader=leader)

"""Cairn's Python SDK: `from cairn import Client`.

Importing it never imports the server (cairn_server); the generated gRPC stubs live in
`cairn.v1` (public API) and `cairn.internal` (node-to-node, not for clients).
"""

from .client import DEFAULT_ENDPOINTS, Client
from .errors import (
    CairnError,
    ConflictError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from .types import (
    Checkpoint,
    ClusterStatus,
    DeleteResult,
    NodeStatus,
    StateChange,
    SyncResult,
    ValidationResult,
    WorkflowState,
    WorkflowSummary,
)

__all__ = [
    "DEFAULT_ENDPOINTS",
    "CairnError",
    "Checkpoint",
    "Client",
    "ClusterStatus",
    "ConflictError",
    "DataLossError",
    "DeadlineExceededError",
    "DeleteResult",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NodeStatus",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "StateChange",
    "SyncResult",
    "UnauthenticatedError",
    "UnavailableError",
    "ValidationResult",
    "WorkflowState",
    "WorkflowSummary",
]

"""Cairn's Python SDK: `from cairn import Client`.

Importing it never imports the server (cairn_server); the generated gRPC stubs live in
`cairn.v1` (the public API). The node's internal protos (log entries, snapshots, node-to-node
RPCs) are generated into `cairn_server.internal` and never reach the SDK.
"""

from .client import DEFAULT_ENDPOINTS, Client, tls_credentials
from .errors import (
    AlreadyExistsError,
    CairnError,
    ConflictError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    LeaseLostError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from .types import (
    Checkpoint,
    ClusterStatus,
    DataKey,
    DeleteResult,
    KeyStatus,
    Lease,
    NodeStatus,
    RunSummary,
    StateChange,
    StepResult,
    SyncResult,
    ValidationResult,
    WorkflowRun,
    WorkflowState,
    WorkflowSummary,
)
from .worker import Context, NonRetryableError, StepResultError, Worker, WorkflowDefinition, workflow

__all__ = [
    "DEFAULT_ENDPOINTS",
    "AlreadyExistsError",
    "CairnError",
    "Context",
    "Lease",
    "LeaseLostError",
    "NonRetryableError",
    "RunSummary",
    "StepResult",
    "StepResultError",
    "Worker",
    "WorkflowDefinition",
    "WorkflowRun",
    "workflow",
    "tls_credentials",
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
    "KeyStatus",
    "DataKey",
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

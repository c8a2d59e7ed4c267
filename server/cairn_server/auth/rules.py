"""Which operation each RPC needs, and on which workflow: one table, checked by the interceptor.

Every method of every service the node serves must be here (a test walks the descriptors); a method
missing from the table is refused, so a new RPC cannot slip out open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .model import ADMIN, CHECKPOINT, READ, RECOVER, WORK, WRITE

OPEN = "open"  # no identity needed (health checks, reflection)
ANY = "any"  # any authenticated identity
SOMEWHERE = "somewhere"  # the operation on some namespace; the handler narrows (filtered lists, polls)
NODE = "node"  # a cluster member vouching for itself (peer calls)


@dataclass(frozen=True)
class Rule:
    operation: str  # an operation from model.OPERATIONS, or OPEN / ANY / NODE
    workflow_ids: Callable[[Any], list[str]] | None = None  # None: cluster-wide (the operation on every workflow)
    scope: str = ""  # SOMEWHERE: the handler filters what the caller sees


def _wid(request: Any) -> list[str]:
    return [request.workflow_id]


def _leases(request: Any) -> list[str]:
    return [lease.workflow_id for lease in request.leases]


S, W, C = "/cairn.v1.StateService/", "/cairn.v1.WorkflowService/", "/cairn.v1.ClusterService/"
A, U = "/cairn.v1.AuthService/", "/cairn.v1.AuditService/"

RULES: dict[str, Rule] = {
    S + "PersistState": Rule(WRITE, _wid),
    S + "PersistStream": Rule(WRITE, scope=SOMEWHERE),
    S + "GetState": Rule(READ, _wid),
    S + "DeleteWorkflow": Rule(WRITE, _wid),
    S + "ListWorkflows": Rule(READ, scope=SOMEWHERE),
    S + "CreateCheckpoint": Rule(CHECKPOINT, _wid),
    S + "ListCheckpoints": Rule(READ, _wid),
    S + "GetCheckpoint": Rule(READ, _wid),
    S + "RecoverFromCheckpoint": Rule(RECOVER, _wid),
    S + "SynchronizeState": Rule(READ, _wid),
    S + "ValidateState": Rule(READ, _wid),
    W + "StartWorkflow": Rule(WRITE, _wid),
    W + "GetWorkflow": Rule(READ, _wid),
    W + "ListWorkflowRuns": Rule(READ, scope=SOMEWHERE),
    W + "CancelWorkflow": Rule(WRITE, _wid),
    W + "ReleaseWorkflow": Rule(WRITE, _wid),
    W + "PollWork": Rule(WORK, scope=SOMEWHERE),
    W + "Heartbeat": Rule(WORK, _leases),
    W + "RecordStep": Rule(WORK, _wid),
    W + "CompleteWorkflow": Rule(WORK, _wid),
    W + "FailWorkflow": Rule(WORK, _wid),
    C + "Status": Rule(OPEN),  # roles, terms and indexes, no workflow data: probes and tools need it
    C + "Snapshot": Rule(ADMIN),
    C + "TransferLeadership": Rule(ADMIN),
    C + "RotateKeys": Rule(ADMIN),
    C + "KeyStatus": Rule(ADMIN),
    A + "PutRole": Rule(ADMIN),
    A + "DeleteRole": Rule(ADMIN),
    A + "ListRoles": Rule(ADMIN),
    A + "Bind": Rule(ADMIN),
    A + "Unbind": Rule(ADMIN),
    A + "ListBindings": Rule(ADMIN),
    A + "CreateToken": Rule(ADMIN),
    A + "RevokeToken": Rule(ADMIN),
    A + "ListTokens": Rule(ADMIN),
    A + "WhoAmI": Rule(ANY),
    U + "ListAudit": Rule(ADMIN),
    U + "ExportAudit": Rule(ADMIN),
    U + "VerifyAudit": Rule(ADMIN),
    "/cairn.internal.NodeService/WorkflowDigest": Rule(NODE),
    "/grpc.health.v1.Health/Check": Rule(OPEN),
    "/grpc.health.v1.Health/Watch": Rule(OPEN),
    "/grpc.health.v1.Health/List": Rule(OPEN),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Rule(OPEN),
}

"""API fuzzing against a real cluster: hypothesis-drawn requests for every RPC a node serves.

Why: the security issue asks that no request, however malformed and whoever sends it, crashes a node,
leaks memory, changes state that no valid request asked to change, or is answered with an imprecise
status (UNKNOWN, INTERNAL, an UNIMPLEMENTED for a method the node serves, an error without a message).

What is sent (each call to a random node, with a random `Caller` and a short deadline):
- structured: a request message drawn from the method's protobuf DESCRIPTOR (edge integers, empty/long/
  unicode/NUL strings, unknown enum numbers, nested messages, repeated and map fields, JSON-like
  Struct/Value, out-of-range Timestamps); id-like fields are drawn mostly from small pools ("fz/a", ...)
  so that requests hit workflows, checkpoints, runs, roles and tokens that exist;
- raw: bytes on the wire through an identity serializer: random bytes, truncated/garbled encodings of
  valid messages, hand-made wire-format tokens (overlong varints, bad lengths, bad wire types, groups,
  invalid UTF-8) and values nested past protobuf's recursion limit;
- streams with a few messages (PersistStream, ServerReflectionInfo) or read with a limit (ExportAudit,
  Health/Watch), and a few calls to methods no node serves (those must be UNIMPLEMENTED);
- at the end, a fixed edge pass: a handful of byte strings and all-min/all-max messages to every method.

What is checked: every status is one of ALLOWED_CODES with a non-empty message that reached the client
(not one so long that gRPC's metadata limit replaced it by RESOURCE_EXHAUSTED), every reply parses as the
method's response (PersistStream: in request order, each error a precise code); no node process exits and
each still answers Status; each node's VmRSS grows by at most a bound between a warm-up slice and the
end; every workflow, role, binding and token in the cluster was named by a write that returned OK or an
ambiguous UNAVAILABLE / DEADLINE_EXCEEDED from a caller access control should let make it (a write refused,
or one its caller may not make, never counts), and sentinels that no request names are unchanged; every node
holds the same workflows and versions, ValidateState finds each one valid, and every audit chain verifies.

A violation raised inside a hypothesis example is shrunk by hypothesis to a minimal batch (each violation
kind is its own exception type, so distinct bugs are shrunk separately); the run then goes on with that
kind recorded, so one bug does not hide the next. `python -m tests.fuzz_api --requests 100000` runs the
whole thing on a cluster of its own (`--profile secure` for TLS and auth); tests/integration/test_fuzz.py
runs a shorter budget of each profile in CI.

Authentication: `Caller` modes (none, malformed headers, an unknown token, near misses of real secrets,
forged forwarding claims, valid tokens) are data; a `Profile` holds the cluster's configuration, the callers
and how to get the valid ones. PROFILES:
- "plain": auth disabled (the default), so a bad credential is treated as anonymous;
- "secure": start_cluster(secure=True) (TLS, auth, encryption at rest) with tls.client_auth none and a
  bootstrap token file, so that callers without a certificate reach the RPC layer over TLS and are whoever
  their authorization header makes them. Valid callers: the admin (the bootstrap token), an identity whose
  only role grants read and write on "fz/a" and one with no role (tokens the admin creates at setup). Each
  authenticated caller has an `Access` (what it should be allowed, from rules.RULES and its grants), and the
  checks add: no unauthenticated caller gets an answer from a method that needs an identity (and its
  refusal is UNAUTHENTICATED); no authenticated caller gets an answer its Access does not allow (the narrow
  identity writes only workflows under "fz/a", the one without a role nothing), nor is refused one it
  allows; lists and polls show it only workflows it may see; WhoAmI names it; and every record in the audit
  log is one its identity may have made (the admin's, the cluster's own, the narrow identity's in its
  namespace), which covers the pooled workflows that the write bookkeeping lets the fuzz change.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import itertools
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from cairn.v1 import audit_pb2, auth_pb2, cluster_pb2, state_pb2, workflow_pb2
from cairn_server import certs
from cairn_server.auth import identity as server_identity
from cairn_server.auth import model as auth_model
from cairn_server.auth import rules as auth_rules
from cairn_server.internal import command_pb2
from tests.support import ClusterHandle, start_cluster, wait_until

FD = pb_descriptor.FieldDescriptor
Code = grpc.StatusCode

# ---- what a reply may say ------------------------------------------------------------------------------

#: Every status a served method may answer with: each names what went wrong precisely enough to act on.
ALLOWED_CODES: frozenset[str] = frozenset(
    c.name
    for c in (
        Code.OK,
        Code.INVALID_ARGUMENT,
        Code.NOT_FOUND,
        Code.ALREADY_EXISTS,
        Code.ABORTED,
        Code.FAILED_PRECONDITION,
        Code.OUT_OF_RANGE,
        Code.RESOURCE_EXHAUSTED,
        Code.UNAVAILABLE,
        Code.DEADLINE_EXCEEDED,
        Code.UNAUTHENTICATED,
        Code.PERMISSION_DENIED,
        Code.DATA_LOSS,
    )
)
#: The same set as google.rpc.Code numbers (PersistStream answers carry the number of a failed request).
ALLOWED_NUMBERS: frozenset[int] = frozenset(Code[name].value[0] for name in ALLOWED_CODES)
#: A write that ended like this may or may not have been applied.
AMBIGUOUS: frozenset[str] = frozenset({Code.UNAVAILABLE.name, Code.DEADLINE_EXCEEDED.name})
AMBIGUOUS_NUMBERS: frozenset[int] = frozenset(Code[name].value[0] for name in AMBIGUOUS)
#: Access control said no: the request was not carried out.
REFUSED: frozenset[str] = frozenset({Code.UNAUTHENTICATED.name, Code.PERMISSION_DENIED.name})
#: What the client's transport says when the server's status (its message, in the trailers) is over gRPC's
#: 16 KiB metadata limit: the call then ends RESOURCE_EXHAUSTED, and the server's own code is lost.
TRAILERS_TOO_LARGE = "received metadata size exceeds"
#: The only precise answer for a method that no node serves.
UNSERVED_CODES: frozenset[str] = frozenset({Code.UNIMPLEMENTED.name})

# ---- the pools the id-like fields are drawn from -------------------------------------------------------

WORKFLOW_IDS = ("fz/a", "fz/b", "fz/c")
REQUEST_IDS = ("fz-r1", "fz-r2", "fz-r3")
WORKFLOW_TYPES = ("fz-type",)
ROLES = ("fz-role", "fz-role2")
IDENTITIES = ("fz-user", "fz-user2")
STEPS = ("s1", "charge")
# Never in a pool: a change to one of these is a change nobody asked for.
SENTINEL_WORKFLOW = "fz-sentinel/state"
SENTINEL_RUN = "fz-sentinel/run"
SENTINEL_TYPE = "fz-sentinel-type"
SENTINEL_ROLE = "fz-sentinel-role"
SENTINEL_USER = "fz-sentinel-user"
SENTINEL_NARROW = "fz/a/sentinel"  # inside the narrow identity's namespace (secure profile), named by no request
SENTINELS = (SENTINEL_WORKFLOW, SENTINEL_RUN, SENTINEL_NARROW)
ADMIN_IDENTITY = "fz-admin"  # the valid caller's identity (the bootstrap admin once auth is on)
VICTIM_IDENTITY = "fz-user"  # owns a token whose id is in the pool, for RevokeToken to hit

MiB = 1024 * 1024
UNSERVED_PATHS = (
    "/cairn.v1.StateService/Nope",
    "/cairn.v1.Nope/GetState",
    "/cairn.internal.NodeService/Apply",
    "/grpc.health.v1.Health/Nope",
    "/x",
    "/",
)

# ---- callers and profiles --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """What an authenticated caller should be allowed, with auth on (the checks hold the cluster to it): the
    bootstrap admin everything but the node-only methods; anyone else its roles' operations on one namespace
    (a workflow-id prefix), which is nothing for an identity without a role. Mirrors model.Grant."""

    identity: str
    admin: bool = False
    roles: tuple[str, ...] = ()  # a fuzzed write that names one of these (or the identity) makes this stale
    operations: frozenset[str] = frozenset()
    namespace: str = ""

    def allows(self, operation: str, workflow_id: str) -> bool:
        """`operation` on this workflow ("": on the whole cluster)."""
        return self.admin or (self._granted(operation) and workflow_id.startswith(self.namespace))

    def somewhere(self, operation: str) -> bool:
        return self.admin or self._granted(operation)

    def _granted(self, operation: str) -> bool:
        return operation in self.operations or auth_model.ADMIN in self.operations


@dataclass(frozen=True)
class Caller:
    """Who a fuzz call claims to be: its metadata and (for TLS with a client certificate) its channel credentials.

    `authenticated`: whether the cluster should accept it as someone; with auth enabled, a caller that is not
    may never get an answer from a method that needs an identity. `access`: what an authenticated caller may
    do (None: not modelled; auth off, or a caller whose rights the checks do not judge). `weight`: its share
    of the draws."""

    name: str
    metadata: tuple[tuple[str, str | bytes], ...] = field(default=(), repr=False)
    channel_credentials: grpc.ChannelCredentials | None = field(default=None, compare=False, repr=False)
    authenticated: bool = False
    access: Access | None = field(default=None, repr=False)
    weight: int = 1


# The token id a forwarded claim names for the bootstrap token (identity.BOOTSTRAP where the server has it).
BOOTSTRAP_TOKEN_ID = getattr(server_identity, "BOOTSTRAP", "bootstrap")
UNKNOWN_TOKEN = "cairn.0011223344556677." + base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")


def forged_claim(
    identity: str, source: str = "token", mac: str = "00" * 32, token_id: str = ""
) -> tuple[tuple[str, str | bytes], ...]:
    """The metadata a node adds when it forwards a caller's request, with a MAC no cluster made (values of
    binary `-bin` keys as bytes; the token key only where the server's claims carry one)."""
    token_key = getattr(server_identity, "CALLER_TOKEN_KEY", None)
    pairs = [
        (server_identity.CALLER_KEY, identity),
        (server_identity.CALLER_SOURCE_KEY, source),
        *([(token_key, token_id)] if token_key and token_id else []),
        (server_identity.CALLER_MAC_KEY, mac),
    ]
    return tuple((k, v.encode() if k.endswith("-bin") else v) for k, v in pairs)


def unauthenticated_callers(claimed: str = ADMIN_IDENTITY) -> list[Caller]:
    """Callers that present nothing, something malformed, or something no cluster issued; the forged claims
    name `claimed` (the admin's identity)."""
    return [
        Caller("none"),
        Caller("malformed:basic", (("authorization", "Basic Zm9vOmJhcg=="),)),
        Caller("malformed:empty-bearer", (("authorization", "Bearer "),)),
        Caller("malformed:no-scheme", (("authorization", UNKNOWN_TOKEN),)),
        Caller("malformed:not-a-token", (("authorization", "Bearer cairn..AAAA"),)),
        Caller("malformed:long", (("authorization", "Bearer " + "A" * 4096),)),
        Caller("unknown-token", (("authorization", f"Bearer {UNKNOWN_TOKEN}"),)),
        Caller("forged-claim", forged_claim(claimed)),
        Caller("forged-claim:bootstrap", forged_claim(claimed, "token", "ab" * 32, BOOTSTRAP_TOKEN_ID)),
        Caller("forged-claim:certificate", forged_claim(claimed, "certificate", "ab" * 32)),
        Caller("forged-claim:no-mac", forged_claim(claimed)[:-1]),
        Caller("forged-node", forged_claim("", "node", "zz")[1:]),
    ]


def token_caller(token: str, name: str = "valid-token", access: Access | None = None, weight: int = 1) -> Caller:
    return Caller(name, (("authorization", f"Bearer {token}"),), authenticated=True, access=access, weight=weight)


@dataclass
class Profile:
    """A cluster configuration and the callers to fuzz it with.

    `secure`: the cluster is start_cluster(secure=True) (TLS, auth, encryption at rest; the fuzzer's channels
    then speak TLS without a client certificate); `prepare(workdir)` writes files the node configs name (under a
    directory of the caller's) and returns overrides merged over `overrides`. `callers` gives the
    unauthenticated callers; `bootstrap` runs once the cluster is up, before seeding, and returns the admin
    caller (it makes the setup and final-check calls) plus the callers that need the cluster to exist (tokens
    it created, near misses of them)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    auth_enabled: bool = False
    secure: bool = False
    prepare: Callable[[Path], dict[str, Any]] | None = None
    callers: Callable[[], list[Caller]] = unauthenticated_callers
    bootstrap: Callable[[Fuzzer], tuple[Caller, list[Caller]]] | None = None

    def cluster_overrides(self, workdir: Path) -> dict[str, Any]:
        """The node config overrides, once the files they name are written under `workdir`."""
        return merged(self.overrides, self.prepare(workdir)) if self.prepare is not None else dict(self.overrides)


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


# Short long-polls: a PollWork otherwise holds its batch for the whole call deadline.
BASE_OVERRIDES: dict[str, Any] = {"execution": {"max_poll_wait": "200ms"}}


def _plain_bootstrap(fuzzer: Fuzzer) -> tuple[Caller, list[Caller]]:
    """Auth off: anyone may create a token; the valid-token caller then presents a real one."""
    admin = Caller("setup")
    token = fuzzer.admin_create_token(admin, ADMIN_IDENTITY)
    return admin, [token_caller(token)]


# The secure profile's identities. Their names use letters that ID_ALPHABET lacks and no pool holds, so no drawn
# request names them (a fuzzed Bind or PutRole could otherwise change what they may do).
SECURE_ADMIN = certs.ADMIN  # LocalCluster(secure=True)'s auth.bootstrap_admin; the bootstrap token stands for it
NARROW_IDENTITY = "fuzz-narrow"  # read and write on NARROW_NAMESPACE only
NARROW_ROLE = "fuzz-narrow-role"
NARROW_NAMESPACE = WORKFLOW_IDS[0]  # "fz/a": pooled, so that many of its writes are allowed and land
NOROLE_IDENTITY = "fuzz-norole"  # a valid token, and no role at all
BOOTSTRAP_TOKEN_FILE = "fuzz-bootstrap.token"
# The operation (model.OPERATIONS) each audited command needs, by the command's name in the audit log; others
# (auth.*, rotate_keys, ...) are the admin's.
_W, _C, _R, _K = auth_model.WRITE, auth_model.CHECKPOINT, auth_model.RECOVER, auth_model.WORK
AUDITED_OPERATION = {
    **dict.fromkeys(("persist", "delete", "start_run", "cancel_run", "release_run"), _W),
    "checkpoint": _C,
    "recover": _R,
    **dict.fromkeys(("claim_run", "heartbeat", "record_step", "complete_run", "fail_run"), _K),
}


def _secure_prepare(workdir: Path) -> dict[str, Any]:
    """A bootstrap token file, and TLS that asks for no client certificate: every caller reaches the RPC layer
    (with client_auth require an unauthenticated caller would be refused in the handshake, which tests nothing)
    and is whoever its authorization header makes it."""
    path = workdir / BOOTSTRAP_TOKEN_FILE
    certs.write_private(path, secrets.token_urlsafe(33).encode())
    return {"tls": {"client_auth": "none"}, "auth": {"bootstrap_token_file": str(path)}}


def _secure_bootstrap(fuzzer: Fuzzer) -> tuple[Caller, list[Caller]]:
    """The admin (the bootstrap token), an identity with a narrow role and one with none (tokens the admin
    creates), a forged claim beside a valid token, and near misses of the real secrets."""
    secret = Path(fuzzer.handle.cluster.overrides["auth"]["bootstrap_token_file"]).read_text().strip()
    admin = token_caller(secret, "admin-token", Access(SECURE_ADMIN, admin=True), weight=6)
    ap = "/cairn.v1.AuthService/"
    role = auth_pb2.Role(
        name=NARROW_ROLE,
        grants=[auth_pb2.Grant(operations=[auth_pb2.OP_READ, auth_pb2.OP_WRITE], namespace=NARROW_NAMESPACE)],
    )
    fuzzer.leader_call(admin, ap + "PutRole", auth_pb2.PutRoleRequest(role=role), auth_pb2.PutRoleResponse)
    fuzzer.leader_call(
        admin, ap + "Bind", auth_pb2.BindRequest(identity=NARROW_IDENTITY, role=NARROW_ROLE), auth_pb2.BindResponse
    )
    fuzzer.fixed_roles[NARROW_ROLE] = role.SerializeToString(deterministic=True)
    fuzzer.fixed_bindings[NARROW_IDENTITY] = (NARROW_ROLE,)
    narrow_token = fuzzer.admin_create_token(admin, NARROW_IDENTITY)
    norole_token = fuzzer.admin_create_token(admin, NOROLE_IDENTITY)
    narrow = Access(
        NARROW_IDENTITY,
        roles=(NARROW_ROLE,),
        operations=frozenset({auth_model.READ, auth_model.WRITE}),
        namespace=NARROW_NAMESPACE,
    )
    prefix, token_id, token_secret = narrow_token.split(".")
    other_id = _token_id(norole_token)
    flipped = ("B" if token_secret[0] == "A" else "A") + token_secret[1:]
    return admin, [
        admin,
        token_caller(narrow_token, "narrow-token", narrow, weight=5),
        token_caller(norole_token, "no-role-token", Access(NOROLE_IDENTITY), weight=2),
        # A forged claim beside a valid token: the claim may not lift the token's rights (the node refuses it).
        dataclasses.replace(
            token_caller(narrow_token, "forged-claim+narrow-token", narrow),
            metadata=(*forged_claim(SECURE_ADMIN), ("authorization", f"Bearer {narrow_token}")),
        ),
        Caller("near-miss:bootstrap-secret", (("authorization", f"Bearer {secret[:-1]}"),)),
        Caller("near-miss:bootstrap-secret+x", (("authorization", f"Bearer {secret}x"),)),
        Caller("near-miss:token-secret", (("authorization", f"Bearer {prefix}.{token_id}.{flipped}"),)),
        Caller("near-miss:token-id", (("authorization", f"Bearer {prefix}.{other_id}.{token_secret}"),)),
    ]


def secure_profile() -> Profile:
    """TLS (client_auth none), auth with a bootstrap token file, and encryption at rest."""
    return Profile(
        "secure",
        overrides=BASE_OVERRIDES,
        auth_enabled=True,
        secure=True,
        prepare=_secure_prepare,
        callers=lambda: unauthenticated_callers(SECURE_ADMIN),
        bootstrap=_secure_bootstrap,
    )


PROFILES: dict[str, Profile] = {
    # Auth disabled (the default): a bad credential is treated as anonymous.
    "plain": Profile("plain", overrides=BASE_OVERRIDES, bootstrap=_plain_bootstrap),
    "secure": secure_profile(),
}


# ---- the methods a node serves ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One RPC: its path, request/response classes and shape; `weight` is its share of the draws."""

    path: str
    request: type[Message]
    response: type[Message]
    client_streaming: bool
    server_streaming: bool
    open: bool = False  # served to anyone even with auth on (health, reflection, Status)
    implemented: bool = True  # registered but left unimplemented by its library: UNIMPLEMENTED is then right
    weight: int = 4
    served: bool = True

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def short(self) -> str:
        return self.path.lstrip("/").rsplit(".", 1)[-1] if self.served else "(unserved method)"

    def __repr__(self) -> str:  # hypothesis prints it in falsifying examples
        return self.path


# Calls that are legitimate but heavy (a leadership change, a snapshot, a whole-chain scan) are drawn rarely.
WEIGHTS = {
    "TransferLeadership": 1,
    "Snapshot": 1,
    "RotateKeys": 1,  # on an encrypted cluster: a new data key and a re-encryption pass
    "VerifyAudit": 2,
    "ExportAudit": 2,
    "ValidateState": 3,
    "SynchronizeState": 3,
}


def is_open(path: str) -> bool:
    """Whether the node's access rules let anyone call it (health, reflection, Status): from the rules
    table itself, so that the auth check follows the rules as they change."""
    rule = auth_rules.RULES.get(path)
    return rule is not None and rule.operation == auth_rules.OPEN


def served_methods() -> list[Method]:
    """Every RPC of every service a node registers (node.py): Cairn's five, the node-to-node service,
    health and reflection."""
    services = [
        state_pb2.DESCRIPTOR.services_by_name["StateService"],
        workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"],
        cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"],
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
        audit_pb2.DESCRIPTOR.services_by_name["AuditService"],
        command_pb2.DESCRIPTOR.services_by_name["NodeService"],
        health_pb2.DESCRIPTOR.services_by_name["Health"],
        reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
    ]
    out = []
    for service in services:
        for m in service.methods:
            out.append(
                Method(
                    path=f"/{service.full_name}/{m.name}",
                    request=message_factory.GetMessageClass(m.input_type),
                    response=message_factory.GetMessageClass(m.output_type),
                    client_streaming=m.client_streaming,
                    server_streaming=m.server_streaming,
                    open=is_open(f"/{service.full_name}/{m.name}"),
                    weight=WEIGHTS.get(m.name, 4),
                    implemented=library_implements(service.full_name, m.name),
                )
            )
    return out


def library_implements(service: str, method: str) -> bool:
    """grpcio-health-checking registers every method of health.proto, but (1.85) leaves List to the base
    class, which answers UNIMPLEMENTED; that is the precise answer for it until the library implements it."""
    if service != "grpc.health.v1.Health":
        return True
    return getattr(health.HealthServicer, method, None) is not getattr(health_pb2_grpc.HealthServicer, method, None)


UNSERVED = Method("", health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse, False, False, served=False)

# ---- live pools: ids the cluster hands out (checkpoint ids, fencing tokens, token ids) -------------------


class LivePool:
    """A bounded list of values seen in replies; strategies draw an index into it (so a draw made before a
    value arrived still maps to something that exists)."""

    def __init__(self, initial: Iterable[Any], limit: int = 32):
        self.items: list[Any] = list(initial)
        self.limit = limit
        self._lock = threading.Lock()

    def add(self, value: Any) -> None:
        with self._lock:
            if value in self.items:
                return
            self.items.append(value)
            if len(self.items) > self.limit:
                del self.items[1]  # keep the first (seeded) value

    def pick(self, i: int) -> Any:
        items = self.items
        return items[i % len(items)]

    def strategy(self) -> st.SearchStrategy[Any]:
        return st.integers(0, 1 << 16).map(self.pick)


# ---- strategies from descriptors ---------------------------------------------------------------------------

INT_EDGES = {
    "int32": (0, 1, -1, 2**31 - 1, -(2**31)),
    "uint32": (0, 1, 2**31, 2**32 - 1),
    "int64": (0, 1, -1, 2**53, 2**53 + 1, 2**63 - 1, -(2**63)),
    "uint64": (0, 1, 2**53, 2**53 + 1, 2**63, 2**64 - 1),
}
INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
INT_KINDS = {
    FD.TYPE_INT32: "int32",
    FD.TYPE_SINT32: "int32",
    FD.TYPE_SFIXED32: "int32",
    FD.TYPE_UINT32: "uint32",
    FD.TYPE_FIXED32: "uint32",
    FD.TYPE_INT64: "int64",
    FD.TYPE_SINT64: "int64",
    FD.TYPE_SFIXED64: "int64",
    FD.TYPE_UINT64: "uint64",
    FD.TYPE_FIXED64: "uint64",
}
# Semantic edges for integer fields, by name: limits, lease and poll times, versions.
INT_BY_NAME: dict[str, tuple[int, ...]] = {
    "limit": (0, 1, 100, 1000, 1001),
    "expected_version": (0, 1, 2, 3, 2**53, 2**53 + 1),
    "wait_ms": (0, 1, 100, 30_000),
    "lease_timeout_ms": (0, 99, 1000, 5000, 3_600_000, 3_600_001),
    "ttl_seconds": (0, 1, 3600),
    "min_index": (0, 1, 10, 10**9),
    "after_seq": (0, 1, 5),
    "sequence": (0, 1, 2),
}
# Tame integers, by field name: inside what the server accepts.
TAME_INTS: dict[str, tuple[int, ...]] = {
    "limit": (0, 1, 10, 100),
    "expected_version": (0, 1, 2, 3, 4, 5),
    "wait_ms": (0, 50),
    "lease_timeout_ms": (1000, 2000, 10_000),
    "ttl_seconds": (0, 60),
    "min_index": (0,),
    "after_seq": (0, 1, 10, 100),
    "sequence": (0, 1, 2, 3),
    "fencing_token": (1,),
}
SPECIAL_STRINGS = (
    "\x00",
    "fz/a\x00",
    "fz/a ",
    " fz/a",
    "../../etc/passwd",
    "\u202efz/a",
    "é" * 130,  # 260 bytes: over the 256-byte id limit in bytes, not in characters
    "a" * 256,
    "a" * 257,
    "\U0001f600" * 65,
    "fz/" + "x" * 253,
    "%s%n%x",
    "\ufeff",
    "\r\n",
)
ID_ALPHABET = st.sampled_from("abcfz019_./:@+=-AZ")


class Strategies:
    """Hypothesis strategies for request messages (from their descriptors) and raw request bytes.

    Each structured request is drawn either `tame` (pool ids, valid JSON, in-range numbers, known enum
    values: most are valid, so requests reach the state machine, the dedup table, leases and checkpoints)
    or wild (every edge value); a message of six wild fields is almost never valid, and a fuzzer that only
    ever gets INVALID_ARGUMENT tests the validator alone."""

    MAX_DEPTH = 3

    def __init__(self, node_ids: Sequence[str], checkpoints: LivePool, fencing: LivePool, token_ids: LivePool):
        self._cache: dict[tuple[str, int, bool], st.SearchStrategy[Message]] = {}
        self.valid_id = st.lists(ID_ALPHABET, min_size=1, max_size=12).map("".join)
        long_text = st.tuples(st.text(min_size=1, max_size=3), st.integers(1, 5000)).map(lambda t: (t[0] * t[1])[:5000])
        self.wild_string = st.one_of(
            st.just(""),
            st.text(max_size=16),
            self.valid_id,
            long_text,
            st.sampled_from(SPECIAL_STRINGS),
        )
        self.string_pools: dict[str, st.SearchStrategy[str]] = {
            "workflow_id": st.one_of(st.sampled_from(WORKFLOW_IDS), st.sampled_from(WORKFLOW_IDS), self.valid_id),
            "page_token": st.sampled_from(WORKFLOW_IDS),
            "prefix": st.sampled_from(("fz/", "fz", "")),
            "checkpoint_id": checkpoints.strategy(),
            "request_id": st.sampled_from(REQUEST_IDS),
            "workflow_type": st.sampled_from(WORKFLOW_TYPES),
            "workflow_types": st.sampled_from(WORKFLOW_TYPES),
            "current_step": st.sampled_from(STEPS),
            "step_name": st.sampled_from(STEPS),
            "worker_id": st.just("fz-worker"),
            "node_id": st.sampled_from(tuple(node_ids)),
            "token_id": token_ids.strategy(),
            "identity": st.sampled_from(IDENTITIES),
            "role": st.sampled_from(ROLES),
            "roles": st.sampled_from(ROLES),
            "name": st.sampled_from(ROLES),
            "namespace": st.sampled_from(("fz/", "")),
            "service": st.sampled_from(("", "cairn.v1.StateService", "nope")),
            "file_by_filename": st.sampled_from(("cairn/v1/state.proto", "google/protobuf/struct.proto")),
            "file_containing_symbol": st.sampled_from(("cairn.v1.StateService", "cairn.v1.PersistStateRequest")),
            "all_extension_numbers_of_type": st.sampled_from(("cairn.v1.PersistStateRequest",)),
            "containing_type": st.sampled_from(("cairn.v1.PersistStateRequest",)),
            "list_services": st.just(""),
        }
        # Tame request ids are mostly fresh (so that writes apply); the pool's few ids collide on purpose.
        # (A counter, not a drawn number: hypothesis favours small numbers, which would collide; a replay
        # while shrinking gets another fresh id, which means the same thing to the server.)
        counter = itertools.count()
        fresh = st.builds(lambda: f"fz-q{os.getpid()}-{next(counter)}")
        self.tame_strings = {
            **self.string_pools,
            "request_id": st.one_of(st.just(""), fresh, st.sampled_from(REQUEST_IDS)),
            "reason": st.just("fuzz"),
            "error": st.just("fuzz"),
        }
        self.int_pools: dict[str, st.SearchStrategy[int]] = {"fencing_token": fencing.strategy()}
        self.json_wild = self._json_values(wild=True)
        self.json_tame = self._json_values(wild=False)

    # -- strings and numbers

    def _pool(self, name: str, pools: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[str] | None:
        pool = pools.get(name)
        if pool is None:
            for key in ("workflow_id", "checkpoint_id", "request_id"):
                if key in name:
                    return pools[key]
        return pool

    def string(self, f: pb_descriptor.FieldDescriptor, tame: bool) -> st.SearchStrategy[str]:
        if tame:
            pool = self._pool(f.name, self.tame_strings)
            return pool if pool is not None else st.one_of(st.just(""), self.valid_id)
        pool = self._pool(f.name, self.string_pools)
        if pool is None:
            return self.wild_string
        return st.one_of(pool, pool, pool, self.wild_string)  # three in four from the pool

    def integer(self, f: pb_descriptor.FieldDescriptor, tame: bool) -> st.SearchStrategy[int]:
        pool = self.int_pools.get(f.name)
        if tame:
            options = [st.sampled_from(TAME_INTS.get(f.name, (0, 1, 2, 3, 10)))]
            return st.one_of(pool, *options) if pool is not None else options[0]
        kind = INT_KINDS[f.type]
        lo, hi = INT_RANGES[kind]
        edges = INT_EDGES[kind] + tuple(v for v in INT_BY_NAME.get(f.name, ()) if lo <= v <= hi)
        wild = [st.sampled_from(edges), st.sampled_from(edges), st.integers(lo, hi), st.integers(0, 16)]
        return st.one_of(pool, pool, *wild) if pool is not None else st.one_of(wild)

    def scalar(self, f: pb_descriptor.FieldDescriptor, tame: bool) -> st.SearchStrategy[Any]:
        t = f.type
        if t in INT_KINDS:
            return self.integer(f, tame)
        if t == FD.TYPE_BOOL:
            return st.booleans()
        if t == FD.TYPE_STRING:
            return self.string(f, tame)
        if t == FD.TYPE_BYTES:
            return st.one_of(st.binary(max_size=64), st.sampled_from((b"", b"\x00" * 32, b"\xff" * 33)))
        if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            return st.floats(allow_nan=not tame, allow_infinity=not tame, width=64 if t == FD.TYPE_DOUBLE else 32)
        if t == FD.TYPE_ENUM:
            known = st.sampled_from([v.number for v in f.enum_type.values])
            return known if tame else st.one_of(known, known, st.integers(-(2**31), 2**31 - 1))
        raise TypeError(f"no strategy for field type {t} ({f.full_name})")

    # -- JSON-like values (google.protobuf.Struct / Value)

    @staticmethod
    def _json_values(wild: bool) -> st.SearchStrategy[Any]:
        leaves = st.one_of(
            st.none(),
            st.booleans(),
            st.floats(allow_nan=wild, allow_infinity=wild),
            st.integers(-(2**60), 2**60).map(float),
            st.text(max_size=20),
        )
        return st.recursive(
            leaves,
            lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
            max_leaves=12,
        )

    def value(self, tame: bool) -> st.SearchStrategy[struct_pb2.Value]:
        if tame:
            return self.json_tame.map(to_value)
        return st.one_of(
            self.json_wild.map(to_value),
            st.just(struct_pb2.Value()),  # a Value with no kind: not JSON
            st.integers(1, 40).map(deep_value),
            st.tuples(st.text(min_size=1, max_size=4), st.integers(1, 20_000)).map(
                lambda t: to_value((t[0] * t[1])[:20_000])
            ),
        )

    def struct(self, tame: bool) -> st.SearchStrategy[struct_pb2.Struct]:
        def build(entries: dict[str, struct_pb2.Value]) -> struct_pb2.Struct:
            out = struct_pb2.Struct()
            for key, v in entries.items():
                out.fields[key].CopyFrom(v)
            return out

        keys = st.one_of(st.sampled_from(("k", "x", "")), st.text(max_size=8))
        return st.dictionaries(keys, self.value(tame), max_size=5).map(build)

    # -- messages

    def message(self, desc: pb_descriptor.Descriptor, depth: int = 0, tame: bool = False) -> st.SearchStrategy[Message]:
        key = (desc.full_name, depth, tame)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if desc.full_name == "google.protobuf.Struct":
            strategy: st.SearchStrategy[Message] = self.struct(tame)
        elif desc.full_name == "google.protobuf.Value":
            strategy = self.value(tame)
        elif desc.full_name == "google.protobuf.Timestamp":
            strategy = timestamps(tame)
        else:
            strategy = self._fields(desc, depth, tame)
        self._cache[key] = strategy
        return strategy

    def _fields(self, desc: pb_descriptor.Descriptor, depth: int, tame: bool) -> st.SearchStrategy[Message]:
        cls = message_factory.GetMessageClass(desc)
        setters: list[tuple[pb_descriptor.FieldDescriptor, st.SearchStrategy[Any]]] = []
        for f in desc.fields:
            strategy = self._field(f, depth, tame)
            if strategy is not None:
                setters.append((f, strategy))

        # Tame messages always name what they act on (an empty id is only ever INVALID_ARGUMENT).
        always = {f.name for f in desc.fields if tame and self._pool(f.name, self.string_pools) is not None}

        @st.composite
        def build(draw: st.DrawFn) -> Message:
            msg = cls()
            for f, strategy in setters:
                # One field in four left unset; shrinks towards unset.
                if f.name not in always and draw(st.integers(0, 3)) == 0:
                    continue
                assign(msg, f, draw(strategy))
            return msg

        return build()

    def _field(self, f: pb_descriptor.FieldDescriptor, depth: int, tame: bool) -> st.SearchStrategy[Any] | None:
        if f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
            key_f, value_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            values = self._element(value_f, depth, tame)
            if values is None:
                return None
            small = st.dictionaries(self.map_key(key_f, tame), values, max_size=3 if tame else 5)
            if tame or value_f.type != FD.TYPE_STRING:
                return small
            many = st.integers(60, 70).map(lambda n: {f"k{i}": "v" for i in range(n)})  # around the 64-label cap
            return st.one_of(small, small, small, many)
        element = self._element(f, depth, tame)
        if element is None:
            return None
        if f.is_repeated:
            return st.lists(element, max_size=3 if tame else 5)
        return element

    def _element(self, f: pb_descriptor.FieldDescriptor, depth: int, tame: bool) -> st.SearchStrategy[Any] | None:
        if f.type == FD.TYPE_MESSAGE:
            if depth >= self.MAX_DEPTH:
                return None
            return self.message(f.message_type, depth + 1, tame)
        if f.type == FD.TYPE_GROUP:
            return None
        return self.scalar(f, tame)

    def map_key(self, key_f: pb_descriptor.FieldDescriptor, tame: bool) -> Any:
        if key_f.type != FD.TYPE_STRING:
            return self.scalar(key_f, tame)
        names = st.sampled_from(("env", "team", "a"))
        if tame:
            return names
        label_like = st.lists(ID_ALPHABET, min_size=1, max_size=10).map("".join)
        return st.one_of(names, label_like, self.wild_string)

    # -- whole requests

    def request(self, method: Method) -> st.SearchStrategy[bytes]:
        """A request message drawn from the descriptor (tame or wild, even odds), serialized."""
        desc = method.request.DESCRIPTOR
        return st.one_of(self.message(desc, tame=True), self.message(desc, tame=False)).map(
            lambda m: m.SerializeToString()
        )

    def raw(self, method: Method) -> st.SearchStrategy[bytes]:
        """Bytes that claim to be the method's request: random, garbled valid encodings, wire-format tokens."""
        valid = self.request(method)
        fields = [f.number for f in method.request.DESCRIPTOR.fields] or [1]
        tokens = wire_tokens(fields)
        options = [
            st.binary(max_size=64),
            st.tuples(st.binary(min_size=1, max_size=4), st.integers(1, 4000)).map(lambda t: t[0] * t[1]),
            st.tuples(valid, mutations()).map(lambda t: mutate(t[0], t[1])),
            st.tuples(valid, mutations()).map(lambda t: mutate(t[0], t[1])),
            tokens,
            st.tuples(valid, tokens).map(lambda t: t[0] + t[1]),
        ]
        nested = deep_fields(method.request.DESCRIPTOR)
        if nested:
            options.append(st.tuples(st.sampled_from(nested), st.integers(25, 120)).map(lambda t: deep_field(*t)))
        return st.one_of(options)


def assign(msg: Message, f: pb_descriptor.FieldDescriptor, value: Any) -> None:
    """Set one field of msg to a drawn value (scalar, message, repeated or map); values protobuf refuses
    (an unknown number for a closed enum, say) are left out."""
    try:
        target = getattr(msg, f.name)
        if f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
            scalar_value = f.message_type.fields_by_name["value"].type != FD.TYPE_MESSAGE
            for k, v in value.items():
                if scalar_value:
                    target[k] = v
                else:
                    target[k].CopyFrom(v)
        elif f.is_repeated:
            if f.type == FD.TYPE_MESSAGE:
                for v in value:
                    target.add().CopyFrom(v)
            else:
                target.extend(value)
        elif f.type == FD.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(msg, f.name, value)
    except (ValueError, TypeError):
        pass


def to_value(obj: Any) -> struct_pb2.Value:
    """A Python JSON-like value (NaN and infinities included, which JSON forbids) as a protobuf Value."""
    out = struct_pb2.Value()
    if obj is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(obj, bool):
        out.bool_value = obj
    elif isinstance(obj, float | int):
        out.number_value = float(obj)
    elif isinstance(obj, str):
        out.string_value = obj
    elif isinstance(obj, list):
        out.list_value.SetInParent()
        for item in obj:
            out.list_value.values.add().CopyFrom(to_value(item))
    else:
        out.struct_value.SetInParent()
        for key, item in obj.items():
            out.struct_value.fields[key].CopyFrom(to_value(item))
    return out


def deep_value(depth: int) -> struct_pb2.Value:
    """A Value nested `depth` lists deep (around 30 reaches protobuf's decoding limit)."""
    v = struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    for _ in range(depth):
        outer = struct_pb2.Value()
        outer.list_value.values.add().CopyFrom(v)
        v = outer
    return v


def timestamps(tame: bool = False) -> st.SearchStrategy[Message]:
    if tame:
        return st.builds(timestamp_pb2.Timestamp, seconds=st.integers(0, 2**32), nanos=st.integers(0, 999_999_999))
    seconds = st.one_of(
        st.sampled_from((0, -1, 253402300799, 253402300800, -62135596800, -62135596801, 2**63 - 1, -(2**63))),
        st.integers(0, 2**33),
    )
    nanos = st.sampled_from((0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31)))
    return st.builds(timestamp_pb2.Timestamp, seconds=seconds, nanos=nanos)


# ---- wire-format garbage ---------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def wire_tokens(fields: Sequence[int]) -> st.SearchStrategy[bytes]:
    """Hand-made protobuf wire tokens, valid and not: every wire type (including the invalid 6 and 7),
    overlong and truncated varints, lengths past the end or absurd, invalid UTF-8, unbalanced groups."""
    numbers = st.one_of(st.sampled_from(tuple(fields)), st.sampled_from((0, 19000, 2**29 - 1)), st.integers(1, 40))
    varints = st.one_of(
        st.sampled_from((b"\x00", b"\x7f", b"\xff" * 9 + b"\x01", b"\xff" * 10 + b"\x01", b"\x80", b"\xff" * 12)),
        st.integers(0, 2**64 - 1).map(varint),
    )
    body = st.one_of(st.binary(max_size=16), st.sampled_from((b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"fz/a")))

    def length_delimited(t: tuple[bytes, int]) -> bytes:
        data, skew = t
        return varint(max(0, len(data) + skew)) + data

    payload = {
        0: varints,
        1: st.binary(min_size=0, max_size=8),
        2: st.one_of(
            st.tuples(body, st.sampled_from((0, 0, 0, 1, 5, -1))).map(length_delimited),
            st.sampled_from((varint(2**32) + b"x", varint(2**63) + b"x", varint(2**31 - 1))),
        ),
        3: st.just(b""),
        4: st.just(b""),
        5: st.binary(min_size=0, max_size=4),
        6: st.binary(max_size=4),
        7: st.binary(max_size=4),
    }
    token = st.tuples(numbers, st.integers(0, 7)).flatmap(
        lambda nt: payload[nt[1]].map(lambda p, nt=nt: tag(nt[0], nt[1]) + p)
    )
    return st.lists(token, min_size=1, max_size=6).map(b"".join)


@dataclass(frozen=True)
class Mutation:
    """How to garble a valid encoding (drawn by hypothesis, so that it shrinks like any other value)."""

    kind: str
    at: int
    size: int
    data: bytes


def mutations() -> st.SearchStrategy[Mutation]:
    return st.builds(
        Mutation,
        kind=st.sampled_from(("truncate", "flip", "insert", "delete", "duplicate")),
        at=st.integers(0, 1 << 16),
        size=st.integers(1, 16),
        data=st.binary(min_size=1, max_size=8),
    )


def mutate(data: bytes, m: Mutation) -> bytes:
    """A valid encoding garbled: cut short, a byte flipped, bytes inserted, deleted or repeated."""
    if not data:
        return m.data
    i = m.at % len(data)
    if m.kind == "truncate":
        return data[:i]
    if m.kind == "flip":
        return data[:i] + bytes([data[i] ^ (m.data[0] or 0xFF)]) + data[i + 1 :]
    if m.kind == "insert":
        return data[:i] + m.data + data[i:]
    if m.kind == "delete":
        return data[:i] + data[i + m.size :]
    return data[:i] + data[i : i + m.size] * 2 + data[i + m.size :]


def deep_fields(desc: pb_descriptor.Descriptor) -> list[tuple[int, str]]:
    """Top-level Struct/Value fields of a request, where nesting past the decoder's limit can go."""
    return [
        (f.number, f.message_type.full_name)
        for f in desc.fields
        if f.type == FD.TYPE_MESSAGE
        and not f.is_repeated
        and f.message_type.full_name in ("google.protobuf.Struct", "google.protobuf.Value")
    ]


def deep_field(target: tuple[int, str], depth: int) -> bytes:
    """The field `target` holding a value nested `depth` lists deep, encoded by hand (protobuf's own
    encoder would do it too, but this keeps the depth exact and cheap)."""
    number, kind = target
    value = b"\x08\x00"  # null_value
    for _ in range(depth):
        items = tag(1, 2) + varint(len(value)) + value  # ListValue.values
        value = tag(6, 2) + varint(len(items)) + items  # Value.list_value
    if kind == "google.protobuf.Struct":
        entry = tag(1, 2) + varint(1) + b"k" + tag(2, 2) + varint(len(value)) + value
        value = tag(1, 2) + varint(len(entry)) + entry  # Struct.fields
    return tag(number, 2) + varint(len(value)) + value


def extreme_message(cls: type[Message], high: bool) -> bytes:
    """Every scalar field at its type's maximum (or minimum); strings from the pools."""
    msg = cls()
    for f in msg.DESCRIPTOR.fields:
        if f.is_repeated or f.type in (FD.TYPE_MESSAGE, FD.TYPE_GROUP):
            continue
        if f.type in INT_KINDS:
            lo, hi = INT_RANGES[INT_KINDS[f.type]]
            value: Any = hi if high else lo
        elif f.type == FD.TYPE_STRING:
            value = "fz/a" if high else ""
        elif f.type == FD.TYPE_BOOL:
            value = high
        elif f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            value = float("inf") if high else float("-inf")
        elif f.type == FD.TYPE_ENUM:
            value = 2**31 - 1 if high else -(2**31)
        else:
            value = b"\xff" * 64 if high else b""
        assign(msg, f, value)
    return msg.SerializeToString()


# ---- one call and its outcome -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One RPC as sent: the method, the node, the caller and the request bytes (several for a client stream)."""

    method: Method
    node: int
    caller: Caller
    payloads: tuple[bytes, ...]
    source: str  # "structured", "raw", "edge"
    path: str = ""  # for an unserved method

    @property
    def target(self) -> str:
        return self.path or self.method.path

    def describe(self, limit: int = 4096) -> str:
        """The call with its payloads in hex (each cut after `limit` bytes): a reproducer."""
        hexes = ", ".join(
            p.hex() if len(p) <= limit else f"{p[:limit].hex()}...({len(p)} bytes)" for p in self.payloads
        )
        return f"Call({self.target} -> node {self.node} as {self.caller.name}, {self.source}, payloads=[{hexes}])"

    def __repr__(self) -> str:  # short: hypothesis prints whole batches of these
        return self.describe(limit=48)


@dataclass
class Outcome:
    """What came back: the status code's name (the client's own for a deadline), its message, the raw replies."""

    code: str
    details: str
    replies: list[bytes]
    cut: bool = False  # the fuzzer stopped reading a server stream itself


class Violation(AssertionError):
    """A reply or behaviour the API must never show; `key` is its kind, the same for every occurrence."""

    key: tuple[str, str, str] = ("", "", "")

    def __init__(self, key: tuple[str, str, str], text: str, call: Call, outcome: Outcome):
        super().__init__(f"{text}\n  request: {call!r}\n  reply: {outcome.code} {outcome.details[:300]!r}")
        self.key = key
        self.text = text
        self.call = call
        self.outcome = outcome


_VIOLATION_TYPES: dict[tuple[str, str, str], type[Violation]] = {}


def violation_type(key: tuple[str, str, str]) -> type[Violation]:
    """One exception type per kind of violation, so that hypothesis shrinks each distinct bug on its own."""
    cls = _VIOLATION_TYPES.get(key)
    if cls is None:
        name = "Violation_" + "_".join("".join(c if c.isalnum() else "_" for c in part) for part in key)
        cls = type(name, (Violation,), {})
        _VIOLATION_TYPES[key] = cls
    return cls


@dataclass
class ViolationRecord:
    """One kind of violation: how often it was seen and a reproducer (hex request bytes and the reply)."""

    key: tuple[str, str, str]
    text: str
    count: int
    request: str  # repr of the (shrunk, when hypothesis shrank it) call
    reply: str
    shrunk: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": list(self.key),
            "text": self.text,
            "count": self.count,
            "request": self.request,
            "reply": self.reply,
            "shrunk": self.shrunk,
        }


# ---- the engine ---------------------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything a run found: counts by method and code, rate, memory, violations and whole-run problems."""

    profile: str
    requests: int = 0
    by_source: Counter = field(default_factory=Counter)
    codes: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_caller: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # caller -> code -> n
    ok_writes: Counter = field(default_factory=Counter)  # caller -> writes answered OK
    stream_messages: int = 0
    details: dict[str, str] = field(default_factory=dict)  # "method CODE" -> the first message seen with it
    examples: int = 0
    seconds: float = 0.0
    rss_before: dict[str, int] = field(default_factory=dict)  # node id -> KiB
    rss_after: dict[str, int] = field(default_factory=dict)
    violations: list[ViolationRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # whole-run checks: crashes, memory, state
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.violations or self.problems)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "requests": self.requests,
            "by_source": dict(self.by_source),
            "stream_messages": self.stream_messages,
            "hypothesis_examples": self.examples,
            "seconds": round(self.seconds, 1),
            "requests_per_second": round(self.rate, 1),
            "codes": {m: dict(c) for m, c in sorted(self.codes.items())},
            "codes_total": dict(self.code_totals()),
            "codes_by_caller": {c: dict(n) for c, n in sorted(self.by_caller.items())},
            "ok_writes_by_caller": dict(self.ok_writes),
            "first_message_by_method_and_code": dict(sorted(self.details.items())),
            "rss_kib_before": self.rss_before,
            "rss_kib_after": self.rss_after,
            "violations": [v.as_dict() for v in self.violations],
            "problems": self.problems,
            "notes": self.notes,
            "ok": not self.failed,
        }

    def code_totals(self) -> Counter:
        total: Counter = Counter()
        for c in self.codes.values():
            total.update(c)
        return total

    def table(self) -> str:
        lines = [
            f"fuzz profile {self.profile!r}: {self.requests} requests ({dict(self.by_source)}), "
            f"{self.stream_messages} stream messages, {self.examples} hypothesis examples"
        ]
        width = max([len(m) for m in self.codes] + [6])
        lines.append(f"{'method':<{width}}  {'total':>6}  codes")
        for method, counts in sorted(self.codes.items()):
            text = "  ".join(f"{code}={n}" for code, n in counts.most_common())
            lines.append(f"{method:<{width}}  {sum(counts.values()):>6}  {text}")
        totals = self.code_totals()
        lines.append(
            f"{'TOTAL':<{width}}  {sum(totals.values()):>6}  "
            + "  ".join(f"{code}={n}" for code, n in totals.most_common())
        )
        width = max([len(c) for c in self.by_caller] + [6])
        lines.append(f"{'caller':<{width}}  {'total':>6}  {'OK writes':>9}  codes")
        for caller, counts in sorted(self.by_caller.items()):
            text = "  ".join(f"{code}={n}" for code, n in counts.most_common())
            lines.append(f"{caller:<{width}}  {sum(counts.values()):>6}  {self.ok_writes[caller]:>9}  {text}")
        lines.append(f"{self.requests} requests in {self.seconds:.1f} s: {self.rate:.0f} requests/s")
        for node in sorted(self.rss_after):
            before, after = self.rss_before.get(node, 0), self.rss_after[node]
            lines.append(
                f"RSS {node}: {before / 1024:.1f} MiB after warm-up -> {after / 1024:.1f} MiB at the end "
                f"({(after - before) / 1024:+.1f} MiB)"
            )
        lines.extend(f"note: {n}" for n in self.notes)
        if not self.failed:
            lines.append("no violations")
        for v in self.violations:
            how = "shrunk by hypothesis" if v.shrunk else "as first seen"
            lines.append(
                f"VIOLATION x{v.count} {'/'.join(v.key)}: {v.text}\n  request ({how}): {v.request}\n  reply: {v.reply}"
            )
        lines.extend(f"PROBLEM: {p}" for p in self.problems)
        return "\n".join(lines)


class NodeDied(Exception):
    """A node process exited during the run: nothing after it means anything."""


class Fuzzer:
    """Drives hypothesis-drawn calls at a running cluster and checks every reply and the cluster after."""

    def __init__(
        self,
        handle: ClusterHandle,
        profile: Profile,
        *,
        deadline: float = 2.0,
        batch: int = 24,
        rss_bound_mib: float = 150.0,
        raw_share: float = 0.4,
        workers: int = 3,
        log: Callable[[str], None] = lambda _: None,
    ):
        self.handle = handle
        self.profile = profile
        self.deadline = deadline
        self.batch = batch
        self.rss_bound_mib = rss_bound_mib
        self.raw_share = raw_share
        self.workers = workers
        self.log = log
        self.node_ids = [s.node_id for s in handle.cluster.specs]
        self.methods = served_methods()
        self.report = Report(profile.name)
        self._lock = threading.Lock()
        self._channels: dict[tuple[int, str], grpc.Channel] = {}
        self._pool = ThreadPoolExecutor(max_workers=batch * workers, thread_name_prefix="fuzz-call")
        self.checkpoints = LivePool(["cp-0000000000000000deadbeef"])
        self.fencing = LivePool([1])
        self.token_ids = LivePool(["0011223344556677"])
        self.strategies = Strategies(self.node_ids, self.checkpoints, self.fencing, self.token_ids)
        self.admin = Caller("setup")
        self.callers: list[Caller] = list(profile.callers())
        # What writes (answered OK or ambiguously) named: ("workflow", id), ("type", t), ("role", name),
        # ("binding", identity), ("token", identity), ("token_id", id).
        self.touched: set[tuple[str, str]] = set()
        self.seeded: dict[str, tuple[int, str]] = {}  # workflow id -> (version, checksum)
        self.seeded_tokens: dict[str, str] = {}  # token id -> identity
        # Roles and bindings made at setup that no drawn request names: unchanged at the end unless a write named them.
        self.fixed_roles: dict[str, bytes] = {}  # name -> the role, serialized deterministically
        self.fixed_bindings: dict[str, tuple[str, ...]] = {}  # identity -> its roles, sorted
        # A secure cluster: TLS channels that trust its CA and present no certificate (a caller's own
        # channel_credentials, when it has some, replace these).
        tls = handle.cluster.tls
        self.tls_credentials = grpc.ssl_channel_credentials(tls.ca.read_bytes()) if tls is not None else None
        self.known: set[tuple[str, str, str]] = set()  # violation kinds already recorded (not raised again)
        self._records: dict[tuple[str, str, str], ViolationRecord] = {}
        self._dead: str | None = None
        self._call_strategies: dict[str, st.SearchStrategy[Call]] = {}
        self._edges: list[Call] | None = None
        self._claims: dict[tuple[str, str, str], int] = {}  # violation kind -> the worker thread shrinking it
        self.hard_limit = float("inf")  # no call is sent past this count (bounds shrinking at the end)

    # ---- plumbing

    def channel(self, node: int, caller: Caller) -> grpc.Channel:
        credentials = caller.channel_credentials or self.tls_credentials
        key = (node, caller.name if caller.channel_credentials is not None else "")
        with self._lock:
            ch = self._channels.get(key)
            if ch is None:
                options = [
                    ("grpc.max_receive_message_length", 80 * MiB),
                    ("grpc.max_send_message_length", 80 * MiB),
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                ]
                target = self.handle.endpoint(node)
                if credentials is not None:
                    ch = grpc.secure_channel(target, credentials, options=options)
                else:
                    ch = grpc.insecure_channel(target, options=options)
                self._channels[key] = ch
            return ch

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for ch in self._channels.values():
            ch.close()

    def unary(
        self, node: int, caller: Caller, path: str, request: Message, response: type[Message], timeout: float = 10.0
    ) -> Message:
        """A plain call for setup and checks (raises grpc.RpcError)."""
        fn = self.channel(node, caller).unary_unary(
            path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=response.FromString
        )
        return fn(request, timeout=timeout, metadata=caller.metadata or None)

    def leader_call(
        self, caller: Caller, path: str, request: Message, response: type[Message], timeout: float = 30.0
    ) -> Message:
        """Call the leader, retrying UNAVAILABLE / DEADLINE_EXCEEDED until `timeout` (setup and checks only)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.unary(self.handle.wait_leader(), caller, path, request, response, timeout=5)
            except grpc.RpcError as err:
                if err.code() not in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED) or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)  # a poll interval while a leader is elected, not a wait for a race

    # ---- sending

    def execute(self, call: Call) -> Outcome:
        """Send one call and read its answer(s); never raises for an RPC status."""
        ch = self.channel(call.node, call.caller)
        metadata = call.caller.metadata or None
        m = call.method
        replies: list[bytes] = []  # kept when the status is an error: what arrived before it is checked too
        try:
            if m.client_streaming:
                fn = ch.stream_stream(call.target, request_serializer=None, response_deserializer=None)
                for reply in fn(iter(call.payloads), timeout=self.deadline, metadata=metadata):
                    replies.append(reply)
                return Outcome(Code.OK.name, "", replies)
            if m.server_streaming:
                fn = ch.unary_stream(call.target, request_serializer=None, response_deserializer=None)
                stream = fn(call.payloads[0], timeout=self.deadline, metadata=metadata)
                limit = 1 if m.path.endswith("/Watch") else 64  # Watch never ends; an export may be long
                for reply in stream:
                    replies.append(reply)
                    if len(replies) >= limit:
                        stream.cancel()
                        return Outcome(Code.OK.name, "", replies, cut=True)
                return Outcome(Code.OK.name, "", replies)
            fn = ch.unary_unary(call.target, request_serializer=None, response_deserializer=None)
            reply = fn(call.payloads[0], timeout=self.deadline, metadata=metadata)
            return Outcome(Code.OK.name, "", [reply])
        except grpc.RpcError as err:
            code = err.code()
            return Outcome(code.name if code is not None else "NONE", err.details() or "", replies)
        except Exception as exc:  # the client library refusing something: the harness's fault, reported
            return Outcome("CLIENT_ERROR", repr(exc), replies)

    def run_batch(self, calls: list[Call]) -> None:
        """One hypothesis example: the calls at once, then every check; a new kind of violation raises."""
        if self._dead:
            return  # shrinking after a crash would only shrink towards nothing
        if self.report.requests >= self.hard_limit:
            return  # shrinking past the budget: the violation is kept as first seen
        outcomes = list(self._pool.map(self.execute, calls))
        for call, outcome in zip(calls, outcomes, strict=True):
            self.record(call, outcome)
        self.check_alive(calls)
        first: Violation | None = None
        for call, outcome in zip(calls, outcomes, strict=True):
            for kind, text in self.problems_of(call, outcome):
                key = (call.method.short, kind, outcome.code)
                exc = violation_type(key)(key, text, call, outcome)
                self.note(exc)
                if first is None and self._mine(key):
                    first = exc
        if first is not None:
            raise first

    def _mine(self, key: tuple[str, str, str]) -> bool:
        """Whether this hypothesis run should raise (and shrink) this kind of violation: not when it is already
        recorded, nor while another worker's run is shrinking it (one shrink per kind is enough)."""
        with self._lock:
            if key in self.known:
                return False
            owner = self._claims.setdefault(key, threading.get_ident())
            return owner == threading.get_ident()

    def check_alive(self, calls: Sequence[Call] = ()) -> None:
        for i, proc in self.handle.cluster.procs.items():
            code = proc.poll()
            if code is not None and self._dead is None:
                self._dead = (
                    f"node {self.node_ids[i]} (pid {proc.pid}) exited with {code} during a batch of "
                    f"{len(calls)} calls: {[c.describe() for c in calls]}"
                )
                raise NodeDied(self._dead)

    # ---- bookkeeping

    def record(self, call: Call, outcome: Outcome) -> None:
        """Count the call by method, caller and code; remember what a write that may have applied named (a write
        the caller was not allowed to make never counts, whatever it was answered: if it changed something,
        the final checks must find that)."""
        m = call.method
        with self._lock:
            self.report.requests += 1
            self.report.by_source[call.source] += 1
            self.report.codes[m.short][outcome.code] += 1
            self.report.by_caller[call.caller.name][outcome.code] += 1
            if outcome.code == Code.OK.name and m.name in WRITES:
                self.report.ok_writes[call.caller.name] += 1
            if outcome.code != Code.OK.name:
                self.report.details.setdefault(f"{m.short} {outcome.code}", outcome.details[:200])
            if m.client_streaming:
                self.report.stream_messages += len(call.payloads)
        if not m.served:
            return
        applied = outcome.code == Code.OK.name
        # An ambiguous code, or a status the client could not read: the write may have been applied.
        maybe = applied or outcome.code in AMBIGUOUS or TRAILERS_TOO_LARGE in outcome.details
        if m.path == "/cairn.v1.StateService/PersistStream":
            self._stream_effects(call, outcome)
            return
        if not maybe or m.client_streaming:  # the only other client stream is reflection: no effects
            return
        request = decode(m.request, call.payloads[0])
        if request is None:
            return  # the server could not decode it either
        if self.permits(call.caller, m.path, request) is False:
            return  # refused, or a violation problems_of reports: either way no valid request asked for it
        reply = decode(m.response, outcome.replies[0]) if applied and outcome.replies else None
        with self._lock:
            self.touched.update(effects(m.name, request, reply))
        if reply is not None:
            self._harvest(m.name, reply)

    def _stream_effects(self, call: Call, outcome: Outcome) -> None:
        """PersistStream: each message answered OK or ambiguously, or left unanswered by a failed stream."""
        if outcome.code in REFUSED and not outcome.replies:
            return  # refused before any message was read
        if self.permits(call.caller, call.method.path, None) is False:
            return
        requests = [decode(state_pb2.PersistStreamRequest, p) for p in call.payloads]
        answers = [decode(state_pb2.PersistStreamResponse, r) for r in outcome.replies]
        touched = set()
        for i, request in enumerate(requests):
            if request is None:
                break  # the stream ends at the first message the server cannot decode
            if self.permits(call.caller, PERSIST_STATE, request.persist) is False:
                continue
            answer = answers[i] if i < len(answers) else None
            if answer is None:
                if outcome.code != Code.OK.name:
                    touched.add(("workflow", request.persist.workflow_id))  # unanswered: may have applied
                continue
            if answer.HasField("response") or answer.error.code in AMBIGUOUS_NUMBERS:
                touched.add(("workflow", request.persist.workflow_id))
        with self._lock:
            self.touched.update(touched)

    # ---- access control, as the checks expect it

    def stale(self, access: Access) -> bool:
        """Whether a fuzzed write may have changed what this identity may do (a Bind or Unbind naming it, a
        PutRole or DeleteRole naming one of its roles): its Access is then no longer known."""
        touched = self.touched
        return ("binding", access.identity) in touched or any(("role", r) in touched for r in access.roles)

    def permits(self, caller: Caller, path: str, request: Message | None) -> bool | None:
        """Whether the cluster should carry out this call for this caller, judged by access control alone
        (True / False), or None when the checks cannot tell (an unmodelled caller, a request that names its
        workflows but could not be decoded). Auth off: every call. rules.RULES says which operation a method
        needs on which workflows; a rule that names workflows but gets none (a Heartbeat without leases) needs
        the operation somewhere, as "an identity without a role is refused" says."""
        if not self.profile.auth_enabled:
            return True
        rule = auth_rules.RULES.get(path)
        if rule is None:
            return False  # no access rule: refused (or not served at all)
        if rule.operation == auth_rules.OPEN:
            return True
        if not caller.authenticated:
            return False
        access = caller.access
        if access is None or self.stale(access):
            return None
        if rule.operation == auth_rules.NODE:
            return False  # cluster members only: no fuzz caller is one
        if rule.operation == auth_rules.ANY or access.admin:
            return True
        if rule.scope == auth_rules.SOMEWHERE:
            return access.somewhere(rule.operation)
        if rule.workflow_ids is None:
            return access.allows(rule.operation, "")  # cluster-wide
        if request is None:
            return None
        workflow_ids = rule.workflow_ids(request)
        if not workflow_ids:
            return access.somewhere(rule.operation)
        return all(access.allows(rule.operation, wid) for wid in workflow_ids)

    def access_problems(self, call: Call, outcome: Outcome) -> list[tuple[str, str]]:
        """Auth on: answers access control should not have allowed, refusals that name the wrong reason, and
        valid callers refused what their grants allow."""
        m, caller = call.method, call.caller
        answered = outcome.code == Code.OK.name or bool(outcome.replies)
        if not caller.authenticated:
            if not m.open and answered:
                return [("auth-bypass", f"caller {caller.name} got an answer from {m.path} with auth on")]
            if outcome.code == Code.PERMISSION_DENIED.name:
                # Nobody was identified: the precise refusal is UNAUTHENTICATED (present valid credentials).
                return [("refusal-code", f"caller {caller.name} (no valid credentials) got PERMISSION_DENIED")]
            return []
        access = caller.access
        if access is None:
            return []
        out: list[tuple[str, str]] = []
        request = decode(m.request, call.payloads[0]) if call.payloads and not m.client_streaming else None
        allowed = self.permits(caller, m.path, request)
        if outcome.code == Code.UNAUTHENTICATED.name and not caller.name.startswith("forged-claim"):
            out.append(("refusal-code", f"caller {caller.name} presented a valid token and got UNAUTHENTICATED"))
        if allowed is False and answered:
            kind = "write" if m.name in WRITES else "read"
            names = auth_rules.RULES[m.path].workflow_ids
            where = names(request) if names is not None and request is not None else "the cluster"
            out.append(
                (
                    f"grant-exceeded-{kind}:{access.identity}",
                    f"caller {caller.name} ({access.identity!r}) got an answer from {m.path} on {where}, "
                    "which its grants do not allow",
                )
            )
        if allowed is True and outcome.code == Code.PERMISSION_DENIED.name and not self.stale(access):
            out.append(
                (
                    f"wrongly-refused:{access.identity}",
                    f"caller {caller.name} ({access.identity!r}) refused a call it may make",
                )
            )
        if allowed is None or self.stale(access) or outcome.code != Code.OK.name:
            return out
        # What an answer shows or claims must be within the caller's grants too.
        for raw in outcome.replies:
            reply = decode(m.response, raw)
            if reply is None:
                continue
            shown: list[tuple[str, str]] = []
            if m.name == "ListWorkflows":
                shown = [(auth_model.READ, w.workflow_id) for w in reply.workflows]
            elif m.name == "ListWorkflowRuns":
                shown = [(auth_model.READ, r.workflow_id) for r in reply.runs]
            elif m.name == "PollWork" and reply.HasField("task"):
                shown = [(auth_model.WORK, reply.task.state.workflow_id)]
            elif m.name == "WhoAmI" and reply.identity != access.identity:
                out.append(("whoami", f"caller {caller.name} is {reply.identity!r} to the cluster"))
            leaked = sorted({wid for op, wid in shown if not access.allows(op, wid)})
            if leaked:
                out.append(
                    (
                        f"read-leak:{access.identity}",
                        f"caller {caller.name} ({access.identity!r}) was shown {leaked[:5]}",
                    )
                )
        return out

    def _harvest(self, method: str, reply: Message) -> None:
        """Ids the cluster handed out, for later draws to hit (checkpoints, leases, tokens)."""
        if method == "CreateCheckpoint" and reply.checkpoint.id:
            self.checkpoints.add(reply.checkpoint.id)
        elif method == "PollWork" and reply.HasField("task"):
            self.fencing.add(reply.task.lease.fencing_token)
        elif method == "CreateToken" and reply.info.token_id:
            self.token_ids.add(reply.info.token_id)

    def problems_of(self, call: Call, outcome: Outcome) -> list[tuple[str, str]]:
        """What is wrong with this reply, as (kind, explanation) pairs."""
        m = call.method
        out: list[tuple[str, str]] = []
        allowed = ALLOWED_CODES if m.served else UNSERVED_CODES
        if not m.implemented:
            allowed = ALLOWED_CODES | UNSERVED_CODES
        if outcome.code == "CLIENT_ERROR":
            return [("harness", f"the client library refused the call: {outcome.details}")]
        if outcome.code not in allowed:
            out.append(("code", f"{call.target} answered {outcome.code}, not one of the precise codes"))
        if outcome.code != Code.OK.name and not outcome.details.strip():
            out.append(("no-message", f"{call.target} answered {outcome.code} without a message"))
        if TRAILERS_TOO_LARGE in outcome.details:
            # The client's transport refused the server's status: the caller never learns the real code.
            out.append(("status-lost", f"{call.target}'s status was too large for gRPC's metadata limit"))
        if not m.served:
            return out
        for i, reply in enumerate(outcome.replies):
            if decode(m.response, reply) is None:
                out.append(("unparseable-reply", f"reply {i} ({reply[:64].hex()}) is not a {m.response.__name__}"))
                break
        if m.path == "/cairn.v1.StateService/PersistStream":
            out.extend(stream_problems(call, outcome))
        if self.profile.auth_enabled:
            out.extend(self.access_problems(call, outcome))
            if m.path == PERSIST_STREAM and call.caller.access is not None:
                out.extend(self.stream_access_problems(call, outcome))
        return out

    def stream_access_problems(self, call: Call, outcome: Outcome) -> list[tuple[str, str]]:
        """PersistStream: every message answered OK wrote a workflow the caller may write."""
        requests = [decode(state_pb2.PersistStreamRequest, p) for p in call.payloads]
        for i, raw in enumerate(outcome.replies):
            answer = decode(state_pb2.PersistStreamResponse, raw)
            if answer is None or not answer.HasField("response") or i >= len(requests) or requests[i] is None:
                continue
            request = requests[i].persist
            if self.permits(call.caller, PERSIST_STATE, request) is False:
                return [
                    (
                        f"grant-exceeded-write:{call.caller.access.identity}",
                        f"caller {call.caller.name} persisted {request.workflow_id!r} over a stream, "
                        "which its grants do not allow",
                    )
                ]
        return []

    def note(self, exc: Violation) -> None:
        with self._lock:
            record = self._records.get(exc.key)
            if record is None:
                record = ViolationRecord(
                    exc.key, exc.text, 0, exc.call.describe(), f"{exc.outcome.code} {exc.outcome.details!r}"
                )
                self._records[exc.key] = record
                self.report.violations.append(record)
            record.count += 1

    def adopt(self, exc: BaseException) -> bool:
        """After a hypothesis run: record the (shrunk) violations it raised; False if it raised something else."""
        found = list(violations_in(exc))
        with self._lock:
            self._adopt(found)
        return bool(found)

    def _adopt(self, found: list[Violation]) -> None:
        for v in found:
            record = self._records.get(v.key)
            if record is not None:  # hypothesis raises the minimal example last: keep that as the reproducer
                record.request = v.call.describe()
                record.reply = f"{v.outcome.code} {v.outcome.details!r}"
                record.text = v.text
                record.shrunk = True
            self.known.add(v.key)

    def _release_claims(self) -> None:
        """At the end of a hypothesis run: what it claimed is recorded, so no run raises it again."""
        me = threading.get_ident()
        with self._lock:
            for key, owner in list(self._claims.items()):
                if owner == me:
                    self.known.add(key)
                    del self._claims[key]

    # ---- setup

    def admin_create_token(self, caller: Caller, identity: str, request: Message | None = None) -> str:
        request = request or auth_pb2.CreateTokenRequest(identity=identity)
        reply = self.leader_call(caller, "/cairn.v1.AuthService/CreateToken", request, auth_pb2.CreateTokenResponse)
        self.seeded_tokens[reply.info.token_id] = identity
        self.touched.add(("token", identity))
        return reply.token

    def setup(self) -> None:
        """Credentials, then what the requests aim at: pooled workflows (a plain state with a checkpoint, a
        run, a labelled state), a victim token, and sentinels that no drawn request names."""
        self.handle.wait_leader()
        if self.profile.bootstrap is not None:
            self.admin, extra = self.profile.bootstrap(self)
            self.callers.extend(extra)
        admin = self.admin
        sp, wp, ap = "/cairn.v1.StateService/", "/cairn.v1.WorkflowService/", "/cairn.v1.AuthService/"

        def persist(wid: str, **kw: Any) -> None:
            self.leader_call(
                admin,
                sp + "PersistState",
                state_pb2.PersistStateRequest(workflow_id=wid, **kw),
                state_pb2.PersistStateResponse,
            )

        def start(wid: str, wtype: str) -> None:
            self.leader_call(
                admin,
                wp + "StartWorkflow",
                workflow_pb2.StartWorkflowRequest(workflow_id=wid, workflow_type=wtype, request_id=f"seed-{wid}"),
                workflow_pb2.StartWorkflowResponse,
            )

        variables = struct_pb2.Struct()
        variables.update({"n": 1, "s": "x", "l": [1, 2], "m": {"k": None}})
        persist("fz/a", current_step="s1", variables=variables, request_id="seed-a1")
        cp = self.leader_call(
            admin,
            sp + "CreateCheckpoint",
            state_pb2.CreateCheckpointRequest(workflow_id="fz/a", request_id="seed-cp"),
            state_pb2.CreateCheckpointResponse,
        )
        self.checkpoints.add(cp.checkpoint.id)
        start("fz/b", WORKFLOW_TYPES[0])
        persist("fz/c", current_step="s1", labels={"env": "fz"}, request_id="seed-c1")
        persist(SENTINEL_WORKFLOW, current_step="s1", variables=variables, request_id="seed-sentinel")
        persist(SENTINEL_NARROW, current_step="s1", variables=variables, request_id="seed-sentinel-narrow")
        start(SENTINEL_RUN, SENTINEL_TYPE)
        role = auth_pb2.Role(
            name=SENTINEL_ROLE, grants=[auth_pb2.Grant(operations=[auth_pb2.OP_READ], namespace="fz-sentinel/")]
        )
        self.leader_call(admin, ap + "PutRole", auth_pb2.PutRoleRequest(role=role), auth_pb2.PutRoleResponse)
        self.leader_call(
            admin, ap + "Bind", auth_pb2.BindRequest(identity=SENTINEL_USER, role=SENTINEL_ROLE), auth_pb2.BindResponse
        )
        self.fixed_roles[SENTINEL_ROLE] = role.SerializeToString(deterministic=True)
        self.fixed_bindings[SENTINEL_USER] = (SENTINEL_ROLE,)
        self.token_ids.add(_token_id(self.admin_create_token(admin, VICTIM_IDENTITY)))
        for wid in (*WORKFLOW_IDS, *SENTINELS):
            got = self.leader_call(
                admin, sp + "GetState", state_pb2.GetStateRequest(workflow_id=wid), state_pb2.GetStateResponse
            )
            self.seeded[wid] = (got.state.version, got.state.metadata.checksum)
        for wid in WORKFLOW_IDS:
            self.touched.add(("workflow", wid))  # pooled: the fuzz may change them; the sentinels stay out

    # ---- strategies of whole batches

    def call_strategy(self, source: str) -> st.SearchStrategy[Call]:
        cached = self._call_strategies.get(source)
        if cached is None:
            cached = self._call_strategies[source] = self._build_call_strategy(source)
        return cached

    def _build_call_strategy(self, source: str) -> st.SearchStrategy[Call]:
        weighted = [m for m in self.methods for _ in range(m.weight)]
        nodes = st.integers(0, len(self.node_ids) - 1)
        callers = st.sampled_from([c for c in self.callers for _ in range(c.weight)])
        s = self.strategies
        # Built once per method: a strategy made inside each draw (flatmap) costs more than the draw.
        payloads: dict[str, st.SearchStrategy[tuple[bytes, ...]]] = {}
        for m in self.methods:
            one = s.request(m) if source == "structured" else s.raw(m)
            payloads[m.path] = st.lists(one, max_size=5).map(tuple) if m.client_streaming else one.map(lambda p: (p,))
        unserved_paths = st.one_of(
            st.sampled_from(UNSERVED_PATHS),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=24).map(lambda t: "/" + t),
        )

        @st.composite
        def call(draw: st.DrawFn) -> Call:
            if draw(st.integers(0, 39)) == 39:  # one call in forty to a method nobody serves
                path = draw(unserved_paths)
                return Call(UNSERVED, draw(nodes), draw(callers), (draw(st.binary(max_size=16)),), source, path)
            m = draw(st.sampled_from(weighted))
            return Call(m, draw(nodes), draw(callers), draw(payloads[m.path]), source)

        return call()

    def run_chunk(self, source: str, examples: int) -> None:
        """One hypothesis run of `examples` batches; violations it raises (shrunk) are recorded."""
        strategy = st.lists(self.call_strategy(source), min_size=1, max_size=self.batch)

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=False,
            phases=(Phase.explicit, Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            report_multiple_bugs=True,
        )
        @given(batch=strategy)
        def fuzz(batch: list[Call]) -> None:
            with self._lock:
                self.report.examples += 1
            self.run_batch(batch)

        try:
            fuzz()
        except NodeDied:
            raise
        except BaseException as exc:
            if self._dead:
                raise NodeDied(self._dead) from exc
            if not self.adopt(exc):
                raise
        finally:
            self._release_claims()

    # ---- the edge pass

    def edge_calls(self) -> list[Call]:
        """Fixed inputs for every method: empty, junk, bad UTF-8, max varint, a huge length, all-max and
        all-min messages; and one request over the server's 64 MiB message limit."""
        if self._edges is None:
            self._edges = self._build_edges()
        return self._edges

    def _build_edges(self) -> list[Call]:
        junk = (
            b"",
            b"\xff",
            b"\x0a\x02\xff\xfe",
            b"\x08" + b"\xff" * 9 + b"\x01",
            b"\x12\xff\xff\xff\xff\x0f",
            b"\x0b",
            b"\x0c",
            b"\x0f",
        )
        calls = []
        for n, m in enumerate(self.methods):
            payloads = [*junk, extreme_message(m.request, True), extreme_message(m.request, False)]
            for k, p in enumerate(payloads):
                caller = self.callers[(n + k) % len(self.callers)]
                calls.append(Call(m, (n + k) % len(self.node_ids), caller, (p,), "edge"))
        persist = next(m for m in self.methods if m.name == "PersistState")
        oversize = tag(1, 2) + varint(4) + b"fz/a" + tag(2, 2) + varint(65 * MiB) + b"x" * (65 * MiB)
        calls.append(Call(persist, 0, self.callers[0], (oversize,), "edge"))
        return calls

    def run_edges(self) -> None:
        calls = self.edge_calls()
        for i in range(0, len(calls), self.batch):
            batch = calls[i : i + self.batch]
            try:
                self.run_batch(batch)
            except Violation as exc:
                self.known.add(exc.key)  # recorded by note(); edge inputs are already minimal

    # ---- whole-run checks

    def rss(self) -> dict[str, int]:
        out = {}
        for i, proc in self.handle.cluster.procs.items():
            try:
                text = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            line = next((ln for ln in text.splitlines() if ln.startswith("VmRSS:")), "VmRSS: 0 kB")
            out[self.node_ids[i]] = int(line.split()[1])
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """user + system CPU time of each node process (for the report: where the run's time went)."""
        out = {}
        tick = os.sysconf("SC_CLK_TCK")
        for i, proc in self.handle.cluster.procs.items():
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[self.node_ids[i]] = round((int(fields[11]) + int(fields[12])) / tick, 1)
        return out

    def final_checks(self) -> None:
        problems = self.report.problems
        for i, proc in self.handle.cluster.procs.items():
            if proc.poll() is not None:
                problems.append(f"node {self.node_ids[i]} exited with {proc.returncode}")
        if problems:
            return
        for i in range(len(self.node_ids)):
            try:
                wait_until(
                    lambda i=i: self.unary(
                        i,
                        self.admin,
                        "/cairn.v1.ClusterService/Status",
                        cluster_pb2.StatusRequest(),
                        cluster_pb2.StatusResponse,
                        2,
                    ),
                    20,
                    f"node {self.node_ids[i]} does not answer Status",
                )
            except AssertionError as exc:
                problems.append(str(exc))
        self.report.rss_after = self.rss()
        for node, after in self.report.rss_after.items():
            grown = (after - self.report.rss_before.get(node, after)) / 1024
            if grown > self.rss_bound_mib:
                problems.append(f"node {node}: RSS grew by {grown:.1f} MiB (bound {self.rss_bound_mib} MiB)")
        if problems:
            return
        try:
            self.check_state()
        except Exception as exc:  # a check that could not run is a failed check, reported with the rest
            problems.append(f"the final state checks failed to run: {exc!r}")

    def _list_all(self, node: int, index: int) -> dict[str, tuple[int, str]]:
        read = state_pb2.ReadOptions(consistency=state_pb2.SERIALIZABLE, min_index=index)
        out: dict[str, tuple[int, str]] = {}
        token = ""
        while True:
            page = self.unary(
                node,
                self.admin,
                "/cairn.v1.StateService/ListWorkflows",
                state_pb2.ListWorkflowsRequest(limit=1000, page_token=token, read=read),
                state_pb2.ListWorkflowsResponse,
                timeout=30,
            )
            out.update((w.workflow_id, (w.version, w.current_step)) for w in page.workflows)
            token = page.next_page_token
            if not token:
                return out

    def check_state(self) -> None:
        """Every node agrees, nothing exists or changed that no write asked for, every audit chain holds."""
        problems = self.report.problems
        sp, ap = "/cairn.v1.StateService/", "/cairn.v1.AuthService/"
        # The leader's applied index after a read barrier covers every committed write; each node lists its
        # replica once it has applied that much. The scheduler may still write (lease expiries of fuzzed runs),
        # so the views are compared at fresh indexes until they agree or the deadline passes.
        deadline = time.monotonic() + 60
        while True:
            head = self.leader_call(
                self.admin,
                sp + "ListWorkflows",
                state_pb2.ListWorkflowsRequest(limit=1),
                state_pb2.ListWorkflowsResponse,
            )
            index = head.header.applied_index
            views = [self._list_all(i, index) for i in range(len(self.node_ids))]
            if all(view == views[0] for view in views) or time.monotonic() > deadline:
                break
        for i, view in enumerate(views[1:], 1):
            if view != views[0]:
                diff = sorted(set(view.items()) ^ set(views[0].items()))[:10]
                problems.append(f"node {self.node_ids[i]} lists other workflows than {self.node_ids[0]}: {diff}")
        listed = views[0]
        self.report.notes.append(f"{len(listed)} workflows in the cluster at the end (applied index {index})")
        types = {t for kind, t in self.touched if kind == "type"}
        for wid in sorted(listed):
            if ("workflow", wid) in self.touched or wid in self.seeded:
                continue
            got = self.leader_call(
                self.admin, sp + "GetState", state_pb2.GetStateRequest(workflow_id=wid), state_pb2.GetStateResponse
            )
            if got.state.HasField("run") and got.state.run.workflow_type in types:
                continue  # a PollWork for its type timed out: it may have claimed this run
            problems.append(f"workflow {wid!r} exists, but no write that may have applied named it")
        for wid in SENTINELS:
            got = self.leader_call(
                self.admin, sp + "GetState", state_pb2.GetStateRequest(workflow_id=wid), state_pb2.GetStateResponse
            )
            now = (got.state.version, got.state.metadata.checksum)
            if now != self.seeded[wid]:
                problems.append(f"sentinel {wid!r} changed: {self.seeded[wid]} -> {now}")
        self._validate_all(sorted(listed))
        # Access-control tables: the same on every node, and only what writes named.
        tables = []
        for i in range(len(self.node_ids)):
            roles = self.unary(i, self.admin, ap + "ListRoles", auth_pb2.ListRolesRequest(), auth_pb2.ListRolesResponse)
            binds = self.unary(
                i, self.admin, ap + "ListBindings", auth_pb2.ListBindingsRequest(), auth_pb2.ListBindingsResponse
            )
            toks = self.unary(
                i, self.admin, ap + "ListTokens", auth_pb2.ListTokensRequest(), auth_pb2.ListTokensResponse
            )
            tables.append(
                (
                    sorted(r.SerializeToString(deterministic=True) for r in roles.roles),
                    sorted(b.SerializeToString(deterministic=True) for b in binds.bindings),
                    sorted(t.SerializeToString(deterministic=True) for t in toks.tokens),
                )
            )
        if any(t != tables[0] for t in tables):
            problems.append("the access-control tables differ between nodes")
        role_now = {r.name: r.SerializeToString(deterministic=True) for r in roles.roles}
        for name, encoded in role_now.items():
            if ("role", name) in self.touched:
                continue
            if name not in self.fixed_roles:
                problems.append(f"role {name!r} exists, but no write named it")
            elif encoded != self.fixed_roles[name]:
                problems.append(f"role {name!r} changed, but no write named it: {auth_pb2.Role.FromString(encoded)}")
        for name in self.fixed_roles.keys() - role_now.keys():
            if ("role", name) not in self.touched:
                problems.append(f"role {name!r} vanished, but no write named it")
        bound_now = {b.identity: tuple(sorted(b.roles)) for b in binds.bindings}
        for who, bound in bound_now.items():
            if ("binding", who) in self.touched:
                continue
            if who not in self.fixed_bindings:
                problems.append(f"binding of {who!r} exists, but no write named it")
            elif bound != self.fixed_bindings[who]:
                problems.append(f"binding of {who!r} changed to {bound}, but no write named it")
        for who in self.fixed_bindings.keys() - bound_now.keys():
            if ("binding", who) not in self.touched:
                problems.append(f"binding of {who!r} vanished, but no write named it")
        present = {t.token_id: t.identity for t in toks.tokens}
        for token_id, who in present.items():
            if ("token", who) not in self.touched:
                problems.append(f"token {token_id} of {who!r} exists, but no CreateToken named it")
        for token_id in self.seeded_tokens:
            if token_id not in present and ("token_id", token_id) not in self.touched:
                problems.append(f"token {token_id} vanished, but no RevokeToken named it")
        heads = []
        for i in range(len(self.node_ids)):
            verdict = self.unary(
                i,
                self.admin,
                "/cairn.v1.AuditService/VerifyAudit",
                audit_pb2.VerifyAuditRequest(),
                audit_pb2.VerifyAuditResponse,
                timeout=60,
            )
            if not verdict.ok:
                problems.append(f"audit chain of {self.node_ids[i]} broken at {verdict.broken_seq}: {verdict.problem}")
            heads.append((verdict.applied_index, verdict.head_seq, verdict.head_hash.hex()))
        self.report.notes.append(f"audit chain heads (applied index, seq, hash): {heads}")
        if self.profile.auth_enabled:
            self._check_audited_writers()

    def _check_audited_writers(self) -> None:
        """Auth on: the audit log names who made each change, so every record must be one its identity may have
        made: the admin's, the cluster's own (`cairn:...`), the narrow identity's writes in its namespace;
        nobody else's (anonymous, an identity without a role, a forged claim's). This covers the pooled
        workflows too, which the write bookkeeping lets the fuzz change."""
        fn = self.channel(self.handle.wait_leader(), self.admin).unary_stream(
            "/cairn.v1.AuditService/ExportAudit",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=audit_pb2.AuditRecord.FromString,
        )
        records = list(fn(audit_pb2.ExportAuditRequest(), timeout=120, metadata=self.admin.metadata or None))
        known = {c.access.identity: c.access for c in self.callers if c.access is not None}
        wrong: Counter = Counter()
        first: dict[tuple[str, str], audit_pb2.AuditRecord] = {}
        for r in records:
            if r.operation.startswith("read.") and r.code != 0:
                continue  # a refused read, recorded as refused
            access = known.get(r.identity)
            if r.identity.startswith("cairn:") or (access is not None and (access.admin or self.stale(access))):
                continue
            needs = auth_model.READ if r.operation.startswith("read.") else AUDITED_OPERATION.get(r.operation)
            if access is not None and needs is not None and access.allows(needs, r.workflow_id):
                continue
            wrong[(r.identity, r.operation)] += 1
            first.setdefault((r.identity, r.operation), r)
        for (who, operation), n in sorted(wrong.items()):
            r = first[(who, operation)]
            self.report.problems.append(
                f"audit: {n} {operation!r} record(s) by {who!r}, who may not make them; first: seq {r.seq}, "
                f"workflow {r.workflow_id!r}, request {r.request_id!r}, code {r.code} {r.message!r}"
            )
        self.report.notes.append(
            f"audit: {len(records)} records checked, by {dict(Counter(r.identity for r in records).most_common())}"
        )

    def _validate_all(self, workflow_ids: list[str]) -> None:
        def validate(wid: str) -> str | None:
            reply = self.leader_call(
                self.admin,
                "/cairn.v1.StateService/ValidateState",
                state_pb2.ValidateStateRequest(workflow_id=wid),
                state_pb2.ValidateStateResponse,
            )
            if reply.valid:
                return None
            return f"ValidateState({wid!r}) found {[(p.code, p.node_id, p.message) for p in reply.problems]}"

        with ThreadPoolExecutor(4) as pool:
            for problem in pool.map(validate, workflow_ids):
                if problem:
                    self.report.problems.append(problem)

    # ---- the run

    def run(self, requests: int, warmup: int | None = None) -> Report:
        """Setup, a warm-up slice, fuzz until `requests` calls were sent, the edge pass, the final checks.

        `workers` hypothesis runs go on at once (hypothesis is thread-safe for distinct tests): one draws its
        next batch while another's calls are in flight, and each keeps its own examples and shrinking."""
        self.setup()
        warmup = warmup if warmup is not None else min(max(requests // 10, 500), 10_000)
        target = max(0, requests - len(self.edge_calls()))
        self.hard_limit = target + max(500, requests // 20)
        start = time.monotonic()
        cpu_start = os.times().user + os.times().system
        sent = {"structured": 0, "raw": 0}
        reserved = {"structured": 0, "raw": 0}
        failures: list[BaseException] = []

        def worker() -> None:
            try:
                while not failures:
                    with self._lock:
                        # Calls promised to running chunks count as sent, so that workers neither overshoot the
                        # budget together nor all pick the same source; the one furthest behind its share goes.
                        left = target - self.report.requests - sum(reserved.values())
                        if left <= 0:
                            return
                        raw_due = reserved["raw"] + sent["raw"] < self.raw_share * (
                            sum(reserved.values()) + sum(sent.values()) + 1
                        )
                        source = "raw" if raw_due else "structured"
                        per_example = self.report.requests / max(1, self.report.examples) or 8.0
                        examples = int(max(3, min(150, left / per_example / self.workers)))
                        promised = int(examples * per_example)
                        reserved[source] += promised
                    before = self.report.requests
                    try:
                        self.run_chunk(source, examples)
                    finally:
                        with self._lock:
                            reserved[source] -= promised
                    with self._lock:
                        sent[source] += self.report.requests - before
                        if not self.report.rss_before and self.report.requests >= warmup:
                            self.report.rss_before = self.rss()
                            self.log(f"warm-up: {self.report.requests} requests, RSS KiB {self.report.rss_before}")
                    self.log(
                        f"{self.report.requests}/{requests} requests, {time.monotonic() - start:.0f} s, "
                        f"{len(self.report.violations)} violation kinds"
                    )
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=worker, name=f"fuzz-worker-{i}") for i in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            for exc in failures:
                raise exc
            if not self.report.rss_before:
                self.report.rss_before = self.rss()
            self.hard_limit = float("inf")
            self.run_edges()
            self.check_alive()
        except NodeDied as exc:
            self.report.problems.append(str(exc))
        self.report.seconds = time.monotonic() - start
        client = os.times()
        self.report.notes.append(
            f"CPU seconds during the run: nodes {self.cpu_seconds()}, "
            f"this process {client.user + client.system - cpu_start:.1f}"
        )
        self.final_checks()
        self.close()
        return self.report


# ---- effects of writes ----------------------------------------------------------------------------------------

WORKFLOW_WRITES = frozenset(
    {
        "PersistState",
        "DeleteWorkflow",
        "CreateCheckpoint",
        "RecoverFromCheckpoint",
        "StartWorkflow",
        "CancelWorkflow",
        "ReleaseWorkflow",
        "RecordStep",
        "CompleteWorkflow",
        "FailWorkflow",
    }
)


PERSIST_STATE = "/cairn.v1.StateService/PersistState"
PERSIST_STREAM = "/cairn.v1.StateService/PersistStream"
#: Methods that change something when they answer OK (for the report's OK-writes count and the access checks).
WRITES = WORKFLOW_WRITES | {
    "PersistStream",
    "Heartbeat",
    "PollWork",
    "PutRole",
    "DeleteRole",
    "Bind",
    "Unbind",
    "CreateToken",
    "RevokeToken",
    "Snapshot",
    "TransferLeadership",
    "RotateKeys",
}


def effects(method: str, request: Message, reply: Message | None) -> set[tuple[str, str]]:
    """What a write that applied (or may have) was allowed to change."""
    if method in WORKFLOW_WRITES:
        return {("workflow", request.workflow_id)}
    if method == "Heartbeat":
        return {("workflow", lease.workflow_id) for lease in request.leases}
    if method == "PollWork":
        if reply is not None:
            return {("workflow", reply.task.state.workflow_id)} if reply.HasField("task") else set()
        return {("type", t) for t in request.workflow_types}  # which run it claimed is unknown
    if method in ("PutRole",):
        return {("role", request.role.name)}
    if method == "DeleteRole":
        return {("role", request.name)}
    if method in ("Bind", "Unbind"):
        return {("binding", request.identity)}
    if method == "CreateToken":
        return {("token", request.identity)}
    if method == "RevokeToken":
        return {("token_id", request.token_id)}
    return set()


def stream_problems(call: Call, outcome: Outcome) -> list[tuple[str, str]]:
    """PersistStream: each answer in request order with the request's sequence; errors with precise codes."""
    out: list[tuple[str, str]] = []
    requests = [decode(state_pb2.PersistStreamRequest, p) for p in call.payloads]
    decodable = list(itertools.takewhile(lambda r: r is not None, requests))
    answers = [decode(state_pb2.PersistStreamResponse, r) for r in outcome.replies]
    if len(answers) > len(decodable):
        out.append(("stream-extra-answers", f"{len(answers)} answers to {len(decodable)} decodable requests"))
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        if i < len(decodable) and answer.sequence != decodable[i].sequence:
            out.append(
                ("stream-order", f"answer {i} has sequence {answer.sequence}, request {i} had {decodable[i].sequence}")
            )
            break
        if answer.HasField("error"):
            if answer.error.code not in ALLOWED_NUMBERS or answer.error.code == 0:
                out.append(
                    ("stream-error-code", f"answer {i} carries code {answer.error.code}: {answer.error.message!r}")
                )
            elif not answer.error.message.strip():
                out.append(
                    ("stream-error-no-message", f"answer {i} carries code {answer.error.code} without a message")
                )
        elif not answer.HasField("response"):
            out.append(("stream-empty-answer", f"answer {i} has neither a response nor an error"))
    if outcome.code == Code.OK.name and len(answers) != len(decodable) and len(decodable) == len(requests):
        out.append(("stream-missing-answers", f"{len(answers)} answers to {len(requests)} requests, stream OK"))
    if outcome.code == Code.INVALID_ARGUMENT.name and len(decodable) < len(requests) and len(answers) < len(decodable):
        # The stream ends at the undecodable message, "after every answer to the requests before it".
        out.append(
            (
                "stream-lost-answers",
                f"{len(answers)} answers to the {len(decodable)} requests before the undecodable one",
            )
        )
    return out


def decode(cls: type[Message], data: bytes) -> Message | None:
    try:
        return cls.FromString(data)
    except Exception:  # DecodeError, or a RecursionError on deep nesting
        return None


def violations_in(exc: BaseException) -> Iterable[Violation]:
    """The Violations in whatever hypothesis raised (one, an ExceptionGroup of several, a Flaky wrapper)."""
    if isinstance(exc, Violation):
        yield exc
    for inner in getattr(exc, "exceptions", ()) or ():
        yield from violations_in(inner)
    if exc.__cause__ is not None and exc.__cause__ is not exc:
        yield from violations_in(exc.__cause__)


def _token_id(token: str) -> str:
    return token.split(".")[1]


# ---- command line -----------------------------------------------------------------------------------------


def fuzz_cluster(
    data_dir: Path,
    requests: int,
    *,
    nodes: int = 3,
    profile: Profile | None = None,
    log: Callable[[str], None] = lambda _: None,
    **kwargs: Any,
) -> Report:
    """Start a cluster in data_dir, fuzz it with `requests` calls, stop it; the report."""
    profile = profile or PROFILES["plain"]
    handle = start_cluster(data_dir, nodes, overrides=profile.cluster_overrides(data_dir), secure=profile.secure)
    try:
        fuzzer = Fuzzer(handle, profile, log=log, **kwargs)
        report = fuzzer.run(requests)
        if report.failed:
            for i in range(handle.size):
                report.notes.append(f"{handle.cluster.specs[i].node_id} log tail:\n{handle.cluster.log_tail(i, 30)}")
        return report
    finally:
        handle.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000, help="calls to send in all (default 100000)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, help="where the cluster lives (default: a new temp directory)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="plain")
    parser.add_argument("--deadline", type=float, default=2.0, help="per-call deadline in seconds")
    parser.add_argument("--rss-bound-mib", type=float, default=150.0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--json-file", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="cairn-fuzz-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        report = fuzz_cluster(
            data_dir,
            args.requests,
            nodes=args.nodes,
            profile=PROFILES[args.profile],
            deadline=args.deadline,
            rss_bound_mib=args.rss_bound_mib,
            log=log,
        )
    if args.json_file:
        args.json_file.write_text(json.dumps(report.as_dict(), indent=2))
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.table())
    return 1 if report.failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

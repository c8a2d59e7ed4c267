"""Access control's pure parts: tokens, grants on prefixes, the rule table's coverage, signed claims."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from cairn.v1 import audit_pb2, auth_pb2, cluster_pb2, state_pb2, workflow_pb2
from cairn_server.auth import tokens
from cairn_server.auth.identity import CALLER_KEY, CALLER_MAC_KEY, Caller, Claims
from cairn_server.auth.model import AuthTable, role_problem
from cairn_server.auth.rules import RULES
from cairn_server.errors import Unauthenticated
from cairn_server.internal import command_pb2

SEC = 1_000_000_000


def test_every_served_method_has_a_rule() -> None:
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in (state_pb2, workflow_pb2, cluster_pb2, auth_pb2, audit_pb2, command_pb2)
        + (health_pb2, reflection_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods - set(RULES) == set()
    assert set(RULES) - methods == set()  # no rule for a method that does not exist (a typo would leave one open)


def test_a_token_verifies_only_with_its_secret_and_until_it_expires() -> None:
    text, stored = tokens.new_token("ci-bot", now_ns=100 * SEC, ttl_seconds=60)
    assert text.startswith("cairn.") and stored.token_id in text
    secret_part = text.split(".")[2]
    assert secret_part.encode() not in stored.SerializeToString()  # only the salted hash is kept
    token_id, secret = tokens.parse(text)
    assert token_id == stored.token_id and tokens.matches(stored, secret)
    assert not tokens.matches(stored, bytes(32))
    assert not tokens.expired(stored, 159 * SEC) and tokens.expired(stored, 160 * SEC)
    for bad in ("", "cairn", "cairn..", "other.abc.def", f"cairn.{token_id}.!!!", f"cairn.{token_id}.c2hvcnQ"):
        assert tokens.parse(bad) is None, bad
    _, forever = tokens.new_token("x", now_ns=0, ttl_seconds=0)
    assert not tokens.expired(forever, 10**19)


def role(name: str, *grants: tuple[list[int], str]) -> auth_pb2.Role:
    return auth_pb2.Role(name=name, grants=[auth_pb2.Grant(operations=ops, namespace=ns) for ops, ns in grants])


def test_grants_apply_to_their_prefix_and_admin_implies_everything() -> None:
    table = AuthTable(
        roles={
            "billing-rw": role("billing-rw", ([auth_pb2.OP_READ, auth_pb2.OP_WRITE], "billing/")),
            "ops": role("ops", ([auth_pb2.OP_ADMIN], "")),
        },
        bindings={"alice": ("billing-rw",), "root": ("ops",), "ghost": ("missing-role",)},
        bootstrap_admin="boot",
    )
    assert table.allows("alice", "write", "billing/42") and table.allows("alice", "read", "billing/")
    assert not table.allows("alice", "write", "shipping/1") and not table.allows("alice", "checkpoint", "billing/1")
    assert not table.allows("alice", "admin") and table.allows_somewhere("alice", "read")
    assert not table.allows_somewhere("alice", "work")
    assert table.allows("root", "recover", "anything") and table.is_admin("root")
    assert table.is_admin("boot") and table.allows("boot", "work", "x")
    assert not table.allows("ghost", "read", "x") and not table.allows("", "read", "x")
    assert not table.allows("nobody", "read", "billing/1")


def test_role_validation_names_the_problem() -> None:
    assert role_problem(role("", ([auth_pb2.OP_READ], ""))) is not None
    assert "no grants" in role_problem(auth_pb2.Role(name="r"))
    assert "no operations" in role_problem(role("r", ([], "x/")))
    assert "unknown operation" in role_problem(role("r", ([99], "x/")))
    assert role_problem(role("r", ([auth_pb2.OP_READ], "x/"))) is None


def test_a_claim_verifies_only_for_its_request_and_with_the_cluster_secret() -> None:
    claims = Claims("s" * 32)
    caller = Caller("alice", "certificate")
    request = state_pb2.PersistStateRequest(workflow_id="billing/1", request_id="r1")
    metadata = dict(claims.sign("PersistState", caller, request))
    assert claims.verify("PersistState", metadata, request) == caller
    assert claims.verify("PersistState", {}, request) is None  # no claim: the caller speaks for itself
    other = state_pb2.PersistStateRequest(workflow_id="billing/2", request_id="r1")
    for method, meta, req in (
        ("PersistState", metadata, other),  # replayed onto another request
        ("DeleteWorkflow", metadata, request),  # onto another method
        ("PersistState", {**metadata, CALLER_KEY: "root"}, request),  # another identity
        ("PersistState", {**metadata, CALLER_MAC_KEY: "00" * 32}, request),  # forged
    ):
        with pytest.raises(Unauthenticated):
            claims.verify(method, meta, req)
    with pytest.raises(Unauthenticated):
        Claims("t" * 32).verify("PersistState", metadata, request)  # another cluster's secret
    assert Claims(None).sign("PersistState", caller, request) == ()


def test_a_read_rechecked_after_its_barrier_sees_an_unbind_applied_meanwhile(tmp_path) -> None:
    from cairn_server.auth import identity
    from cairn_server.auth.interceptor import Authorizer
    from cairn_server.auth.store import AuthStore
    from cairn_server.errors import PermissionDenied
    from cairn_server.statemachine import StateMachine
    from cairn_server.storage import RocksStore

    store = RocksStore(tmp_path)
    machine = StateMachine(store)
    tables = AuthStore(machine, "admin")
    tables.install()

    def auth_entry(index: int, fill) -> None:
        cmd = command_pb2.Command(time_ns=index * SEC)
        fill(cmd.auth)
        assert machine.apply(cmd.SerializeToString(), index).code == 0

    auth_entry(1, lambda op: op.put_role.CopyFrom(role("ro", ([auth_pb2.OP_READ], "b/"))))
    auth_entry(2, lambda op: op.bind.CopyFrom(command_pb2.AuthBindingChange(identity="alice", role="ro")))
    authorizer = Authorizer(tables, Claims("s" * 32), enabled=True)
    alice = Caller("alice", "certificate")
    request = state_pb2.GetStateRequest(workflow_id="b/1")
    method = "/cairn.v1.StateService/GetState"
    token = identity.set_recheck(lambda: authorizer.recheck(method, request, alice))
    try:
        identity.recheck()  # allowed now
        auth_entry(3, lambda op: op.unbind.CopyFrom(command_pb2.AuthBindingChange(identity="alice", role="ro")))
        with pytest.raises(PermissionDenied):
            identity.recheck()
    finally:
        identity.reset_recheck(token)
    identity.recheck()  # outside a call: nothing to check
    store.close()

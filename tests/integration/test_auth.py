"""Access control on real secure clusters (mTLS, auth on): identities from client certificates and bearer
tokens, roles on namespaces, refusals that change nothing, filtered lists, checks repeated on the leader for
forwarded writes, and tokens that never reach a file in plain text."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import grpc
import pytest

from cairn import Client, NotFoundError, PermissionDeniedError, UnauthenticatedError
from cairn.v1 import state_pb2, state_pb2_grpc
from cairn_server.auth.identity import Caller, Claims
from cairn_server.certs import issue, write_private, write_public
from tests.support import ClusterHandle, start_cluster, wait_until

CAIRN = str(Path(sys.executable).parent / "cairn")


def client_for(handle: ClusterHandle, name: str, endpoints: list[str] | None = None) -> Client:
    """A client presenting a certificate for `name` from the cluster's CA."""
    tls = handle.cluster.tls
    directory = tls.dir.parent / "clients"
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    if not cert.exists():
        directory.mkdir(exist_ok=True)
        issued = issue(tls.load_ca(), name, server=False)
        write_private(key, issued.key)
        write_public(cert, issued.cert)
    c = Client(endpoints or handle.cluster.endpoints, ca=tls.ca, cert=cert, key=key, timeout=15.0)
    handle.extra_clients.append(c)
    return c


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    with closing(start_cluster(tmp_path_factory.mktemp("secure"), secure=True)) as handle:
        admin = handle.client
        admin.put_role("billing-rw", ["read,write,checkpoint,recover:billing/"])
        admin.put_role("billing-ro", ["read:billing/"])
        admin.put_role("billing-work", ["work,read:billing/"])
        admin.bind("alice", "billing-rw")
        admin.bind("reader", "billing-ro")
        admin.bind("worker-1", "billing-work")
        yield handle


def test_roles_grant_operations_on_their_namespace_only(secure: ClusterHandle) -> None:
    admin, alice, stranger = secure.client, client_for(secure, "alice"), client_for(secure, "stranger")
    assert alice.persist_state("billing/1", current_step="a", variables={"n": 1}).version == 1
    assert alice.create_checkpoint("billing/1").workflow_id == "billing/1"
    with pytest.raises(PermissionDeniedError, match="'alice' may not write on workflow 'shipping/1'"):
        alice.persist_state("shipping/1", current_step="a")
    with pytest.raises(NotFoundError):
        admin.get_state("shipping/1")  # the refusal changed nothing
    with pytest.raises(PermissionDeniedError):
        stranger.get_state("billing/1")  # a certificate from the CA, but no role
    with pytest.raises(PermissionDeniedError):
        alice.put_role("mine", ["admin"])  # admin actions need admin
    me = alice.whoami()
    assert (me.identity, me.source, me.admin, me.auth_enabled) == ("alice", "certificate", False, True)
    grants = [(g.operations, g.namespace) for g in me.grants]
    assert grants == [(("read", "write", "checkpoint", "recover"), "billing/")]


def test_a_read_only_identity_cannot_write_checkpoint_or_recover(secure: ClusterHandle) -> None:
    admin, reader = secure.client, client_for(secure, "reader")
    state = admin.persist_state("billing/ro", current_step="a", variables={"v": 1})
    cp = admin.create_checkpoint("billing/ro")
    assert reader.get_state("billing/ro").variables == {"v": 1}
    for attempt in (
        lambda: reader.persist_state("billing/ro", current_step="b"),
        lambda: reader.create_checkpoint("billing/ro"),
        lambda: reader.recover_from_checkpoint("billing/ro", cp.id),
        lambda: reader.delete_workflow("billing/ro"),
    ):
        with pytest.raises(PermissionDeniedError):
            attempt()
    after = admin.get_state("billing/ro")
    assert after.version == state.version and len(admin.list_checkpoints("billing/ro")) == 1


def test_list_shows_only_what_the_caller_may_read(secure: ClusterHandle) -> None:
    admin, alice = secure.client, client_for(secure, "alice")
    for wid in ("billing/l1", "billing/l2", "shipping/l1", "hr/l1"):
        admin.persist_state(wid, current_step="s")
    assert {w.workflow_id for w in admin.list_workflows()} >= {"billing/l1", "shipping/l1", "hr/l1"}
    seen = [w.workflow_id for w in alice.list_workflows()]
    assert "billing/l1" in seen and "billing/l2" in seen and all(w.startswith("billing/") for w in seen)
    assert [w.workflow_id for w in alice.list_workflows(prefix="shipping/")] == []
    paged = [w.workflow_id for w in alice.list_workflows(page_size=1)]  # pages of one: still only readable ids
    assert paged == seen
    with pytest.raises(PermissionDeniedError):
        client_for(secure, "stranger").list_workflows()


def test_a_follower_is_no_way_around_the_leader(secure: ClusterHandle) -> None:
    admin = secure.client
    leader = secure.wait_leader()
    follower = next(i for i in range(secure.size) if i != leader)
    # Through a follower: refused there, and the write through the same follower by a permitted caller works.
    reader = client_for(secure, "reader", [secure.endpoint(follower)])
    with pytest.raises(PermissionDeniedError):
        reader.persist_state("billing/fw", current_step="x")
    with pytest.raises(NotFoundError):
        admin.get_state("billing/fw")
    alice_via_follower = client_for(secure, "alice", [secure.endpoint(follower)])
    assert alice_via_follower.persist_state("billing/fw", current_step="ok").version == 1
    records = [r for r in admin.audit_records(limit=1000, tail=True) if r.workflow_id == "billing/fw"]
    assert [(r.identity, r.operation, r.code) for r in records] == [("alice", "persist", 0)]

    # Straight to the leader, as a follower would forward: the leader checks the named caller against its own
    # tables (the transport's certificate, here one with no role at all, is not what it decides by).
    stranger_cert = client_for(secure, "stranger")  # makes the files
    tls, clients = secure.cluster.tls, secure.cluster.tls.dir.parent / "clients"
    creds = grpc.ssl_channel_credentials(
        tls.ca.read_bytes(), (clients / "stranger-key.pem").read_bytes(), (clients / "stranger.pem").read_bytes()
    )
    assert stranger_cert is not None
    claims = Claims(secure.cluster.secret)
    with grpc.secure_channel(secure.endpoint(leader), creds) as channel:
        stub = state_pb2_grpc.StateServiceStub(channel)

        def forwarded(identity: str, workflow_id: str, forge: bool = False) -> grpc.StatusCode:
            request = state_pb2.PersistStateRequest(
                workflow_id=workflow_id, current_step="f", request_id=secrets.token_hex(8)
            )
            metadata = list(claims.sign("PersistState", Caller(identity, "certificate"), request))
            if forge:
                metadata = list(Claims("x" * 32).sign("PersistState", Caller(identity, "certificate"), request))
            try:
                stub.PersistState(request, timeout=10, metadata=[("x-cairn-forwarded", "1"), *metadata])
            except grpc.RpcError as err:
                return err.code()
            return grpc.StatusCode.OK

        assert forwarded("reader", "billing/claim") == grpc.StatusCode.PERMISSION_DENIED
        assert forwarded("alice", "billing/claim", forge=True) == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(NotFoundError):
            admin.get_state("billing/claim")
        assert forwarded("alice", "billing/claim") == grpc.StatusCode.OK


def test_a_worker_claims_only_runs_in_its_namespaces(secure: ClusterHandle) -> None:
    admin, worker = secure.client, client_for(secure, "worker-1")
    admin.start_workflow("fz-type", "shipping/run1")
    admin.start_workflow("fz-type", "billing/run1")
    task = worker.poll_work("w1", ["fz-type"], lease_timeout=30, wait=5)
    assert task is not None and task.run.workflow_id == "billing/run1"
    assert worker.poll_work("w1", ["fz-type"], lease_timeout=30, wait=1) is None  # shipping/run1 is not its
    assert admin.get_workflow("shipping/run1").status == "PENDING"
    with pytest.raises(PermissionDeniedError):
        client_for(secure, "reader").poll_work("w2", ["fz-type"], lease_timeout=30, wait=1)


def test_admin_cli_manages_roles_bindings_and_tokens(secure: ClusterHandle) -> None:
    tls = secure.cluster.tls
    flags = ["--endpoints", ",".join(secure.cluster.endpoints), "--ca", str(tls.ca), "--cert", str(tls.admin_cert),
             "--key", str(tls.admin_key), "--json"]  # fmt: skip

    def cairn(*args: str) -> object:
        proc = subprocess.run([CAIRN, *args, *flags], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    role = cairn("auth", "role", "put", "ops-ro", "--grant", "read:ops/", "--grant", "checkpoint:ops/")
    assert role["name"] == "ops-ro" and len(role["grants"]) == 2
    assert cairn("auth", "bind", "carol", "ops-ro")["roles"] == ["ops-ro"]
    assert cairn("auth", "bindings")["carol"] == ["ops-ro"]
    made = cairn("auth", "token", "create", "carol", "--ttl", "3600")
    assert made["token"].startswith("cairn.") and made["info"]["identity"] == "carol"
    listed = cairn("auth", "token", "list")
    assert made["info"]["token_id"] in [t["token_id"] for t in listed]
    assert made["token"].split(".")[2] not in json.dumps(listed)  # a listing never shows a token
    assert cairn("auth", "bind", "carol", "ops-ro", "--remove")["roles"] == []
    assert "ops-ro" in [r["name"] for r in cairn("auth", "role", "list")]
    cairn("auth", "role", "delete", "ops-ro")


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterHandle, str]]:
    """Clients without certificates (tls.client_auth: none): identities come from bearer tokens only. Encryption
    off, so that a scan of the files could see a token if one were stored."""
    path = tmp_path_factory.mktemp("tokens")
    boot = secrets.token_urlsafe(32)
    (path / "boot-token").write_text(boot + "\n")
    overrides = {
        "tls": {"client_auth": "none"},
        "auth": {"bootstrap_token_file": str(path / "boot-token")},
        "state_storage": {"encryption": {"enabled": False}},
    }
    with closing(start_cluster(path / "cluster", secure=True, overrides=overrides)) as handle:
        yield handle, boot


def token_client(handle: ClusterHandle, token: str | None, endpoints: list[str] | None = None) -> Client:
    c = Client(endpoints or handle.cluster.endpoints, ca=handle.cluster.tls.ca, token=token, timeout=15.0)
    handle.extra_clients.append(c)
    return c


def test_tokens_authenticate_clients_without_certificates(token_cluster: tuple[ClusterHandle, str]) -> None:
    handle, boot = token_cluster
    admin = token_client(handle, boot)
    assert admin.whoami().identity == "admin" and admin.whoami().admin
    admin.put_role("ro", ["read:billing/"])
    admin.bind("ro-bot", "ro")
    token, info = admin.create_token("ro-bot")
    admin.persist_state("billing/t1", current_step="a", variables={"v": 1})
    cp = admin.create_checkpoint("billing/t1")
    bot = token_client(handle, token)
    assert bot.whoami().identity == "ro-bot" and bot.get_state("billing/t1").version == 1
    for attempt in (
        lambda: bot.persist_state("billing/t1", current_step="b"),
        lambda: bot.create_checkpoint("billing/t1"),
        lambda: bot.recover_from_checkpoint("billing/t1", cp.id),
    ):
        with pytest.raises(PermissionDeniedError):
            attempt()
    assert admin.get_state("billing/t1").version == 1 and len(admin.list_checkpoints("billing/t1")) == 1

    with pytest.raises(UnauthenticatedError, match="requires authentication"):
        token_client(handle, None).get_state("billing/t1")
    with pytest.raises(UnauthenticatedError, match="malformed"):
        token_client(handle, "not-a-token").get_state("billing/t1")
    with pytest.raises(UnauthenticatedError, match="not valid"):
        token_client(handle, token[:-4] + "AAAA").get_state("billing/t1")
    admin.revoke_token(info.token_id)
    wait_until(lambda: _refused(bot), 10, "the revoked token to be refused on every node")


def _refused(c: Client) -> bool:
    try:
        c.get_state("billing/t1")
    except UnauthenticatedError:
        return True
    return False


def test_tokens_never_appear_on_disk_or_in_logs(token_cluster: tuple[ClusterHandle, str]) -> None:
    handle, boot = token_cluster
    admin = token_client(handle, boot)
    admin.put_role("scan", ["read,write:scan/"])
    admin.bind("scanner", "scan")
    token, info = admin.create_token("scanner")
    user = token_client(handle, token, [handle.endpoint(i) for i in range(handle.size)])
    for i in range(5):
        user.persist_state(f"scan/{i}", current_step="s")
    for i in range(handle.size):
        admin.snapshot(handle.endpoint(i))  # the tables in snapshot files too
    handle.cluster.stop()
    secret = token.split(".")[2].encode()
    found_id = False
    for path in handle.cluster.data_dir.rglob("*"):
        if path.is_file() and path.name != "boot-token":
            data = path.read_bytes()
            assert secret not in data and boot.encode() not in data, f"{path} holds a token in plain text"
            found_id = found_id or info.token_id.encode() in data
    assert found_id  # the scan reads the files that hold the token table (its id is stored in plain)
    for i in range(handle.size):
        handle.cluster.start_node(i)
    handle.cluster.wait_leader(30)


def test_a_persist_stream_checks_each_message(secure: ClusterHandle) -> None:
    tls, clients = secure.cluster.tls, secure.cluster.tls.dir.parent / "clients"
    client_for(secure, "alice")  # makes alice's files
    leader = secure.wait_leader()
    with Client(
        [secure.endpoint(leader)], ca=tls.ca, cert=clients / "alice.pem", key=clients / "alice-key.pem",
        stream_writes=True, timeout=15.0,
    ) as alice:  # fmt: skip
        assert alice.persist_state("billing/stream", current_step="a").version == 1
        with pytest.raises(PermissionDeniedError, match="shipping/stream"):
            alice.persist_state("shipping/stream", current_step="a")
        assert alice.persist_state("billing/stream", current_step="b").version == 2  # the stream goes on
    with pytest.raises(NotFoundError):
        secure.client.get_state("shipping/stream")


def test_admin_actions_are_audited_with_who_did_them(secure: ClusterHandle) -> None:
    admin = secure.client
    admin.put_role("audited-role", ["read:audited/"])
    admin.bind("dave", "audited-role")
    with pytest.raises(PermissionDeniedError):
        client_for(secure, "dave").persist_state("audited/1", current_step="x")  # refused: nothing proposed
    records = admin.audit_records(limit=200, tail=True)
    admin_ops = [(r.identity, r.operation, r.code) for r in records if r.operation.startswith("auth.")]
    assert ("admin", "auth.put_role", 0) in admin_ops and ("admin", "auth.bind", 0) in admin_ops
    assert not [r for r in records if r.workflow_id == "audited/1"]
    assert all(r.ok for r in admin.audit_verify())


def test_a_non_ascii_identity_writes_through_a_follower(secure: ClusterHandle) -> None:
    admin = secure.client
    admin.bind("José", "billing-rw")
    leader = secure.wait_leader()
    follower = next(i for i in range(secure.size) if i != leader)
    jose = client_for(secure, "José", [secure.endpoint(follower)])
    assert jose.persist_state("billing/jose", current_step="a").version == 1
    records = [r for r in admin.audit_records(limit=200, tail=True) if r.workflow_id == "billing/jose"]
    assert [r.identity for r in records] == ["José"]


def test_an_empty_heartbeat_needs_work_somewhere(secure: ClusterHandle) -> None:
    with pytest.raises(PermissionDeniedError):
        client_for(secure, "stranger").heartbeat("w-x", [])
    assert client_for(secure, "worker-1").heartbeat("w-x", []) == []


def test_the_leader_refuses_a_forwarded_caller_whose_token_was_revoked(
    token_cluster: tuple[ClusterHandle, str],
) -> None:
    handle, boot = token_cluster
    admin = token_client(handle, boot)
    admin.put_role("rv", ["read,write:rv/"])
    admin.bind("rv-bot", "rv")
    token, info = admin.create_token("rv-bot")
    leader = handle.wait_leader()
    claims = Claims(handle.cluster.secret)
    creds = grpc.ssl_channel_credentials(handle.cluster.tls.ca.read_bytes())
    caller = Caller("rv-bot", "token", info.token_id)

    def forwarded() -> grpc.StatusCode:
        request = state_pb2.PersistStateRequest(workflow_id="rv/1", current_step="s", request_id=secrets.token_hex(8))
        metadata = [("x-cairn-forwarded", "1"), *claims.sign("PersistState", caller, request)]
        with grpc.secure_channel(handle.endpoint(leader), creds) as channel:
            try:
                state_pb2_grpc.StateServiceStub(channel).PersistState(request, timeout=10, metadata=metadata)
            except grpc.RpcError as err:
                return err.code()
        return grpc.StatusCode.OK

    assert forwarded() == grpc.StatusCode.OK  # a follower vouching for a valid token's caller
    admin.revoke_token(info.token_id)
    # As a follower behind the revocation would still vouch: the leader checks the token itself.
    assert wait_until(lambda: forwarded() == grpc.StatusCode.UNAUTHENTICATED, 10, "the leader to refuse the token")
    assert token  # the token itself was never sent in the claim

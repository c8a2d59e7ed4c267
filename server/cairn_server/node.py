"""A Cairn node: storage, state machine, Raft replica, read barrier, forwarding and the gRPC server."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from concurrent import futures
from importlib import metadata
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cairn.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    cluster_pb2,
    cluster_pb2_grpc,
    state_pb2,
    state_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from cairn_server.internal import command_pb2, command_pb2_grpc

from . import engine
from .audit.chain import AuditLog
from .audit.reads import ReadAuditor
from .auth.identity import Caller, Claims, audit_identity, token_digest
from .auth.interceptor import AuthInterceptor, Authorizer
from .auth.store import AuthStore
from .config import Config
from .engine.dispatch import Dispatcher
from .engine.scheduler import Scheduler
from .forwarding import Forwarder
from .integrity import clear_rejoining, mark_corrupt, open_verified
from .membership import Membership
from .raft.barrier import ReadBarrier
from .raft.group_commit import MAX_GROUP_BYTES
from .raft.journal import RocksJournal
from .raft.replica import Replica, role_name
from .raft.snapshot import Snapshots
from .rekey import KeyRotation
from .rpc.audit_service import AuditService
from .rpc.auth_service import AuthService
from .rpc.cluster_service import ClusterService
from .rpc.decoding import DecodeErrorsAreInvalidArgument
from .rpc.health import Health
from .rpc.reads import Reader
from .rpc.state_service import NodeService, StateService
from .rpc.workflow_service import WorkflowService
from .rpc.writes import REQUEST_OVERHEAD, Writer
from .statemachine import APPLIED_KEY, StateMachine
from .storage import RocksStore, is_corruption
from .storage.encryption import EncryptionError, Keyring
from .tls import CertificateReloader, TlsMaterial, channel_credentials

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    state_pb2.DESCRIPTOR.services_by_name["StateService"].full_name,
    cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
    workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
)
UNSAFE_LOCAL_READS_ENV = "CAIRN_TEST_ONLY_UNSAFE_LOCAL_READS"


def _version() -> str:
    try:
        return metadata.version("cairn")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Node:
    def __init__(self, config: Config):
        self.config = config
        self.version = _version()
        self.started_at = time.monotonic()
        cluster = config.cluster
        # Test-only: serve linearizable reads from the local replica without a barrier, so that the
        # chaos suite can prove its checker catches stale reads. Never set by any config key.
        self.unsafe_local_reads = os.environ.get(UNSAFE_LOCAL_READS_ENV) == "1"
        if self.unsafe_local_reads:
            log.warning("UNSAFE: %s=1 — linearizable reads skip the read barrier", UNSAFE_LOCAL_READS_ENV)

        data_dir = config.data_dir
        # First, before anything is opened or created: a missing or wrong key changes nothing on disk.
        self.keyring = Keyring.open(data_dir, config.state_storage.encryption)
        data_dir.mkdir(parents=True, exist_ok=True)
        opened = open_verified(data_dir, on_error=self._fatal, keyring=self.keyring)
        self.store = opened.store
        if self.keyring is None:
            _refuse_sealed_values(self.store)
        self.machine = StateMachine(self.store, on_fatal=self._fatal)
        renewals = engine.install(self.machine)
        self.auth_store = AuthStore(self.machine, config.auth.bootstrap_admin)
        self.auth_store.install()
        claims = Claims(cluster.secret)
        bootstrap_file = config.auth.bootstrap_token_file
        bootstrap = token_digest(Path(bootstrap_file).read_text().strip()) if bootstrap_file else None
        self.authorizer = Authorizer(self.auth_store, claims, config.auth.enabled, bootstrap)
        self.audit = AuditLog(self.machine)
        self.audit.install()
        self.rotation = KeyRotation(self.machine, self.store, self.keyring, self._fatal)
        self.rotation.install()
        self.dispatcher = Dispatcher(self.machine)
        # Before the replica: its role callback (leadership -> the scheduler's grace clock) may fire at once.
        self.scheduler = Scheduler(
            machine=self.machine,
            config=config,
            is_leader=lambda: self.replica.is_leader(),
            propose=lambda payload, callback: self.replica.propose_async(payload, callback),
            renewals=renewals,
        )
        self.journal = RocksJournal(
            self.store,
            sync=config.state_storage.durability == "fsync",
            on_fatal=self._fatal,
            vote_file=data_dir / "raft-vote.json",
        )
        self.rotation.write_pending = self.journal.rebatch
        self.snapshots = Snapshots(
            self.store, self.machine, self.journal, data_dir, on_fatal=self._fatal, keyring=self.keyring
        )
        self.snapshots.after_install = lambda header: self.rotation.rotate_to(header.key_rotation_index)
        self.replica = Replica(
            self_address=cluster.raft_address,
            peer_addresses=[p.raft_address for p in cluster.peers],
            secret=cluster.secret,
            journal=self.journal,
            machine=self.machine,
            snapshots=self.snapshots,
            tuning=config.raft,
            max_entry_bytes=max(config.limits.max_state_bytes, MAX_GROUP_BYTES) + REQUEST_OVERHEAD,
            on_state_changed=self._on_role_changed,
            rejoining=opened.rejoining,
            on_rejoined=lambda: clear_rejoining(data_dir),
        )
        self.read_auditor = (
            ReadAuditor(self.replica.propose_async) if config.audit.enabled and config.audit.reads else None
        )
        self.barrier = ReadBarrier(self.replica, retry_after=max(0.2, config.raft.election_timeout / 2))
        # TLS: the listener serves only TLS, and calls to peers (forwarding, digests) use mTLS with this
        # node's certificate; a rotated certificate reaches both (see tls.py).
        self.tls: CertificateReloader | None = None
        if config.tls is not None:
            self.tls = CertificateReloader(config.tls, on_change=self._tls_changed)
        self.forwarder = Forwarder(
            config.limits.request_timeout, self.tls.channel_credentials() if self.tls is not None else None
        )
        self.membership = Membership(cluster, self.replica)
        writer = Writer(
            machine=self.machine,
            replica=self.replica,
            forwarder=self.forwarder,
            membership=self.membership,
            config=config,
            claims=claims,
        )
        reader = Reader(
            machine=self.machine,
            barrier=self.barrier,
            read_index=self.replica.read_index,
            config=config,
            unsafe_local_reads=self.unsafe_local_reads,
        )

        self.health = Health()
        self.server = grpc.server(
            # Long polls (PollWork) hold a thread each while they wait.
            futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="grpc"),
            # Decoding first: an undecodable request is INVALID_ARGUMENT before anything reads its fields.
            interceptors=[
                DecodeErrorsAreInvalidArgument(),
                AuthInterceptor(self.authorizer, self._audit_read if self.read_auditor else None),
            ],
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ],
        )
        state_service = StateService(
            machine=self.machine,
            writer=writer,
            reader=reader,
            membership=self.membership,
            config=config,
            peer_stub=self.node_stub,
            authorizer=self.authorizer,
        )
        workflow_service = WorkflowService(
            machine=self.machine,
            writer=writer,
            reader=reader,
            membership=self.membership,
            dispatcher=self.dispatcher,
            config=config,
            authorizer=self.authorizer,
        )
        state_pb2_grpc.add_StateServiceServicer_to_server(state_service, self.server)
        workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(workflow_service, self.server)
        cluster_service = ClusterService(
            replica=self.replica,
            snapshots=self.snapshots,
            membership=self.membership,
            store=self.store,
            config=config,
            version=self.version,
            started_at=self.started_at,
            writer=writer,
            rotation=self.rotation,
        )
        cluster_pb2_grpc.add_ClusterServiceServicer_to_server(cluster_service, self.server)
        auth_service = AuthService(writer=writer, authorizer=self.authorizer, membership=self.membership)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(auth_service, self.server)
        audit_service = AuditService(machine=self.machine, audit=self.audit, membership=self.membership, config=config)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(audit_service, self.server)
        node_service = NodeService(machine=self.machine, membership=self.membership)
        command_pb2_grpc.add_NodeServiceServicer_to_server(node_service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        if self.tls is not None:
            self.port = self.server.add_secure_port(cluster.grpc_address, self.tls.server_credentials())
        else:
            self.port = self.server.add_insecure_port(cluster.grpc_address)
        if self.port == 0:
            raise OSError(f"cannot bind gRPC to {cluster.grpc_address}")
        self._stopped = threading.Event()

    # ---- addressing ----------------------------------------------------------------------------

    def node_stub(self, address: str) -> command_pb2_grpc.NodeServiceStub:
        return command_pb2_grpc.NodeServiceStub(self.forwarder.channel(address))

    # ---- TLS -----------------------------------------------------------------------------------

    def _tls_changed(self, material: TlsMaterial) -> None:
        self.forwarder.set_credentials(channel_credentials(material))

    def reload_tls(self) -> bool:
        """SIGHUP: re-read the certificate files now; True when new ones were taken."""
        if self.tls is None:
            log.info("SIGHUP: no tls section in the configuration, nothing to reload")
            return False
        return self.tls.reload()

    # ---- lifecycle -----------------------------------------------------------------------------

    def _audit_read(self, caller: Caller, method: str, request: object, code: int) -> None:
        assert self.read_auditor is not None
        workflow_id = getattr(request, "workflow_id", "") or getattr(request, "prefix", "")
        self.read_auditor.record(audit_identity(caller), "read." + method.rsplit("/", 1)[-1], workflow_id, code)

    def start(self) -> None:
        self.server.start()
        if self.tls is not None:
            self.tls.start()
        self.scheduler.start()
        if self.read_auditor is not None:
            self.read_auditor.start()
        self.rotation.resume()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "node %s serving gRPC%s on %s, Raft on %s (%d peers)",
            self.config.cluster.node_id,
            f" over TLS (client_auth {self.config.tls.client_auth})" if self.config.tls else "",
            self.config.cluster.grpc_address,
            self.config.cluster.raft_address,
            len(self.config.cluster.peers),
        )

    def stop(self, grace: float = 2.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait(grace + 1)
        self.scheduler.stop()
        if self.read_auditor is not None:
            self.read_auditor.stop()
        self.rotation.stop()
        if self.tls is not None:
            self.tls.stop()
        self.replica.stop()
        self.journal.flush()
        self.forwarder.close()
        self.store.close()
        log.info("node %s stopped", self.config.cluster.node_id)

    def _on_role_changed(self, old: int, new: int) -> None:
        self.scheduler.on_leadership(role_name(new) == "leader")
        log.info(
            "raft role %s -> %s (term %d)",
            role_name(old),
            role_name(new),
            self.replica.term() if hasattr(self, "replica") else -1,
        )

    def _fatal(self, reason: str, code: int = 70) -> None:
        log.critical("%s; stopping node %s", reason, self.config.cluster.node_id)
        if is_corruption(reason):
            # Found while running (a read, or a compaction behind a write): the next start must not trust
            # the data even if its own verification reads past the bad block (a range deletion hides it).
            with contextlib.suppress(OSError):
                mark_corrupt(self.config.data_dir, reason)
        logging.shutdown()
        os._exit(code)


def _refuse_sealed_values(store: RocksStore) -> None:
    """Encryption off over a store whose keyring is gone: the applied index (8 bytes plain) is sealed."""
    raw = store.get("meta", APPLIED_KEY)
    if raw is not None and len(raw) != 8:
        store.close()
        raise EncryptionError(
            f"{store.path} holds encrypted records but there is no keyring and state_storage.encryption is off: "
            "restore keyring.json and turn encryption on with the same key"
        )


def run_node(config: Config) -> int:
    """Run one node in the foreground until SIGINT/SIGTERM; SIGHUP re-reads the TLS certificate files."""
    try:
        node = Node(config)
    except EncryptionError as exc:  # the message says it all; nothing was opened or changed
        log.critical("node %s cannot start: %s", config.cluster.node_id, exc)
        return 1
    except Exception as exc:  # a full disk, a locked or unreadable data directory, a port in use
        log.critical("node %s cannot start: %s", config.cluster.node_id, exc, exc_info=True)
        return 1
    stop = threading.Event()
    reload_requested = [False]

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    def on_hangup(_signum: int, _frame: object) -> None:
        # Only a flag: the reload reads files and takes locks, which a handler interrupting the main thread
        # must not; the loop below acts on it within 0.1 s.
        reload_requested[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    node.start()
    while not stop.wait(0.1):
        if reload_requested[0]:
            reload_requested[0] = False
            try:
                node.reload_tls()
            except Exception:  # a reload must never stop the node
                log.exception("TLS reload failed")
    node.stop()
    return 0


__all__ = ["Node", "run_node", "command_pb2"]

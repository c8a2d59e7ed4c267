"""ClusterService: this node's view of Raft, for operators (`cairn status`) and tools."""

from __future__ import annotations

import time

from cairn.v1 import cluster_pb2, cluster_pb2_grpc

from ..config import Config
from ..errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable, quoted
from ..membership import Membership
from ..raft.replica import Replica
from ..raft.snapshot import Snapshots
from ..rekey import KeyRotation
from ..storage import RocksStore
from .status import handles_errors
from .writes import Writer

_ROLES = {
    "follower": cluster_pb2.FOLLOWER,
    "candidate": cluster_pb2.CANDIDATE,
    "leader": cluster_pb2.LEADER,
}


class ClusterService(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(
        self,
        *,
        replica: Replica,
        snapshots: Snapshots,
        membership: Membership,
        store: RocksStore,
        config: Config,
        version: str,
        started_at: float,
        writer: Writer,
        rotation: KeyRotation,
    ):
        self.replica = replica
        self.snapshots = snapshots
        self.membership = membership
        self.store = store
        self.config = config
        self.version = version
        self.started_at = started_at
        self.writer = writer
        self.rotation = rotation

    def leader_grpc(self, raft_address: str | None) -> str | None:
        return self.membership.leader_grpc(raft_address)

    @handles_errors
    def Status(self, request, context):
        cluster = self.config.cluster
        status = self.replica.status()
        members = []
        for member in cluster.members:
            is_self = member.node_id == cluster.node_id
            peer = status.peers.get(member.raft_address)
            members.append(
                cluster_pb2.Member(
                    node_id=member.node_id,
                    raft_address=member.raft_address,
                    grpc_address=member.grpc_address,
                    connected=is_self or (peer is not None and peer.connected),
                    match_index=peer.match_index if peer is not None else 0,
                    is_self=is_self,
                )
            )
        leader_raft = status.leader_address
        return cluster_pb2.StatusResponse(
            node_id=cluster.node_id,
            grpc_address=cluster.advertise_grpc_address,
            raft_address=cluster.raft_address,
            role=_ROLES.get(status.role, cluster_pb2.RAFT_ROLE_UNSPECIFIED),
            leader_id=self.membership.leader_id() or "",
            leader_grpc_address=(self.membership.leader_grpc(leader_raft) or "") if leader_raft else "",
            term=status.term,
            commit_index=status.commit_index,
            applied_index=status.last_applied,
            log_entries=status.log_entries,
            snapshot_index=self.snapshots.last_index,
            has_quorum=status.has_quorum,
            members=members,
            workflows=self.store.estimate_keys("state"),
            uptime_seconds=time.monotonic() - self.started_at,
            version=self.version,
            last_log_index=status.last_log_index,
        )

    @handles_errors
    def Snapshot(self, request, context):
        snapshots = self.snapshots
        started = time.monotonic()
        before = snapshots.completed
        if self.replica.last_applied() <= snapshots.last_index:
            return cluster_pb2.SnapshotResponse(
                index=snapshots.last_index, size_bytes=snapshots.last_size, duration_ms=0.0
            )
        self.replica.compact_now()
        timeout = context.time_remaining() or self.config.limits.request_timeout
        if not snapshots.wait_completed(before + 1, timeout):
            raise DeadlineExceeded("the snapshot did not complete in time")
        return cluster_pb2.SnapshotResponse(
            index=snapshots.last_index,
            size_bytes=snapshots.last_size,
            duration_ms=(time.monotonic() - started) * 1000,
        )

    @handles_errors
    def TransferLeadership(self, request, context):
        replica, cluster = self.replica, self.config.cluster
        if not replica.is_leader():
            raise Unavailable("only the leader can hand over leadership")
        target = None
        if request.node_id:
            target = next((m.raft_address for m in cluster.peers if m.node_id == request.node_id), None)
            if target is None:
                raise InvalidArgument(f"node_id {quoted(request.node_id)} is not a peer of {cluster.node_id}")
        started = time.monotonic()
        timeout = context.time_remaining() or 5.0
        if not replica.transfer_leadership(target, timeout):
            raise FailedPrecondition("no member could take over in time (none connected and caught up)")
        deadline = started + timeout
        while time.monotonic() < deadline:
            leader = self.membership.leader_id()
            if leader and leader != cluster.node_id and not replica.is_leader():
                return cluster_pb2.TransferLeadershipResponse(
                    previous_leader_id=cluster.node_id,
                    leader_id=leader,
                    duration_ms=(time.monotonic() - started) * 1000,
                )
            time.sleep(0.01)
        raise DeadlineExceeded("leadership did not move in time")

    # ---- encryption at rest (rekey.py) ------------------------------------------------------------

    def _require_encryption(self) -> None:
        if self.rotation.keyring is None:
            raise FailedPrecondition(
                f"encryption at rest is off on node {self.config.cluster.node_id} (state_storage.encryption)"
            )

    @handles_errors
    def RotateKeys(self, request, context):
        self._require_encryption()

        def build(cmd, _now: int) -> None:
            cmd.rotate_keys.SetInParent()

        def respond(_result) -> cluster_pb2.RotateKeysResponse:
            keyring = self.rotation.keyring
            assert keyring is not None
            return cluster_pb2.RotateKeysResponse(
                rotation_index=keyring.last_rotation_index, leader_key_id=keyring.current
            )

        return self.writer.submit(
            "RotateKeys", request, context, build, respond, stub=cluster_pb2_grpc.ClusterServiceStub
        )

    @handles_errors
    def KeyStatus(self, request, context):
        self._require_encryption()
        return self.rotation.status(self.config.cluster.node_id)

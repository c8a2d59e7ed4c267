"""ClusterService: this node's view of Raft, for operators (`cairn status`) and tools."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pysyncobj.syncobj import _RAFT_STATE

from cairn.v1 import cluster_pb2, cluster_pb2_grpc

from ..errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from .status import handles_errors

if TYPE_CHECKING:
    from ..node import Node

_ROLES = {
    _RAFT_STATE.FOLLOWER: cluster_pb2.FOLLOWER,
    _RAFT_STATE.CANDIDATE: cluster_pb2.CANDIDATE,
    _RAFT_STATE.LEADER: cluster_pb2.LEADER,
}


class ClusterService(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self, node: Node):
        self.node = node

    def leader_grpc(self, raft_address: str | None) -> str | None:
        return self.node.membership.leader_grpc(raft_address)

    @handles_errors
    def Status(self, request, context):
        node, replica, cluster = self.node, self.node.replica, self.node.config.cluster
        raw = replica.getStatus()
        members = []
        for member in cluster.members:
            is_self = member.node_id == cluster.node_id
            members.append(
                cluster_pb2.Member(
                    node_id=member.node_id,
                    raft_address=member.raft_address,
                    grpc_address=member.grpc_address,
                    connected=is_self or raw.get(f"partner_node_status_server_{member.raft_address}") == 2,
                    match_index=raw.get(f"match_idx_server_{member.raft_address}") or 0,
                    is_self=is_self,
                )
            )
        leader_raft = replica.leader_address()
        return cluster_pb2.StatusResponse(
            node_id=cluster.node_id,
            grpc_address=cluster.advertise_grpc_address,
            raft_address=cluster.raft_address,
            role=_ROLES.get(raw["state"], cluster_pb2.RAFT_ROLE_UNSPECIFIED),
            leader_id=node.membership.leader_id() or "",
            leader_grpc_address=node.membership.leader_grpc(leader_raft) or "" if leader_raft else "",
            term=raw["raft_term"],
            commit_index=raw["commit_idx"],
            applied_index=raw["last_applied"],
            log_entries=raw["log_len"],
            snapshot_index=node.snapshots.last_index,
            has_quorum=raw["has_quorum"],
            members=members,
            workflows=node.store.estimate_keys("state"),
            uptime_seconds=time.monotonic() - node.started_at,
            version=node.version,
            last_log_index=replica.last_log_index(),
        )

    @handles_errors
    def Snapshot(self, request, context):
        node = self.node
        started = time.monotonic()
        before = node.snapshots.completed
        replica = node.replica
        if replica.raftLastApplied <= node.snapshots.last_index:
            return cluster_pb2.SnapshotResponse(
                index=node.snapshots.last_index, size_bytes=node.snapshots.last_size, duration_ms=0.0
            )
        replica.forceLogCompaction()
        timeout = context.time_remaining() or node.config.limits.request_timeout
        if not node.snapshots.wait_completed(before + 1, timeout):
            raise DeadlineExceeded("the snapshot did not complete in time")
        return cluster_pb2.SnapshotResponse(
            index=node.snapshots.last_index,
            size_bytes=node.snapshots.last_size,
            duration_ms=(time.monotonic() - started) * 1000,
        )

    @handles_errors
    def TransferLeadership(self, request, context):
        node, replica, cluster = self.node, self.node.replica, self.node.config.cluster
        if not replica.is_leader():
            raise Unavailable("only the leader can hand over leadership")
        target = None
        if request.node_id:
            target = next((m.raft_address for m in cluster.peers if m.node_id == request.node_id), None)
            if target is None:
                raise InvalidArgument(f"node_id {request.node_id!r} is not a peer of {cluster.node_id}")
        started = time.monotonic()
        timeout = context.time_remaining() or 5.0
        if not replica.transfer_leadership(target, timeout):
            raise FailedPrecondition("no member could take over in time (none connected and caught up)")
        deadline = started + timeout
        while time.monotonic() < deadline:
            leader = node.membership.leader_id()
            if leader and leader != cluster.node_id and not replica.is_leader():
                return cluster_pb2.TransferLeadershipResponse(
                    previous_leader_id=cluster.node_id,
                    leader_id=leader,
                    duration_ms=(time.monotonic() - started) * 1000,
                )
            time.sleep(0.01)
        raise DeadlineExceeded("leadership did not move in time")

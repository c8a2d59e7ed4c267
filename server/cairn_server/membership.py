"""Who is in the cluster and who leads it, in the terms clients use (node ids, gRPC addresses)."""

from __future__ import annotations

from cairn.v1 import state_pb2

from .config import ClusterConfig
from .raft.replica import Replica


class Membership:
    def __init__(self, cluster: ClusterConfig, replica: Replica):
        self.cluster = cluster
        self._replica = replica
        self._by_raft = {m.raft_address: m for m in cluster.members}

    @property
    def node_id(self) -> str:
        return self.cluster.node_id

    def leader_grpc(self, raft_address: str | None = None) -> str | None:
        """gRPC address of the given Raft member, or of the current leader when None."""
        address = raft_address or self._replica.leader_address()
        member = self._by_raft.get(address) if address else None
        return member.grpc_address if member else None

    def leader_id(self) -> str | None:
        address = self._replica.leader_address()
        member = self._by_raft.get(address) if address else None
        return member.node_id if member else None

    def header(self, applied_index: int) -> state_pb2.ResponseHeader:
        """Which node answered, how far it had applied, and where the leader is."""
        return state_pb2.ResponseHeader(
            node_id=self.cluster.node_id,
            leader_id=self.leader_id() or "",
            applied_index=applied_index,
            term=self._replica.term(),
            leader_grpc_address=self.leader_grpc() or "",
        )

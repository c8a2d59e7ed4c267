"""Trap 4: an entry whose apply fails must not wedge the node (a live node, in process)."""

from __future__ import annotations

from pathlib import Path

from cairn import Client
from cairn_server.config import parse_config
from cairn_server.local_cluster import free_base_port
from cairn_server.node import Node
from cairn_server.statemachine import INVALID_ARGUMENT


def test_a_garbage_entry_is_recorded_as_rejected_and_the_node_keeps_serving(tmp_path: Path) -> None:
    port, raft = free_base_port(2), free_base_port(1)
    config = parse_config(
        {
            "cluster": {"node_id": "solo", "grpc_address": f"127.0.0.1:{port}", "raft_address": f"127.0.0.1:{raft}"},
            "state_storage": {"connection": str(tmp_path)},
        }
    )
    node = Node(config)
    node.start()
    client = Client([f"127.0.0.1:{port}"], timeout=10)
    try:
        client.wait_ready(15, check=lambda s: s.leader is not None)
        before = client.persist_state("w", current_step="before")
        result = node.replica.propose(b"\xff\x00 not a command", timeout=10)  # replicated like any entry
        assert result.code == INVALID_ARGUMENT
        after = client.persist_state("w", current_step="after", timeout=10)
        assert after.version == before.version + 1
        assert node.machine.applied_index > before.applied_index + 1
    finally:
        client.close()
        node.stop()

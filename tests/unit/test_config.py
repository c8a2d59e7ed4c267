"""Config validation: every bad value stops start-up with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn_server.config import ConfigError, load_config, parse_config


def base(**sections) -> dict:
    doc = {
        "cluster": {"node_id": "n1", "grpc_address": "127.0.0.1:50051", "raft_address": "127.0.0.1:7001"},
        "state_storage": {"connection": "/tmp/x"},
    }
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value}
    return doc


def test_minimal_config_gets_documented_defaults() -> None:
    cfg = parse_config(base())
    assert cfg.state_storage.durability == "fsync"
    assert cfg.checkpointing.interval == 300.0 and cfg.checkpointing.retention == 30 * 86400
    assert cfg.limits.max_state_bytes == 4 * 1024 * 1024 and cfg.limits.dedup_window == 6 * 3600
    assert cfg.recovery.max_recovery_time == 2.0
    assert cfg.synchronization.conflict_resolution == "reject"
    assert cfg.cluster.advertise_grpc_address == "127.0.0.1:50051"


def test_seed_shape_parses() -> None:
    cfg = parse_config(
        base(
            state_storage={"type": "rocksdb", "connection": "/data", "encryption": {"enabled": False}},
            checkpointing={"enabled": True, "interval": "5m", "retention": "30d", "compression": "zlib"},
            recovery={"enabled": True, "auto_recovery": True, "max_recovery_time": "2s"},
            synchronization={"enabled": True, "sync_interval": "500ms", "conflict_resolution": "reject"},
            limits={"max_state_bytes": "1MiB", "dedup_window": "2h"},
        )
    )
    assert cfg.checkpointing.interval == 300 and cfg.synchronization.sync_interval == 0.5
    assert cfg.limits.max_state_bytes == 1024 * 1024 and cfg.limits.dedup_window == 7200


@pytest.mark.parametrize(
    "doc, field",
    [
        (base(checkpointing={"interval": "5 minutes"}), "checkpointing.interval"),
        (base(checkpointing={"intervall": "5m"}), "checkpointing.intervall: unknown key"),
        (base(checkpointing={"compression": "lz77"}), "checkpointing.compression"),
        (base(recovery={"enabled": "yes"}), "recovery.enabled"),
        (base(synchronization={"conflict_resolution": "last_write_wins"}), "synchronization.conflict_resolution"),
        (base(state_storage={"durability": "sometimes"}), "state_storage.durability"),
        (base(state_storage={"type": "postgres"}), "state_storage.type"),
        (base(state_storage={"encryption": {"enabled": True}}), "state_storage.encryption"),
        (base(limits={"max_state_bytes": "lots"}), "limits.max_state_bytes"),
        (base(limits={"history_limit": 0}), "limits.history_limit"),
        (base(raft={"heartbeat_interval": "1s", "election_timeout": "1s"}), "raft.heartbeat_interval"),
        (base(cluster={"grpc_address": "nohost"}), "cluster.grpc_address"),
        ({"state_storage": {"connection": "/x"}}, "cluster.node_id: required"),
        (base(cluster={"peers": [{"node_id": "n2", "grpc_address": "h:1"}]}), "cluster.peers[0].raft_address"),
        ({**base(), "extra": 1}, "extra: unknown key"),
    ],
)
def test_bad_values_name_the_field(doc: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_config(doc)


def multi_node(**cluster) -> dict:
    return base(
        cluster={
            "peers": [{"node_id": "n2", "grpc_address": "127.0.0.1:50052", "raft_address": "127.0.0.1:7002"}],
            **cluster,
        }
    )


def test_multi_node_needs_a_secret_unless_insecure() -> None:
    with pytest.raises(ConfigError, match="cluster.secret: a multi-node cluster needs a cluster secret"):
        parse_config(multi_node())
    assert parse_config(multi_node(), insecure=True).cluster.insecure
    assert parse_config(multi_node(secret="s" * 32)).cluster.secret == "s" * 32
    with pytest.raises(ConfigError, match="at least 16"):
        parse_config(multi_node(secret="short"))


def test_duplicate_members_are_refused() -> None:
    doc = multi_node(secret="s" * 32)
    doc["cluster"]["peers"][0]["raft_address"] = "127.0.0.1:7001"
    with pytest.raises(ConfigError, match="raft addresses must be unique"):
        parse_config(doc)


def test_load_config_reports_yaml_and_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")

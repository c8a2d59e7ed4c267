"""Config validation: every bad value stops start-up with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cairn_server.config import (
    CheckpointingConfig,
    ConfigError,
    ExecutionConfig,
    RecoveryConfig,
    load_config,
    parse_config,
)


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
    assert cfg.synchronization.conflict_resolution == "last_write_wins"
    assert cfg.cluster.advertise_grpc_address == "127.0.0.1:50051"
    assert cfg.recovery == RecoveryConfig(
        enabled=True,
        auto_recovery=True,
        max_recovery_time=2.0,
        resume_from="latest",
        max_attempts=5,
        retry_backoff=1.0,
        max_retry_backoff=60.0,
    )
    assert cfg.execution == ExecutionConfig(
        min_lease_timeout=1.0,
        max_lease_timeout=3600.0,
        max_poll_wait=30.0,
        scheduler_interval=0.1,
        scheduler_batch=256,
    )
    assert cfg.checkpointing == CheckpointingConfig(
        enabled=True, interval=300.0, retention=30 * 86400.0, compression="zlib", max_per_workflow=100, every_versions=0
    )


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
        (base(synchronization={"conflict_resolution": "merge"}), "synchronization.conflict_resolution"),
        (base(state_storage={"durability": "sometimes"}), "state_storage.durability"),
        (base(state_storage={"type": "postgres"}), "state_storage.type"),
        (base(state_storage={"encryption": {"enabled": True, "cipher": "x"}}), "state_storage.encryption.cipher"),
        (base(state_storage={"encryption": "yes"}), "state_storage.encryption: expected a mapping"),
        (base(tls={"cert": "/nonexistent/c.pem"}), "tls.cert: no such file"),
        (base(auth={"enabled": True}), "auth.bootstrap_admin: required"),
        (base(auth={"enabled": True, "bootstrap_admin": "admin"}), "auth.enabled: needs a tls section"),
        (base(auth={"enabled": "on"}), "auth.enabled"),
        (base(audit={"retention": "forever"}), "audit.retention"),
        (base(limits={"max_state_bytes": "lots"}), "limits.max_state_bytes"),
        (base(limits={"history_limit": 0}), "limits.history_limit"),
        (base(raft={"heartbeat_interval": "1s", "election_timeout": "1s"}), "raft.heartbeat_interval"),
        (base(raft={"group_commit": 0}), "raft.group_commit: expected a whole number from 1 to 4096"),
        (base(raft={"snapshot_log_bytes": "64KiB"}), "raft.snapshot_log_bytes"),
        (base(cluster={"grpc_address": "nohost"}), "cluster.grpc_address"),
        (
            {"cluster": {"grpc_address": "h:1", "raft_address": "h:2"}, "state_storage": {"connection": "/x"}},
            "cluster.node_id: required",
        ),
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


SPEC_EXAMPLE = """\
stateful_workflow_engine:
  state_storage:
    type: "rocksdb"
    connection: "./data/state"
    encryption: false
  checkpointing:
    enabled: true
    interval: "5m"
    retention: "7d"
    compression: true
  recovery:
    enabled: true
    auto_recovery: true
    max_recovery_time: "10m"
  synchronization:
    enabled: true
    sync_interval: "1s"
    conflict_resolution: "last_write_wins"
"""


def test_the_specifications_example_loads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC_EXAMPLE)
    cfg = load_config(path)
    assert cfg.state_storage.type == "rocksdb" and cfg.state_storage.connection == "./data/state"
    assert not cfg.state_storage.encryption and cfg.state_storage.encryption.enabled is False
    assert cfg.checkpointing.enabled and cfg.checkpointing.interval == 300.0
    assert cfg.checkpointing.retention == 7 * 86400.0 and cfg.checkpointing.compression == "zlib"
    assert cfg.recovery.enabled and cfg.recovery.auto_recovery and cfg.recovery.max_recovery_time == 600.0
    assert cfg.synchronization.enabled and cfg.synchronization.sync_interval == 1.0
    assert cfg.synchronization.conflict_resolution == "last_write_wins"
    # No cluster section: a single-node cluster on the default addresses.
    assert (cfg.cluster.node_id, cfg.cluster.grpc_address, cfg.cluster.raft_address) == (
        "node1",
        "127.0.0.1:50051",
        "127.0.0.1:7001",
    )
    assert cfg.cluster.peers == () and cfg.cluster.advertise_grpc_address == "127.0.0.1:50051"
    assert cfg.execution == ExecutionConfig()
    # The wrapper is only a wrapper: the same document without it parses the same.
    assert parse_config(yaml.safe_load(SPEC_EXAMPLE)["stateful_workflow_engine"]) == cfg


def test_wrapper_must_be_the_only_top_level_key() -> None:
    doc = {"stateful_workflow_engine": {"state_storage": {"connection": "/x"}}, "cluster": base()["cluster"]}
    with pytest.raises(ConfigError, match="stateful_workflow_engine: .*only top-level key.*cluster"):
        parse_config(doc)
    with pytest.raises(ConfigError, match="stateful_workflow_engine: expected a mapping"):
        parse_config({"stateful_workflow_engine": [1]})
    with pytest.raises(ConfigError, match="checkpointing.interval"):
        parse_config({"stateful_workflow_engine": base(checkpointing={"interval": "soon"})})


def test_missing_cluster_section_is_a_single_node_cluster() -> None:
    cfg = parse_config({"state_storage": {"connection": "/x"}})
    assert cfg.cluster.members[0].node_id == "node1" and not cfg.cluster.peers
    assert parse_config({"cluster": None, "state_storage": {"connection": "/x"}}).cluster == cfg.cluster
    assert parse_config({"state_storage": {"connection": "/x"}}, insecure=True).cluster.insecure


def test_recovery_keys() -> None:
    cfg = parse_config(
        base(
            recovery={
                "resume_from": "checkpoint",
                "max_attempts": 1,
                "retry_backoff": "250ms",
                "max_retry_backoff": "250ms",
            }
        )
    ).recovery
    assert (cfg.resume_from, cfg.max_attempts, cfg.retry_backoff, cfg.max_retry_backoff) == (
        "checkpoint",
        1,
        0.25,
        0.25,
    )
    assert parse_config(base(recovery={"resume_from": "latest", "max_attempts": 100})).recovery.max_attempts == 100
    assert (
        parse_config(base(recovery={"retry_backoff": 2, "max_retry_backoff": "5m"})).recovery.max_retry_backoff == 300
    )


def test_execution_keys() -> None:
    cfg = parse_config(
        base(
            execution={
                "min_lease_timeout": "100ms",
                "max_lease_timeout": "100ms",
                "max_poll_wait": "2s",
                "scheduler_interval": "10ms",
                "scheduler_batch": 10_000,
            }
        )
    ).execution
    assert cfg == ExecutionConfig(0.1, 0.1, 2.0, 0.01, 10_000)
    assert parse_config(base(execution={"scheduler_batch": 1})).execution.scheduler_batch == 1


def test_checkpointing_keys() -> None:
    assert parse_config(base(checkpointing={"every_versions": 10})).checkpointing.every_versions == 10
    assert parse_config(base(checkpointing={"interval": 0})).checkpointing.interval == 0
    assert parse_config(base(checkpointing={"interval": "0s"})).checkpointing.interval == 0
    assert parse_config(base(checkpointing={"interval": "1s"})).checkpointing.interval == 1.0
    assert parse_config(base(checkpointing={"compression": True})).checkpointing.compression == "zlib"
    assert parse_config(base(checkpointing={"compression": False})).checkpointing.compression == "none"
    assert parse_config(base(checkpointing={"compression": "none"})).checkpointing.compression == "none"
    assert parse_config(base(checkpointing={"compression": "zlib"})).checkpointing.compression == "zlib"


def test_conflict_resolution_modes() -> None:
    for mode in ("last_write_wins", "reject"):
        assert (
            parse_config(base(synchronization={"conflict_resolution": mode})).synchronization.conflict_resolution
            == mode
        )


@pytest.mark.parametrize(
    "doc, message",
    [
        (base(recovery={"resume_from": "earliest"}), "recovery.resume_from: must be one of latest, checkpoint"),
        (base(recovery={"max_attempts": 0}), "recovery.max_attempts: expected a whole number from 1"),
        (base(recovery={"max_attempts": "3"}), "recovery.max_attempts"),
        (base(recovery={"retry_backoff": 0}), "recovery.retry_backoff: must be more than 0s"),
        (base(recovery={"retry_backoff": "fast"}), "recovery.retry_backoff: expected a duration"),
        (
            base(recovery={"max_retry_backoff": "500ms"}),
            "recovery.max_retry_backoff: must be at least recovery.retry_backoff",
        ),
        (base(recovery={"retry_backoff": "2m"}), "recovery.max_retry_backoff: must be at least recovery.retry_backoff"),
        (base(recovery={"max_retry_backoff": 0}), "recovery.max_retry_backoff: must be more than 0s"),
        (base(execution={"min_lease_timeout": "50ms"}), "execution.min_lease_timeout: must be at least 0.1s"),
        (base(execution={"max_lease_timeout": "500ms"}), "execution.max_lease_timeout: must be at least execution.min"),
        (base(execution={"max_lease_timeout": "forever"}), "execution.max_lease_timeout: expected a duration"),
        (base(execution={"max_poll_wait": "10ms"}), "execution.max_poll_wait: must be at least 0.1s"),
        (base(execution={"scheduler_interval": "5ms"}), "execution.scheduler_interval: must be at least 0.01s"),
        (base(execution={"scheduler_batch": 0}), "execution.scheduler_batch: expected a whole number from 1 to 10000"),
        (base(execution={"scheduler_batch": 10_001}), "execution.scheduler_batch"),
        (base(execution={"lease": "1s"}), "execution.lease: unknown key"),
        ({**base(), "execution": [1]}, "execution: expected a mapping"),
        (base(checkpointing={"every_versions": -1}), "checkpointing.every_versions: expected a whole number from 0"),
        (base(checkpointing={"every_versions": True}), "checkpointing.every_versions"),
        (base(checkpointing={"interval": "500ms"}), r"checkpointing.interval: must be 0 \(off\) or at least 1.0s"),
        (
            base(checkpointing={"compression": "gzip"}),
            "checkpointing.compression: must be one of none, zlib, true or false",
        ),
        (base(checkpointing={"compression": 1}), "checkpointing.compression"),
        (
            base(synchronization={"conflict_resolution": "newest"}),
            "synchronization.conflict_resolution: must be one of",
        ),
        (
            base(state_storage={"type": "postgresql"}),
            "state_storage.type: the PostgreSQL backend arrives with the storage-backends work; use rocksdb for now",
        ),
        (base(state_storage={"type": "mysql"}), "state_storage.type: must be one of rocksdb"),
    ],
)
def test_new_keys_name_the_field(doc: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(doc)


def test_security_sections(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    cfg = parse_config(
        base(
            tls={
                "cert": str(tmp_path / "c.pem"),
                "key": str(tmp_path / "k.pem"),
                "ca": str(tmp_path / "ca.pem"),
                "client_auth": "require",
            },
            auth={"enabled": True, "bootstrap_admin": "admin"},
            audit={"reads": True, "retention": "7d"},
            state_storage={"connection": "/x", "encryption": {"enabled": True, "key_file": "/k"}},
        )
    )
    assert cfg.tls is not None and cfg.tls.client_auth == "require" and cfg.tls.reload_interval == 5.0
    assert cfg.auth.enabled and cfg.auth.bootstrap_admin == "admin"
    assert cfg.audit.reads and cfg.audit.retention == 7 * 86400.0
    assert cfg.state_storage.encryption.enabled and cfg.state_storage.encryption.key_file == "/k"
    with pytest.raises(ConfigError, match="tls.client_auth: must be one of none, request, require"):
        parse_config(base(tls={**{k: str(tmp_path / "c.pem") for k in ("cert", "key", "ca")}, "client_auth": "x"}))
    defaults = parse_config(base())
    assert defaults.tls is None and not defaults.auth.enabled and not defaults.state_storage.encryption

"""The node's YAML configuration: the specification's sections plus `cluster`, `execution`, `raft` and `limits`.

Every key has a default (`state_storage.connection` aside; a missing `cluster` section means a
single-node cluster); unknown keys and bad values stop start-up with a message that names the field
(for example `checkpointing.interval`). The specification's example, with its sections under a
top-level `stateful_workflow_engine:` key, loads as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cairn.durations import parse_duration, parse_size


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


@dataclass(frozen=True)
class Peer:
    node_id: str
    grpc_address: str
    raft_address: str


@dataclass(frozen=True)
class ClusterConfig:
    node_id: str
    grpc_address: str
    raft_address: str
    advertise_grpc_address: str
    peers: tuple[Peer, ...] = ()
    secret: str | None = None
    insecure: bool = False

    @property
    def members(self) -> tuple[Peer, ...]:
        return (Peer(self.node_id, self.advertise_grpc_address, self.raft_address), *self.peers)


@dataclass(frozen=True)
class EncryptionConfig:
    """Encryption at rest: data keys wrapped by a key-encryption key (KEK) from a file or an environment variable."""

    enabled: bool = False
    key_file: str | None = None  # the KEK: 32 bytes, as base64 (or hex) text
    key_env: str = "CAIRN_ENCRYPTION_KEY"  # read when key_file is not set

    def __bool__(self) -> bool:  # `if config.state_storage.encryption:` reads as "is encryption on"
        return self.enabled


@dataclass(frozen=True)
class StorageConfig:
    type: str = "rocksdb"
    connection: str = "./data/node"
    durability: str = "fsync"
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)


@dataclass(frozen=True)
class TlsConfig:
    """TLS on the gRPC listener and for node-to-node calls; `None` in Config means plaintext."""

    cert: str  # this node's certificate chain (PEM), served to clients and presented to peers
    key: str  # its private key (PEM)
    ca: str  # CA bundle (PEM) that client and peer certificates must chain to
    client_auth: str = "none"  # none | request | require (mTLS)
    reload_interval: float = 5.0  # how often the files are checked for a change (SIGHUP reloads at once)


@dataclass(frozen=True)
class AuthConfig:
    """Access control: identities from client certificates or bearer tokens, roles on workflow-id prefixes."""

    enabled: bool = False
    bootstrap_admin: str | None = None  # an identity that is admin on everything (while it is configured)
    # A secret (a file's first line, 32+ characters) that authenticates as bootstrap_admin: for clusters whose
    # clients cannot present certificates (tls.client_auth: none). Never replicated; only its hash is kept.
    bootstrap_token_file: str | None = None


@dataclass(frozen=True)
class AuditConfig:
    """The replicated, hash-chained audit log."""

    enabled: bool = True
    reads: bool = False  # also record reads (each read then costs a Raft entry, batched)
    retention: float = 7 * 86400.0  # records older than this are pruned behind a hashed anchor (~200 B each)


@dataclass(frozen=True)
class CheckpointingConfig:
    enabled: bool = True
    interval: float = 300.0  # 0: no time-based periodic checkpoints
    retention: float = 30 * 86400.0
    compression: str = "zlib"  # "zlib" | "none"
    max_per_workflow: int = 100
    every_versions: int = 0  # 0: off; N: due once a workflow is N versions past its last checkpoint


@dataclass(frozen=True)
class RecoveryConfig:
    enabled: bool = True
    auto_recovery: bool = True
    max_recovery_time: float = 2.0
    resume_from: str = "latest"  # "latest" | "checkpoint"
    max_attempts: int = 5
    retry_backoff: float = 1.0
    max_retry_backoff: float = 60.0


@dataclass(frozen=True)
class SynchronizationConfig:
    enabled: bool = True
    sync_interval: float = 1.0
    conflict_resolution: str = "last_write_wins"  # "last_write_wins" | "reject"


@dataclass(frozen=True)
class ExecutionConfig:
    min_lease_timeout: float = 1.0
    max_lease_timeout: float = 3600.0
    max_poll_wait: float = 30.0
    scheduler_interval: float = 0.1
    scheduler_batch: int = 256


@dataclass(frozen=True)
class RaftConfig:
    snapshot_entries: int = 5000
    snapshot_interval: float = 300.0
    election_timeout: float = 1.0
    heartbeat_interval: float = 0.1
    group_commit: int = 256  # most client writes in one log entry; 1 turns group commit off
    snapshot_log_bytes: int = 64 * 1024 * 1024  # compact the log when its entries hold this many bytes


@dataclass(frozen=True)
class LimitsConfig:
    max_state_bytes: int = 4 * 1024 * 1024
    history_limit: int = 100
    dedup_window: float = 6 * 3600.0
    request_timeout: float = 10.0


@dataclass(frozen=True)
class Config:
    cluster: ClusterConfig
    state_storage: StorageConfig = field(default_factory=StorageConfig)
    checkpointing: CheckpointingConfig = field(default_factory=CheckpointingConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    synchronization: SynchronizationConfig = field(default_factory=SynchronizationConfig)
    raft: RaftConfig = field(default_factory=RaftConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    tls: TlsConfig | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)

    @property
    def data_dir(self) -> Path:
        return Path(self.state_storage.connection)


class _Section:
    """Reads one mapping, remembering which keys were used so that leftovers are reported."""

    def __init__(self, raw: Any, path: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(raw).__name__}")
        self.raw, self.path, self.used = raw, path, set()

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def take(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.raw or self.raw[key] is None:
            if required:
                raise ConfigError(f"{self._name(key)}: required")
            return default
        return self.raw[key]

    def string(
        self, key: str, default: str | None = None, *, required: bool = False, choices: tuple[str, ...] | None = None
    ) -> Any:
        value = self.take(key, default, required=required)
        if value is None:
            return None
        if not isinstance(value, str) or (required and not value):
            raise ConfigError(f"{self._name(key)}: expected a non-empty string, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(f"{self._name(key)}: must be one of {', '.join(choices)}; got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.take(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self._name(key)}: expected true or false, got {value!r}")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0, maximum: int = 2**31) -> int:
        value = self.take(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise ConfigError(f"{self._name(key)}: expected a whole number from {minimum} to {maximum}, got {value!r}")
        return value

    def duration(
        self, key: str, default: float, *, minimum: float = 0.0, positive: bool = False, zero_ok: bool = False
    ) -> float:
        """`positive`: must be more than 0; `zero_ok`: 0 (meaning off) is allowed below `minimum`."""
        try:
            value = parse_duration(self.take(key, default))
        except ValueError as exc:
            raise ConfigError(f"{self._name(key)}: {exc}") from None
        if positive and value <= 0:
            raise ConfigError(f"{self._name(key)}: must be more than 0s, got {value}s")
        if zero_ok and value == 0:
            return value
        if value < minimum:
            off = "0 (off) or " if zero_ok else ""
            raise ConfigError(f"{self._name(key)}: must be {off}at least {minimum}s, got {value}s")
        return value

    def size(self, key: str, default: int, *, minimum: int = 1) -> int:
        try:
            value = parse_size(self.take(key, default))
        except ValueError as exc:
            raise ConfigError(f"{self._name(key)}: {exc}") from None
        if value < minimum:
            raise ConfigError(f"{self._name(key)}: must be at least {minimum} bytes, got {value}")
        return value

    def section(self, key: str) -> _Section:
        return _Section(self.take(key, {}), self._name(key))

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise ConfigError(f"{self._name(unknown[0])}: unknown key")


def _address(section: _Section, key: str, *, required: bool = True, default: str | None = None) -> Any:
    value = section.string(key, default, required=required)
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{section._name(key)}: expected host:port, got {value!r}")
    return value


def _cluster(s: _Section) -> ClusterConfig:
    node_id = s.string("node_id", required=True)
    grpc_address = _address(s, "grpc_address")
    raft_address = _address(s, "raft_address")
    advertise = _address(s, "advertise_grpc_address", required=False) or grpc_address
    raw_peers = s.take("peers", [])
    if not isinstance(raw_peers, list):
        raise ConfigError(f"{s._name('peers')}: expected a list of {{node_id, grpc_address, raft_address}}")
    peers = []
    for i, raw in enumerate(raw_peers):
        p = _Section(raw, f"{s._name('peers')}[{i}]")
        peers.append(Peer(p.string("node_id", required=True), _address(p, "grpc_address"), _address(p, "raft_address")))
        p.done()
    ids = [node_id, *(p.node_id for p in peers)]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{s._name('peers')}: node ids must be unique, got {ids}")
    rafts = [raft_address, *(p.raft_address for p in peers)]
    if len(set(rafts)) != len(rafts):
        raise ConfigError(f"{s._name('peers')}: raft addresses must be unique, got {rafts}")
    secret = s.string("secret")
    secret_file = s.string("secret_file")
    if secret_file:
        try:
            secret = Path(secret_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{s._name('secret_file')}: cannot read {secret_file}: {exc}") from None
    insecure = s.boolean("insecure", False)
    if secret is not None and len(secret) < 16:
        raise ConfigError(f"{s._name('secret')}: must be at least 16 characters")
    if peers and not secret and not insecure:
        raise ConfigError(
            f"{s._name('secret')}: a multi-node cluster needs a cluster secret "
            "(or cluster.insecure: true / --insecure, which lets anyone who reaches the Raft "
            "port run code on this node)"
        )
    s.done()
    return ClusterConfig(node_id, grpc_address, raft_address, advertise, tuple(peers), secret, insecure)


WRAPPER = "stateful_workflow_engine"
# No `cluster` section: a single-node cluster.
DEFAULT_CLUSTER = {"node_id": "node1", "grpc_address": "127.0.0.1:50051", "raft_address": "127.0.0.1:7001"}


def _unwrap(raw: Any) -> Any:
    """The specification's example puts every section under one `stateful_workflow_engine:` key."""
    if not isinstance(raw, dict) or WRAPPER not in raw:
        return raw
    others = sorted(str(k) for k in raw if k != WRAPPER)
    if others:
        raise ConfigError(
            f"{WRAPPER}: when present it must be the only top-level key (the sections go inside it); "
            f"also found {', '.join(others)}"
        )
    inner = raw[WRAPPER]
    if inner is not None and not isinstance(inner, dict):
        raise ConfigError(f"{WRAPPER}: expected a mapping, got {type(inner).__name__}")
    return inner


def _compression(s: _Section) -> str:
    value = s.take("compression", "zlib")
    if isinstance(value, bool):  # YAML `compression: true` = the default codec
        return "zlib" if value else "none"
    choices = ("none", "zlib")
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(
            f"{s._name('compression')}: must be one of {', '.join(choices)}, true or false; got {value!r}"
        )
    return value


def _encryption(st: _Section) -> EncryptionConfig:
    """`encryption: true|false` or `{enabled, key_file, key_env}`."""
    raw = st.take("encryption", False)
    if isinstance(raw, bool):
        return EncryptionConfig(enabled=raw)
    en = _Section(raw, st._name("encryption"))
    out = EncryptionConfig(
        enabled=en.boolean("enabled", False),
        key_file=en.string("key_file"),
        key_env=en.string("key_env", "CAIRN_ENCRYPTION_KEY"),
    )
    en.done()
    return out


def _existing_file(s: _Section, key: str, *, required: bool = True) -> str | None:
    value = s.string(key, required=required)
    if value is not None and not Path(value).is_file():
        raise ConfigError(f"{s._name(key)}: no such file: {value}")
    return value


def _tls(top: _Section) -> TlsConfig | None:
    if top.raw.get("tls") is None:
        top.take("tls")
        return None
    t = top.section("tls")
    tls = TlsConfig(
        cert=_existing_file(t, "cert"),
        key=_existing_file(t, "key"),
        ca=_existing_file(t, "ca"),
        client_auth=t.string("client_auth", "none", choices=("none", "request", "require")),
        reload_interval=t.duration("reload_interval", 5.0, minimum=0.1),
    )
    t.done()
    return tls


def _auth(top: _Section) -> AuthConfig:
    a = top.section("auth")
    auth = AuthConfig(
        enabled=a.boolean("enabled", False),
        bootstrap_admin=a.string("bootstrap_admin"),
        bootstrap_token_file=_existing_file(a, "bootstrap_token_file", required=False),
    )
    if auth.bootstrap_token_file:
        token = Path(auth.bootstrap_token_file).read_text().strip()
        if len(token) < 32:
            raise ConfigError("auth.bootstrap_token_file: the token must be at least 32 characters")
        if not auth.bootstrap_admin:
            raise ConfigError("auth.bootstrap_token_file: needs auth.bootstrap_admin (the identity it stands for)")
    if auth.enabled and not auth.bootstrap_admin:
        raise ConfigError(
            "auth.bootstrap_admin: required when auth.enabled is true (the identity that may create the first "
            "roles; otherwise nobody could)"
        )
    a.done()
    return auth


def _audit(top: _Section) -> AuditConfig:
    a = top.section("audit")
    audit = AuditConfig(
        enabled=a.boolean("enabled", True),
        reads=a.boolean("reads", False),
        retention=a.duration("retention", 7 * 86400.0, minimum=1.0),
    )
    a.done()
    return audit


def parse_config(raw: Any, *, insecure: bool = False) -> Config:
    """Validate a parsed YAML document; `insecure` is the command line's --insecure."""
    top = _Section(_unwrap(raw), "")
    cluster_section = top.section("cluster")
    if top.raw.get("cluster") is None:
        cluster_section.raw = dict(DEFAULT_CLUSTER)
    if insecure:
        cluster_section.raw = {**cluster_section.raw, "insecure": True}
    cluster = _cluster(cluster_section)

    st = top.section("state_storage")
    if st.raw.get("type") == "postgresql":
        raise ConfigError(
            "state_storage.type: the PostgreSQL backend arrives with the storage-backends work; use rocksdb for now"
        )
    storage_type = st.string("type", "rocksdb", choices=("rocksdb",))
    connection = st.string("connection", required=True)
    durability = st.string("durability", "fsync", choices=("fsync", "process"))
    encryption = _encryption(st)
    st.done()
    storage = StorageConfig(storage_type, connection, durability, encryption)

    cp = top.section("checkpointing")
    checkpointing = CheckpointingConfig(
        enabled=cp.boolean("enabled", True),
        interval=cp.duration("interval", 300.0, minimum=1.0, zero_ok=True),
        retention=cp.duration("retention", 30 * 86400.0, minimum=1.0),
        compression=_compression(cp),
        max_per_workflow=cp.integer("max_per_workflow", 100, minimum=1, maximum=10_000),
        every_versions=cp.integer("every_versions", 0, minimum=0),
    )
    cp.done()

    rc = top.section("recovery")
    recovery = RecoveryConfig(
        enabled=rc.boolean("enabled", True),
        auto_recovery=rc.boolean("auto_recovery", True),
        max_recovery_time=rc.duration("max_recovery_time", 2.0, minimum=0.1),
        resume_from=rc.string("resume_from", "latest", choices=("latest", "checkpoint")),
        max_attempts=rc.integer("max_attempts", 5, minimum=1),
        retry_backoff=rc.duration("retry_backoff", 1.0, positive=True),
        max_retry_backoff=rc.duration("max_retry_backoff", 60.0, positive=True),
    )
    if recovery.max_retry_backoff < recovery.retry_backoff:
        raise ConfigError(
            "recovery.max_retry_backoff: must be at least recovery.retry_backoff "
            f"({recovery.max_retry_backoff}s vs {recovery.retry_backoff}s)"
        )
    rc.done()

    sy = top.section("synchronization")
    synchronization = SynchronizationConfig(
        enabled=sy.boolean("enabled", True),
        sync_interval=sy.duration("sync_interval", 1.0, minimum=0.01),
        conflict_resolution=sy.string("conflict_resolution", "last_write_wins", choices=("last_write_wins", "reject")),
    )
    sy.done()

    ex = top.section("execution")
    execution = ExecutionConfig(
        min_lease_timeout=ex.duration("min_lease_timeout", 1.0, minimum=0.1),
        max_lease_timeout=ex.duration("max_lease_timeout", 3600.0, minimum=0.1),
        max_poll_wait=ex.duration("max_poll_wait", 30.0, minimum=0.1),
        scheduler_interval=ex.duration("scheduler_interval", 0.1, minimum=0.01),
        scheduler_batch=ex.integer("scheduler_batch", 256, minimum=1, maximum=10_000),
    )
    if execution.max_lease_timeout < execution.min_lease_timeout:
        raise ConfigError(
            "execution.max_lease_timeout: must be at least execution.min_lease_timeout "
            f"({execution.max_lease_timeout}s vs {execution.min_lease_timeout}s)"
        )
    ex.done()

    rf = top.section("raft")
    raft = RaftConfig(
        snapshot_entries=rf.integer("snapshot_entries", 5000, minimum=10, maximum=10_000_000),
        snapshot_interval=rf.duration("snapshot_interval", 300.0, minimum=1.0),
        election_timeout=rf.duration("election_timeout", 1.0, minimum=0.1),
        heartbeat_interval=rf.duration("heartbeat_interval", 0.1, minimum=0.01),
        group_commit=rf.integer("group_commit", 256, minimum=1, maximum=4096),
        snapshot_log_bytes=rf.size("snapshot_log_bytes", 64 * 1024 * 1024, minimum=1024 * 1024),
    )
    if raft.heartbeat_interval * 3 > raft.election_timeout + 1e-9:  # 0.1 * 3 is 0.30000000000000004
        raise ConfigError(
            "raft.heartbeat_interval: must be at most a third of raft.election_timeout "
            f"({raft.heartbeat_interval}s vs {raft.election_timeout}s)"
        )
    rf.done()

    lm = top.section("limits")
    limits = LimitsConfig(
        max_state_bytes=lm.size("max_state_bytes", 4 * 1024 * 1024, minimum=1024),
        history_limit=lm.integer("history_limit", 100, minimum=1, maximum=100_000),
        dedup_window=lm.duration("dedup_window", 6 * 3600.0, minimum=1.0),
        request_timeout=lm.duration("request_timeout", 10.0, minimum=0.1),
    )
    lm.done()
    tls, auth, audit = _tls(top), _auth(top), _audit(top)
    if auth.enabled and tls is None:
        raise ConfigError(
            "auth.enabled: needs a tls section (identities come from client certificates, and a bearer token "
            "must not cross the network in plain text)"
        )
    if auth.enabled and cluster.peers and not cluster.secret:
        raise ConfigError(
            "auth.enabled: needs cluster.secret (followers sign the caller's identity with it when they forward)"
        )
    top.done()
    return Config(
        cluster, storage, checkpointing, recovery, synchronization, raft, limits, execution, tls, auth, audit
    )


def load_config(path: str | Path, *, insecure: bool = False) -> Config:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, insecure=insecure)

"""Faults, each with a name, injected and healed on a schedule by the runner.

Families (for --faults): kill, pause, partition, restart, transfer, netem, workers, disk, fsync, corrupt,
clock; or any fault by name. The workers family (kill -9 a workflow worker, SIGSTOP one past its lease)
needs the workflow workload; the runner injects it on a schedule of its own, alongside the node faults.

Storage and clock families (their invariants are checked by chaos/checkers/faults.py):
- disk: a node's data directory (a tmpfs, as root) is filled with a ballast file until ENOSPC, on one
  follower, the leader or a majority; held; the ballast is deleted and every node that exited restarted.
- fsync: the `journal.sync` failpoint on the leader or a follower: `sleep(300ms)` before every journal
  fsync (a slow disk), or `error` (a failing fsync, after which the node must stop, never acknowledge).
- corrupt: a follower is stopped (SIGTERM or kill -9), bits are flipped in one of its files while it is
  down (an SST's data blocks, the RocksDB write-ahead log that also holds the Raft journal, or the Raft
  snapshot file), and it is started again at once; which files and offsets were flipped is recorded.
- clock: the `clock.offset` failpoint skews one node's wall clock (leader or follower) by 5-60 s either
  way for the hold (skew), or sets one offset and jumps to another halfway through it (jump).

An injection gets `info`, the fault record's details (JSON): the runner puts `hold_s` in it, the fault
fills in what it did (`targets`, `flips`, `clock`, `ballast_bytes`, `exits`, ...), names the nodes it may
make exit (`expects_exit`, so their exits are not reported as crashes) and those that must come back and
catch up after the heal (`recover`, watched by the runner).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn_server.integrity import REJOIN_MARKER

from .cluster import ChaosCluster
from .netns import netem_available

Heal = Callable[[], None]
Inject = Callable[[ChaosCluster, random.Random, dict[str, Any]], tuple[str, Heal]]


@dataclass
class Fault:
    name: str
    family: str
    inject: Inject
    needs_netns: bool = False
    removes_leader: bool = False
    needs_workers: bool = False
    needs_failpoints: bool = False  # a failpoint file per node (fsync, clock)
    needs_tmpfs: bool = False  # size-limited data directories (disk; root)


def _leader_or_any(c: ChaosCluster, rng: random.Random) -> int:
    leader = c.any_leader()
    return leader if leader is not None else rng.randrange(c.nodes)


def _followers(c: ChaosCluster, rng: random.Random) -> list[int]:
    leader = _leader_or_any(c, rng)
    return [i for i in range(c.nodes) if i != leader]


def _names(c: ChaosCluster, nodes: list[int]) -> str:
    return ",".join(c.cluster.specs[i].node_id for i in sorted(nodes))


def _kill(pick: Callable[[ChaosCluster, random.Random], list[int]]):
    def inject(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
        nodes = pick(c, rng)
        info["targets"] = [c.node_id(i) for i in nodes]
        for i in nodes:
            c.kill(i)

        def heal() -> None:
            for i in nodes:
                c.start_node(i)

        return f"kill -9 {_names(c, nodes)}", heal

    return inject


def _pause(pick: Callable[[ChaosCluster, random.Random], list[int]], length: float | None):
    def inject(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
        nodes = pick(c, rng)
        info["targets"] = [c.node_id(i) for i in nodes]
        for i in nodes:
            c.pause(i)
        if length is not None:  # a pause shorter than an election: resumed before the hold ends
            time.sleep(length)
            for i in nodes:
                c.resume(i)

        def heal() -> None:
            for i in nodes:
                c.resume(i)

        return f"SIGSTOP {_names(c, nodes)}" + (f" for {length}s" if length else ""), heal

    return inject


def _partition(
    plan: Callable[[ChaosCluster, random.Random], tuple[str, list[tuple[int, int]]]], compact_majority: bool = False
):
    def inject(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
        assert c.net is not None
        what, cuts = plan(c, rng)
        for src, dst in cuts:
            c.net.cut(src, dst)
        cut_off = {src for src, _ in cuts}

        def heal() -> None:
            assert c.net is not None
            if compact_majority:  # the scenario that loses writes in stock pysyncobj (trap 1)
                for i in range(c.nodes):
                    if i not in cut_off or len(cut_off) > c.nodes // 2:
                        with contextlib.suppress(Exception):  # a node without quorum may refuse; heal anyway
                            c.compact(i)
            c.net.heal()

        return what, heal

    return inject


def _isolate_leader(c: ChaosCluster, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    leader = _leader_or_any(c, rng)
    others = [j for j in range(c.nodes) if j != leader]
    return f"isolate {_names(c, [leader])}", [(leader, j) for j in others] + [(j, leader) for j in others]


def _halves(c: ChaosCluster, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    order = list(range(c.nodes))
    rng.shuffle(order)
    minority, majority = order[: (c.nodes - 1) // 2 or 1], order[(c.nodes - 1) // 2 or 1 :]
    cuts = [(a, b) for a in minority for b in majority] + [(b, a) for a in minority for b in majority]
    return f"split {_names(c, minority)} | {_names(c, majority)}", cuts


def _one_way(c: ChaosCluster, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    leader = _leader_or_any(c, rng)
    return f"{_names(c, [leader])} cannot send to anyone (receives)", [
        (leader, j) for j in range(c.nodes) if j != leader
    ]


def _bridge(c: ChaosCluster, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    order = list(range(c.nodes))
    rng.shuffle(order)
    bridge, rest = order[0], order[1:]
    left, right = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    cuts = [(a, b) for a in left for b in right] + [(b, a) for a in left for b in right]
    return f"bridge {_names(c, [bridge])} between {_names(c, left)} | {_names(c, right)}", cuts


def _ring(c: ChaosCluster, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    order = list(range(c.nodes))
    rng.shuffle(order)
    n = c.nodes
    neighbours = {order[k]: {order[(k - 1) % n], order[(k + 1) % n]} for k in range(n)}
    cuts = [(a, b) for a in range(n) for b in range(n) if a != b and b not in neighbours[a]]
    return "ring " + "-".join(c.cluster.specs[i].node_id for i in order), cuts


def _rolling_restart(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
    order = list(range(c.nodes))
    rng.shuffle(order)
    for i in order:
        c.graceful_restart(i)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and c.status(i) is None:
            time.sleep(0.1)
    return f"rolling restart {'-'.join(c.cluster.specs[i].node_id for i in order)}", lambda: None


def _transfer(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
    with c.client(timeout=10) as client:
        try:
            new = client.transfer_leadership(timeout=10)
        except Exception as exc:  # reported as the fault's description
            return f"leadership transfer refused: {exc}", lambda: None
    return f"leadership transferred to {new}", lambda: None


def _netem(spec: list[str]):
    def inject(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
        assert c.net is not None
        nodes = rng.sample(range(c.nodes), max(1, c.nodes // 2))
        for i in nodes:
            c.net.netem(i, spec)
        return f"netem {' '.join(spec)} on {_names(c, nodes)}", c.net.clear_netem

    return inject


def _worker_kill(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
    pool = c.workers
    assert pool is not None
    live = pool.live()
    if not live:
        return "no live worker to kill", lambda: None
    i = rng.choice(live)
    pool.kill(i)
    return f"kill -9 worker {pool.worker_id(i)} (restarted at heal)", lambda: pool.start_worker(i)


def _worker_pause(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
    pool = c.workers
    assert pool is not None
    live = [i for i in pool.live() if i not in pool.paused]
    if not live:
        return "no running worker to pause", lambda: None
    i = rng.choice(live)
    pool.pause(i)
    return f"SIGSTOP worker {pool.worker_id(i)} past its {pool.lease_timeout}s lease", lambda: pool.resume(i)


# ---- storage and clock faults ------------------------------------------------------------------------


class ExitWatch:
    """Polls nodes every 50 ms from injection to heal, noting when each is first seen dead and its exit code."""

    def __init__(self, c: ChaosCluster, nodes: list[int]):
        self.c, self.nodes = c, nodes
        self.started = time.monotonic_ns()
        self.seen: dict[int, tuple[int | None, int]] = {}  # node -> (exit code, monotonic ns first seen dead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exit-watch", daemon=True)
        self._thread.start()

    def _look(self) -> None:
        for i in self.nodes:
            if i not in self.seen and not self.c.alive(i):
                self.seen[i] = (self.c.exit_code(i), time.monotonic_ns())

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._look()

    def stop(self) -> dict[str, dict[str, Any]]:
        """node id -> {code, after_s, at_ns} for every watched node that died (once more looked at now)."""
        self._stop.set()
        self._thread.join(5)
        self._look()
        return {
            self.c.node_id(i): {"code": code, "after_s": round((at - self.started) / 1e9, 3), "at_ns": at}
            for i, (code, at) in sorted(self.seen.items())
        }


def _disk_full(pick: Callable[[ChaosCluster, random.Random], list[int]]) -> Inject:
    def inject(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
        nodes = pick(c, rng)
        ids = [c.node_id(i) for i in nodes]
        info.update(targets=ids, expects_exit=ids, recover=ids, ballast_bytes={})
        watch = ExitWatch(c, nodes)  # from before the fill: a node may stop while the next one fills
        try:
            for i in nodes:
                info["ballast_bytes"][c.node_id(i)] = c.fill_disk(i)
        except BaseException:
            watch.stop()
            raise
        info["full_ns"] = time.monotonic_ns()  # every target's disk is full from here on

        def heal() -> None:
            exits = watch.stop()
            info["exits"] = exits
            down = sorted(e["at_ns"] for e in exits.values())
            majority = c.nodes // 2 + 1
            # From when a majority of all nodes had failed on full disks, nothing can be committed.
            if len(down) >= majority:
                info["majority_down_ns"] = max(down[majority - 1], info["full_ns"])
            for i in nodes:
                c.free_disk(i)

        left = ", ".join(f"{c.node_id(i)} {c.disk_free(i)} B free" for i in nodes)
        return f"disk full on {_names(c, nodes)} (ballast until ENOSPC; {left})", heal

    return inject


def _majority(c: ChaosCluster, rng: random.Random) -> list[int]:
    return rng.sample(range(c.nodes), c.nodes // 2 + 1)


FSYNC_ERROR_LOGGED = "failpoint journal.sync: injecting an I/O error"


def _fsync(pick: Callable[[ChaosCluster, random.Random], list[int]], action: str) -> Inject:
    def inject(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
        nodes = pick(c, rng)
        ids = [c.node_id(i) for i in nodes]
        failing = action == "error"
        info.update(targets=ids, failpoint=f"journal.sync={action}")
        if failing:
            info.update(expects_exit=ids, recover=ids)
        logs = {i: c.log_size(i) for i in nodes}
        # Only a node that was serving can be said to have been stopped by this fault (not one still starting
        # after the last heal, or failing to start for another reason).
        info["serving_at_injection"] = [c.node_id(i) for i in nodes if c.status(i) is not None]
        watch = ExitWatch(c, nodes)
        for i in nodes:
            c.set_failpoint(i, "journal.sync", action)

        def heal() -> None:
            info["alive_at_heal"] = [c.node_id(i) for i in nodes if c.alive(i)]
            info["exits"] = watch.stop()
            info["error_logged"] = {c.node_id(i): FSYNC_ERROR_LOGGED in c.log_since(i, logs[i]) for i in nodes}
            for i in nodes:
                c.set_failpoint(i, "journal.sync", None)

        what = "failing fsync (the node must stop)" if failing else f"slow fsync ({action})"
        return f"{what} on {_names(c, nodes)}", heal

    return inject


# -- corruption at rest --

WAL_BLOCK = 32 * 1024


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


META_PREFIXES = (b"rocksdb.", b"fullfilter.", b"filter.", b"partitionedfilter.")


def sst_data_end(data: bytes) -> int:
    """Where an SST's data blocks end: the lowest offset of any block its metaindex names.

    A block-based table is data blocks, then meta blocks (filter, index, range deletions, properties),
    the metaindex and the footer. The metaindex entries (restart interval 1, so whole keys) are
    0, len(key), len(handle), key, BlockHandle(varint offset, varint size); their lowest offset ends the
    data. Cross-checked with the rocksdb.data.size property when it is found. 0: no data block.
    """
    offsets = []
    tail = max(0, len(data) - 65536)
    for prefix in META_PREFIXES:
        pos = data.find(prefix, tail)
        while pos != -1:
            if pos >= 3 and data[pos - 3] == 0:
                klen, vlen = data[pos - 2], data[pos - 1]
                key = data[pos : pos + klen]
                if klen < 128 and vlen < 32 and key.startswith(prefix) and key.isascii():
                    with contextlib.suppress(ValueError):
                        offset, at = _varint(data, pos + klen)
                        size, end = _varint(data, at)
                        if end - (pos + klen) == vlen and offset + size <= len(data):
                            offsets.append(offset)
            pos = data.find(prefix, pos + 1)
    if not offsets:
        raise ValueError("no metaindex entry found")
    end = min(offsets)
    prop = data.find(b"data.size", tail)
    if prop != -1:
        with contextlib.suppress(ValueError):
            size, _ = _varint(data, prop + len(b"data.size"))
            if 0 <= size <= len(data):
                end = min(end, size)
    return end


def wal_records(data: bytes) -> list[tuple[int, int]]:
    """(payload offset, payload length) of every record in a RocksDB log file (32 KiB blocks of records:
    crc32c u32, length u16, type u8, [log number u32 for the recyclable types 5-8], payload)."""
    out = []
    pos = 0
    while pos + 7 <= len(data):
        room = WAL_BLOCK - pos % WAL_BLOCK
        if room < 7:  # the block's trailer is zero padding
            pos += room
            continue
        length = data[pos + 4] | data[pos + 5] << 8
        kind = data[pos + 6]
        if kind == 0 and length == 0:  # padding, or the preallocated end
            if data[pos : pos + room].strip(b"\0"):
                pos += room
                continue
            break
        header = 11 if 5 <= kind <= 8 else 7
        if pos + header + length > len(data):
            break  # a torn last record
        if length:
            out.append((pos + header, length))
        pos += header + length
    return out


def _flip(path: Path, offsets: list[int], rng: random.Random) -> list[dict[str, Any]]:
    """Flip one random bit at each offset of `path` (in place, fsynced); what was flipped."""
    flips = []
    fd = os.open(path, os.O_RDWR)
    try:
        for offset in offsets:
            bit = rng.randrange(8)
            before = os.pread(fd, 1, offset)[0]
            os.pwrite(fd, bytes([before ^ (1 << bit)]), offset)
            flips.append({"offset": offset, "bit": bit, "byte_before": before})
        os.fsync(fd)
    finally:
        os.close(fd)
    return flips


def _db_files(c: ChaosCluster, i: int, suffix: str) -> list[Path]:
    db = c.data_path(i) / "db"
    return sorted(db.glob(f"*{suffix}")) if db.is_dir() else []


def _sst_targets(c: ChaosCluster, i: int) -> list[tuple[Path, int]]:
    out = []
    for path in _db_files(c, i, ".sst"):
        with contextlib.suppress(OSError, ValueError):
            end = sst_data_end(path.read_bytes())
            if end >= 16:
                out.append((path, end))
    return out


def _corrupt_sst(c: ChaosCluster, i: int, rng: random.Random, info: dict[str, Any]) -> str:
    ssts = _sst_targets(c, i)
    if not ssts:
        raise RuntimeError("no SST with a data block, even after a forced flush")
    path, end = rng.choices(ssts, weights=[e for _, e in ssts])[0]
    offsets = sorted(rng.sample(range(end), min(3, end)))
    flips = [{"file": str(path.relative_to(c.data_path(i))), "data_end": end, **f} for f in _flip(path, offsets, rng)]
    info["flips"] = flips
    where = ", ".join(f"{f['offset']} bit {f['bit']}" for f in flips)
    return f"{path.name} (data blocks [0, {end}) of {path.stat().st_size} B) at {where}"


def _corrupt_wal(c: ChaosCluster, i: int, rng: random.Random, info: dict[str, Any]) -> str:
    logs = _db_files(c, i, ".log")
    if not logs:
        raise RuntimeError("no write-ahead log")
    # The newest log is the live one; an older one still on disk holds only flushed writes, which RocksDB
    # would never read again (a flip there would prove nothing).
    path = max(logs, key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    if path.stat().st_size == 0:
        raise RuntimeError(f"the live write-ahead log {path.name} is empty")
    records = wal_records(path.read_bytes())
    if not records:
        raise RuntimeError(f"{path.name} holds no whole record")
    # Not the last record (which a crash could have torn): one in the first three quarters when there are several.
    k = rng.randrange(max(1, (3 * len(records)) // 4))
    start, length = records[k]
    offsets = sorted(rng.sample(range(start, start + length), min(2, length)))
    flips = [
        {"file": str(path.relative_to(c.data_path(i))), "record": k, "records": len(records), **f}
        for f in _flip(path, offsets, rng)
    ]
    info["flips"] = flips
    where = ", ".join(f"{f['offset']} bit {f['bit']}" for f in flips)
    return f"{path.name} record {k + 1} of {len(records)} (payload at {start}, {length} B) at {where}"


SNAPSHOT_FILE = "raft.snapshot"


def _corrupt_snapshot(c: ChaosCluster, i: int, rng: random.Random, info: dict[str, Any]) -> str:
    path = c.data_path(i) / SNAPSHOT_FILE
    data = path.read_bytes()
    # MAGIC (8) | u32 header length | header | records | SHA-256 (32): flip in the records when there are some.
    start = 12 + int.from_bytes(data[8:12], "big") if len(data) > 12 else 0
    lo, hi = (start, len(data) - 32) if len(data) - 32 - start >= 3 else (0, len(data))
    offsets = sorted(rng.sample(range(lo, hi), min(3, hi - lo)))
    info["flips"] = [{"file": SNAPSHOT_FILE, "size": len(data), **f} for f in _flip(path, offsets, rng)]
    where = ", ".join(f"{f['offset']} bit {f['bit']}" for f in info["flips"])
    return f"{SNAPSHOT_FILE} ({len(data)} B, records from {start}) at {where}"


def _settled(c: ChaosCluster, i: int, timeout: float) -> bool:
    """Until node i has finished rejoining (no REJOINING marker in its data directory)."""
    deadline = time.monotonic() + timeout
    while (c.data_path(i) / REJOIN_MARKER).exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _has_snapshot(c: ChaosCluster, i: int) -> bool:
    return (c.data_path(i) / SNAPSHOT_FILE).is_file()


def _wait_applied_past(c: ChaosCluster, i: int, timeout: float) -> bool:
    """Until node i (just restarted) answers and has applied entries beyond what it first reports."""
    deadline = time.monotonic() + timeout
    first = None
    while time.monotonic() < deadline:
        status = c.status(i)
        if status is not None:
            if first is None:
                first = status.applied_index
            elif status.applied_index > first:
                return True
        time.sleep(0.1)
    return False


def _corrupt(kind: str) -> Inject:
    """Stop a follower, flip bits in one of its files while it is down, start it again."""
    flip = {"sst": _corrupt_sst, "wal": _corrupt_wal, "snapshot": _corrupt_snapshot}[kind]

    def ready(c: ChaosCluster, i: int) -> bool:  # is there something of this kind to flip (once stopped)?
        return bool(_sst_targets(c, i)) if kind == "sst" else _has_snapshot(c, i) if kind == "snapshot" else True

    def inject(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
        followers = _followers(c, rng)
        i = rng.choice([k for k in followers if c.alive(k)] or followers)
        ident = c.node_id(i)
        info.update(targets=[ident], recover=[ident], kind=kind)
        notes = []
        # Damage at rest of a settled follower: one still rejoining after an earlier fault is mid snapshot install,
        # whose range deletion can hide a flipped block from the start-up check until a compaction reads it
        # (the node then stops on it, by design: DESIGN "Disks, clocks and corruption").
        if not _settled(c, i, 30.0):
            notes.append("the target was still rejoining after 30s")
        # A graceful stop flushes the memtables into SSTs and leaves an empty log: the WAL needs kill -9.
        graceful = kind != "wal" and rng.random() < 0.5
        if kind == "snapshot" and not _has_snapshot(c, i) or kind == "sst" and not graceful and not ready(c, i):
            c.compact(i)  # a Raft snapshot (a RocksDB checkpoint flushes the memtables first)
            deadline = time.monotonic() + 10
            while not ready(c, i) and time.monotonic() < deadline:
                time.sleep(0.1)
            notes.append("forced a snapshot first (nothing to flip yet)")
            info["forced_snapshot"] = True
        for attempt in range(3):
            if not c.alive(i):  # it stopped by itself since the last heal: a crash the nemesis did not cause
                info["stop"] = f"none: it was down (exit {c.exit_code(i)})"
                info.setdefault("found_down", {})[ident] = c.exit_code(i)
            elif graceful:
                info["stop"] = f"graceful (exit {c.stop_node(i)})"
            else:
                c.kill(i)
                info["stop"] = "kill -9"
            try:
                what = flip(c, i, rng, info)
                break
            except RuntimeError as exc:  # nothing to flip yet: let it take writes, then stop it again
                if attempt == 2:
                    c.start_node(i)
                    raise RuntimeError(f"{ident}: {exc} ({attempt + 1} tries)") from None
                notes.append(f"{exc}: restarted and stopped again")
                c.start_node(i)
                _wait_applied_past(c, i, 10.0)
        info["log_offset"] = c.log_size(i)
        info["aside_before"] = sorted(p.name for p in c.data_path(i).glob("*corrupt*"))
        info["restarted_ns"] = time.monotonic_ns()
        c.start_node(i)  # the start-up verification runs now, within the hold
        watch = ExitWatch(c, [i])

        def heal() -> None:
            info["exits"] = watch.stop()

        note = f" ({'; '.join(notes)})" if notes else ""
        return f"corrupt-{kind} {ident}, stopped {info['stop']}: {what}; restarted{note}", heal

    return inject


def corruption_evidence(c: ChaosCluster, ident: str, log_offset: int, before: list[str]) -> dict[str, Any]:
    """What the node shows of having noticed since its restart: data moved aside (new entries named like
    'corrupt'), log lines about corruption or checksums."""
    i = next(k for k in range(c.nodes) if c.node_id(k) == ident)
    moved = sorted(p.name for p in c.data_path(i).glob("*corrupt*") if p.name not in before)
    lines = [
        line.strip()[:300]
        for line in c.log_since(i, log_offset).splitlines()
        if re.search(r"corrupt|checksum|mismatch", line, re.IGNORECASE)
    ]
    return {"moved_aside": moved, "log": lines[:5], "detected": bool(moved or lines)}


# -- clock --


def _clock(pick: Callable[[ChaosCluster, random.Random], list[int]], jump: bool) -> Inject:
    def inject(c: ChaosCluster, rng: random.Random, info: dict[str, Any]) -> tuple[str, Heal]:
        i = pick(c, rng)[0]
        first = rng.choice((-1, 1)) * round(rng.uniform(5, 60), 1)
        segments: list[list[float]] = []
        lock = threading.Lock()
        healed = threading.Event()
        info.update(targets=[c.node_id(i)], clock={"node": c.node_id(i), "segments": segments})

        def set_offset(seconds: float, final: bool = False) -> None:
            with lock:
                if healed.is_set():
                    return  # the jump's timer lost the race with the heal: the clock stays right
                if final:
                    healed.set()
                c.set_failpoint(i, "clock.offset", f"value({seconds}s)" if seconds else None)
                segments.append([time.time_ns(), seconds])

        set_offset(first)
        timer = None
        then = 0.0
        if jump:
            # Halfway through the hold the clock jumps past the right time to the other side: +20s -> -15s, say.
            then = (-1 if first > 0 else 1) * round(rng.uniform(5, 60), 1)
            timer = threading.Timer(float(info.get("hold_s", 2.0)) / 2, set_offset, args=(then,))
            timer.daemon = True
            timer.start()

        def heal() -> None:
            if timer is not None:
                timer.cancel()
            set_offset(0.0, final=True)

        what = f"clock of {_names(c, [i])} {first:+}s" + (f", jumping to {then:+}s halfway" if jump else "")
        return what, heal

    return inject


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in [
        Fault("kill-leader", "kill", _kill(lambda c, r: [_leader_or_any(c, r)]), removes_leader=True),
        Fault("kill-follower", "kill", _kill(lambda c, r: [r.choice(_followers(c, r))])),
        Fault(
            "kill-minority",
            "kill",
            _kill(lambda c, r: r.sample(range(c.nodes), (c.nodes - 1) // 2)),
            removes_leader=True,
        ),
        Fault(
            "kill-majority", "kill", _kill(lambda c, r: r.sample(range(c.nodes), c.nodes // 2 + 1)), removes_leader=True
        ),
        Fault("kill-all", "kill", _kill(lambda c, r: list(range(c.nodes))), removes_leader=True),
        Fault("pause-leader-short", "pause", _pause(lambda c, r: [_leader_or_any(c, r)], 0.3)),
        Fault("pause-leader-long", "pause", _pause(lambda c, r: [_leader_or_any(c, r)], None), removes_leader=True),
        Fault("pause-follower-short", "pause", _pause(lambda c, r: [r.choice(_followers(c, r))], 0.3)),
        Fault("pause-follower", "pause", _pause(lambda c, r: [r.choice(_followers(c, r))], None)),
        Fault("partition-leader", "partition", _partition(_isolate_leader), needs_netns=True, removes_leader=True),
        Fault("partition-halves", "partition", _partition(_halves), needs_netns=True, removes_leader=True),
        Fault("partition-one-way", "partition", _partition(_one_way), needs_netns=True, removes_leader=True),
        Fault("partition-bridge", "partition", _partition(_bridge), needs_netns=True),
        Fault("partition-ring", "partition", _partition(_ring), needs_netns=True),
        Fault(
            "partition-compact",
            "partition",
            _partition(_isolate_leader, compact_majority=True),
            needs_netns=True,
            removes_leader=True,
        ),
        Fault("restart-rolling", "restart", _rolling_restart),
        Fault("transfer-leadership", "transfer", _transfer),
        Fault("netem-latency", "netem", _netem(["delay", "50ms", "20ms"]), needs_netns=True),
        Fault("netem-loss", "netem", _netem(["loss", "20%"]), needs_netns=True),
        Fault("worker-kill", "workers", _worker_kill, needs_workers=True),
        Fault("worker-pause", "workers", _worker_pause, needs_workers=True),
        Fault("disk-full-follower", "disk", _disk_full(lambda c, r: [r.choice(_followers(c, r))]), needs_tmpfs=True),
        Fault(
            "disk-full-leader",
            "disk",
            _disk_full(lambda c, r: [_leader_or_any(c, r)]),
            needs_tmpfs=True,
            removes_leader=True,
        ),
        Fault("disk-full-majority", "disk", _disk_full(_majority), needs_tmpfs=True, removes_leader=True),
        Fault(
            "fsync-slow-leader",
            "fsync",
            _fsync(lambda c, r: [_leader_or_any(c, r)], "sleep(300ms)"),
            needs_failpoints=True,
        ),
        Fault(
            "fsync-slow-follower",
            "fsync",
            _fsync(lambda c, r: [r.choice(_followers(c, r))], "sleep(300ms)"),
            needs_failpoints=True,
        ),
        Fault(
            "fsync-error-leader",
            "fsync",
            _fsync(lambda c, r: [_leader_or_any(c, r)], "error"),
            needs_failpoints=True,
            removes_leader=True,
        ),
        Fault(
            "fsync-error-follower",
            "fsync",
            _fsync(lambda c, r: [r.choice(_followers(c, r))], "error"),
            needs_failpoints=True,
        ),
        Fault("corrupt-sst", "corrupt", _corrupt("sst")),
        Fault("corrupt-wal", "corrupt", _corrupt("wal")),
        Fault("corrupt-snapshot", "corrupt", _corrupt("snapshot")),
        Fault("clock-skew-leader", "clock", _clock(lambda c, r: [_leader_or_any(c, r)], False), needs_failpoints=True),
        Fault(
            "clock-skew-follower",
            "clock",
            _clock(lambda c, r: [r.choice(_followers(c, r))], False),
            needs_failpoints=True,
        ),
        Fault("clock-jump-leader", "clock", _clock(lambda c, r: [_leader_or_any(c, r)], True), needs_failpoints=True),
        Fault(
            "clock-jump-follower",
            "clock",
            _clock(lambda c, r: [r.choice(_followers(c, r))], True),
            needs_failpoints=True,
        ),
    ]
}


def families(spec: str) -> list[str]:
    """The families a --faults list names (directly, or through one of their faults)."""
    out: list[str] = []
    for word in (w.strip() for w in spec.split(",") if w.strip()):
        for f in FAULTS.values():
            if word in (f.family, f.name) and f.family not in out:
                out.append(f.family)
    return out


def select(
    spec: str, *, netns: bool, workers: bool = False, tmpfs: bool | None = None
) -> tuple[list[Fault], list[str]]:
    """Faults for a comma-separated list of families and names; and why any were left out ("name: why").

    `tmpfs`: whether size-limited data directories can be mounted (default: when root).
    """
    chosen: list[Fault] = []
    for word in (w.strip() for w in spec.split(",") if w.strip()):
        matches = [f for f in FAULTS.values() if word in (f.family, f.name)]
        if not matches:
            families = sorted({f.family for f in FAULTS.values()})
            raise SystemExit(f"unknown fault {word!r}: families {', '.join(families)}; names {', '.join(FAULTS)}")
        chosen += [f for f in matches if f not in chosen]
    left_out = []
    if not workers:
        left_out += [f"{f.name}: needs workers (--workload workflows or both)" for f in chosen if f.needs_workers]
        chosen = [f for f in chosen if not f.needs_workers]
    if not netns:
        left_out += [f"{f.name}: needs network namespaces (root)" for f in chosen if f.needs_netns]
        chosen = [f for f in chosen if not f.needs_netns]
    if any(f.family == "netem" for f in chosen) and not netem_available():
        left_out += [
            f"{f.name}: this kernel has no netem qdisc (tc could not add one in a scratch namespace)"
            for f in chosen
            if f.family == "netem"
        ]
        chosen = [f for f in chosen if f.family != "netem"]
    if tmpfs is None:
        tmpfs = os.geteuid() == 0
    if not tmpfs:
        left_out += [f"{f.name}: needs root (a size-limited tmpfs per data directory)" for f in chosen if f.needs_tmpfs]
        chosen = [f for f in chosen if not f.needs_tmpfs]
    return chosen, left_out

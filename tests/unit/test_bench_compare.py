"""The comparison's pure parts: run order, the tables' medians and paired ratios, CPU accounting, etcd's wire."""

from __future__ import annotations

import os
import time

from bench.cairn_side import CAIRN_APIS
from bench.compare import OPS, Result, run_order
from bench.cpu import process_cpu_seconds
from bench.etcdserverpb import rpc_pb2
from bench.loadgen import Measurement, percentile
from bench.report import paired_ratios, spread


def result(system: str, repeat: int, ops_per_sec: float, p99_ms: float) -> Result:
    m = Measurement(100, 0, 1.0, ops_per_sec, 1.0, 1.0, p99_ms, p99_ms, 100.0, 1.0)
    return Result(repeat, system, 0, "unary", "persist", 1, "127.0.0.1:1", 1, False, m)


def test_order_alternates_starting_with_cairn() -> None:
    assert [run_order(r)[0] for r in range(4)] == ["cairn", "etcd", "cairn", "etcd"]
    assert all(sorted(run_order(r)) == ["cairn", "etcd"] for r in range(4))


def test_spread_is_median_and_range() -> None:
    fmt = "{:.1f}".format
    assert spread([], fmt) == "-"
    assert spread([2.0], fmt) == "2.0"
    assert spread([3.0, 1.0, 2.0], fmt) == "2.0 (1.0-3.0)"


def test_ratios_pair_the_same_repeat() -> None:
    cairn = {0: result("cairn", 0, 100, 4), 1: result("cairn", 1, 50, 8)}
    etcd = {0: result("etcd", 0, 200, 2), 1: result("etcd", 1, 50, 2), 2: result("etcd", 2, 1, 1)}
    assert paired_ratios(cairn, etcd, "ops_per_sec") == [0.5, 1.0]
    assert paired_ratios(cairn, etcd, "p99_ms") == [2.0, 4.0]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51.0 and percentile(values, 0.99) == 100.0 and percentile([], 0.5) == 0.0


def test_cpu_seconds_follow_this_process() -> None:
    before = process_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    assert process_cpu_seconds(os.getpid()) - before >= 0.05


def test_every_cairn_api_implements_every_op() -> None:
    assert CAIRN_APIS and all(set(calls) == set(OPS) for calls in CAIRN_APIS.values())


def test_etcd_messages_keep_etcds_names_and_numbers() -> None:
    """What the real etcd 3.4 decodes: method paths and field numbers of etcdserverpb/rpc.proto."""
    file = rpc_pb2.DESCRIPTOR
    assert file.package == "etcdserverpb"
    assert {s.full_name: {m.name for m in s.methods} for s in file.services_by_name.values()} == {
        "etcdserverpb.KV": {"Range", "Put", "Txn"},
        "etcdserverpb.Maintenance": {"Status"},
    }

    def number(message: str, field: str) -> int:
        return file.message_types_by_name[message].fields_by_name[field].number

    assert number("RangeRequest", "serializable") == 7
    assert number("Compare", "mod_revision") == 6 and number("Compare", "range_end") == 64
    assert number("RequestOp", "request_put") == 2 and number("ResponseOp", "response_range") == 1
    assert number("TxnResponse", "succeeded") == 2 and number("StatusResponse", "leader") == 4
    assert number("KeyValue", "mod_revision") == 3 and number("ResponseHeader", "revision") == 3

"""Group commit (README "Performance"): concurrent writes share log entries, and each still gets exactly
the answer it would have got alone -- CAS conflicts, versions and histories included."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import grpc
import pytest

from cairn import Client
from cairn.errors import ConflictError
from cairn.v1 import state_pb2, workflow_pb2
from tests.raw import Raw, new_id, stopped, struct
from tests.support import ClusterHandle, wait_until

THREADS = 24
SHARED = 6  # workflows every thread races on with compare-and-swap
ROUNDS = 12


def race(handle: ClusterHandle) -> tuple[Counter[str], int, int]:
    """THREADS threads: each CASes the shared workflows and writes one of its own per round.
    Returns (successful CAS per workflow, writes acknowledged, log entries the cluster grew by)."""
    leader = handle.wait_leader()
    before = handle.status(leader).commit_index
    wins: Counter[str] = Counter()
    acked = [0] * THREADS
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def run(t: int, client: Client) -> None:
        try:
            start.wait()
            for r in range(ROUNDS):
                wid = f"shared-{(t + r) % SHARED}"
                seen = client.get_state(wid, include_history=False)
                try:
                    client.persist_state(wid, variables={"by": t, "round": r}, expected_version=seen.version)
                except ConflictError as exc:
                    assert exc.current_version is not None and exc.current_version > seen.version
                else:
                    with lock:
                        wins[wid] += 1
                    acked[t] += 1
                client.persist_state(f"own-{t}", variables={"round": r})
                acked[t] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    clients = [Client(handle.cluster.endpoints, timeout=20) for _ in range(4)]
    for c in clients:
        for s in range(SHARED):
            c.persist_state(f"shared-{s}", variables={}, request_id=f"create-shared-{s}")
    threads = [threading.Thread(target=run, args=(t, clients[t % 4])) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    for c in clients:
        c.close()
    assert not errors, errors[:3]
    after = handle.status(handle.wait_leader()).commit_index
    return wins, sum(acked), after - before


def check_histories(handle: ClusterHandle, wins: Counter[str]) -> None:
    for s in range(SHARED):
        wid = f"shared-{s}"
        state = handle.client.get_state(wid)
        assert state.version == 1 + wins[wid], (wid, state.version, wins[wid])
        assert [h.version for h in state.history] == list(range(1, state.version + 1))
    for t in range(THREADS):
        assert handle.client.get_state(f"own-{t}", include_history=False).version == ROUNDS


def test_concurrent_writes_share_entries_and_keep_every_answer(make_cluster: Callable[..., ClusterHandle]) -> None:
    handle = make_cluster(3)
    wins, acked, entries = race(handle)
    check_histories(handle, wins)
    assert sum(wins.values()) >= ROUNDS  # every round, some CAS on each workflow won
    # Group commit at work: fewer log entries than acknowledged writes (the reads' barriers count too).
    assert entries < acked, (entries, acked)


def test_group_commit_1_is_one_entry_per_write(make_cluster: Callable[..., ClusterHandle]) -> None:
    handle = make_cluster(3, {"raft": {"group_commit": 1}})
    wins, acked, entries = race(handle)
    check_histories(handle, wins)
    assert entries >= acked, (entries, acked)


def test_a_retry_of_a_pending_grouped_write_waits_and_gets_the_first_answer(
    make_cluster: Callable[..., ClusterHandle],
) -> None:
    """Both followers stopped: the first attempt's entry is proposed, not committed, and the client gave up
    (DEADLINE_EXCEEDED). The retry (same request id) waits in the queue behind that entry (the leader proposes
    one group at a time); once the followers resume it gets the first attempt's answer, from the dedup record
    or from apply recognising the request id, and the write is applied once."""
    handle = make_cluster(3, {"raft": {"election_timeout": "4s", "heartbeat_interval": "100ms"}})
    raw = Raw(handle)
    try:
        leader = raw.leader()
        followers = [i for i in range(handle.size) if i != leader]
        request = state_pb2.PersistStateRequest(
            workflow_id=new_id("gc"), current_step="s", variables=struct({"n": 1}), request_id=new_id("rid")
        )
        before = raw.status(leader)
        with stopped(handle, followers):
            with pytest.raises(grpc.RpcError) as lost:
                raw.state(leader).PersistState(request, timeout=0.5)
            assert lost.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            wait_until(lambda: raw.status(leader).last_log_index > before.last_log_index, 5, "never proposed")
            box: dict[str, object] = {}
            retry = threading.Thread(
                target=lambda: box.update(r=raw.state(leader).PersistState(request, timeout=20)), daemon=True
            )
            retry.start()
        retry.join(25)
        response = box["r"]
        assert isinstance(response, state_pb2.PersistStateResponse)
        assert response.state.version == 1
        get = state_pb2.GetStateRequest(workflow_id=request.workflow_id, include_history=True)
        stored = raw.state(leader).GetState(get, timeout=10).state
        assert stored.version == 1 and [h.version for h in stored.history] == [1]
    finally:
        raw.close()


def test_groups_larger_than_pysyncobjs_chunking_size_replicate_and_compact_by_bytes(
    make_cluster: Callable[..., ClusterHandle],
) -> None:
    """16 KiB values from 24 threads: groups of several hundred KiB, far above pysyncobj's default chunk size
    (64 KiB; trap 6), replicate to every member, including one that restarts and catches up from the leader;
    raft.snapshot_log_bytes compacts the log by its size long before raft.snapshot_entries would."""
    handle = make_cluster(3, {"raft": {"snapshot_log_bytes": "2MiB", "snapshot_entries": 1_000_000}})
    leader = handle.wait_leader()
    follower = next(i for i in range(handle.size) if i != leader)
    big = "v" * 16 * 1024
    errors: list[BaseException] = []

    def writer(t: int, client: Client) -> None:
        try:
            for n in range(10):
                client.persist_state(f"big-{t}", variables={"n": n, "blob": big})
        except BaseException as exc:
            errors.append(exc)

    clients = [Client(handle.cluster.endpoints, timeout=30) for _ in range(4)]
    try:
        handle.cluster.kill_node(follower)
        threads = [threading.Thread(target=writer, args=(t, clients[t % 4])) for t in range(24)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not errors, errors[:3]
        handle.cluster.start_node(follower)
        status = handle.status(leader)
        assert status.snapshot_index > 0, "the log was not compacted by its size"
        assert status.log_entries < 240
        for t in range(24):
            assert clients[0].get_state(f"big-{t}", include_history=False).version == 10
        wait_until(
            lambda: handle.status(follower).applied_index >= status.commit_index, 60, "the restarted member lags"
        )
        for t in range(0, 24, 6):
            result = clients[0].validate_state(f"big-{t}")
            assert result.valid, result
            assert len(result.replicas) == 3 and all(r.reachable and r.version == 10 for r in result.replicas)
            assert len({r.digest for r in result.replicas}) == 1, result.replicas
    finally:
        for c in clients:
            c.close()


def test_writes_queued_behind_a_group_fail_fast_when_the_leader_steps_down(
    make_cluster: Callable[..., ClusterHandle],
) -> None:
    """Both followers stopped: one write is in flight, more wait behind it. When the leader gives up (it hears no
    quorum for twice the election timeout) every one of them is answered UNAVAILABLE at once, not left waiting
    for its 30 s deadline."""
    handle = make_cluster(3, {"raft": {"election_timeout": "1s", "heartbeat_interval": "100ms"}})
    raw = Raw(handle)
    try:
        leader = raw.leader()
        followers = [i for i in range(handle.size) if i != leader]
        answers: dict[int, grpc.StatusCode] = {}

        def write(n: int) -> None:
            request = state_pb2.PersistStateRequest(workflow_id=f"q-{n}", request_id=new_id("rid"))
            try:
                raw.state(leader).PersistState(request, timeout=30)
                answers[n] = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                answers[n] = exc.code()

        with stopped(handle, followers):
            before = raw.status(leader).last_log_index
            first = threading.Thread(target=write, args=(0,), daemon=True)
            first.start()
            wait_until(lambda: raw.status(leader).last_log_index > before, 5, "the first write was not proposed")
            queued = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(1, 9)]
            for th in queued:
                th.start()
            for th in [first, *queued]:
                th.join(15)  # the leader steps down after 2 s; the deadline is 30 s
            assert sorted(answers) == list(range(9)), answers
            assert set(answers.values()) == {grpc.StatusCode.UNAVAILABLE}, answers
    finally:
        raw.close()


def test_a_workflow_step_is_one_log_entry(shared_cluster: ClusterHandle) -> None:
    """A recorded step (the engine's persistence of a step's result) costs one replicated write."""
    raw = Raw(shared_cluster)
    try:
        leader = raw.leader()
        wid, wtype = new_id("step"), new_id("type")
        raw.flow(leader).StartWorkflow(
            workflow_pb2.StartWorkflowRequest(workflow_id=wid, workflow_type=wtype, request_id=new_id("s")), timeout=10
        )
        task = (
            raw.flow(leader)
            .PollWork(
                workflow_pb2.PollWorkRequest(
                    worker_id="w",
                    workflow_types=[wtype],
                    lease_timeout_ms=600_000,
                    wait_ms=5000,
                    request_id=new_id("p"),
                ),
                timeout=10,
            )
            .task
        )
        before = raw.status(leader).last_log_index
        for n in range(3):
            raw.flow(leader).RecordStep(
                workflow_pb2.RecordStepRequest(
                    workflow_id=wid, fencing_token=task.lease.fencing_token, step_name=f"s{n}", request_id=new_id("r")
                ),
                timeout=10,
            )
        assert raw.status(leader).last_log_index == before + 3
    finally:
        raw.close()

"""Real multi-process clusters on loopback: forwarding, failover, catch-up, restarts, CAS, dedup."""

from __future__ import annotations

import threading
import time

import pytest

from cairn import Client, ConflictError, FailedPreconditionError
from cairn.errors import CairnError
from tests.support import ClusterHandle, wait_until


def test_write_to_a_follower_lands_on_every_replica(make_cluster) -> None:
    c: ClusterHandle = make_cluster()
    follower = c.followers()[0]
    via_follower = c.node_client(follower)
    state = via_follower.persist_state("fwd-1", current_step="a", variables={"x": 1})
    assert state.version == 1
    for i in range(c.size):
        got = c.node_client(i).get_state("fwd-1", consistency="serializable", min_index=state.applied_index)
        assert got.variables == {"x": 1} and got.served_by == c.cluster.specs[i].node_id


def _writer(
    client: Client,
    tag: str,
    stop: threading.Event,
    acked: list[str],
    unknown: list[str],
    first_ok_after: dict[str, float],
    kill_time: list[float],
) -> None:
    k = 0
    while not stop.is_set():
        wid = f"acked-{tag}-{k}"
        k += 1
        try:
            client.persist_state(wid, current_step="s", variables={"k": k}, timeout=8)
        except CairnError:
            unknown.append(wid)
            continue
        acked.append(wid)
        if kill_time and tag not in first_ok_after:
            first_ok_after[tag] = time.monotonic() - kill_time[0]


def test_kill_9_of_the_leader_loses_no_acknowledged_write(make_cluster) -> None:
    c: ClusterHandle = make_cluster()
    leader = c.wait_leader()
    stop = threading.Event()
    acked: list[str] = []
    unknown: list[str] = []
    first_ok: dict[str, float] = {}
    kill_time: list[float] = []
    clients = [Client(c.cluster.endpoints, timeout=8) for _ in range(4)]
    threads = [
        threading.Thread(target=_writer, args=(cl, str(n), stop, acked, unknown, first_ok, kill_time))
        for n, cl in enumerate(clients)
    ]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) > 40, 15, "writes did not start")
    kill_time.append(time.monotonic())
    c.kill(leader)
    wait_until(lambda: len(first_ok) == len(threads), 15, "writes did not resume after the leader was killed")
    acked_at_resume = len(acked)
    wait_until(lambda: len(acked) > acked_at_resume + 40, 15, "writes stalled after failover")
    stop.set()
    for t in threads:
        t.join(15)
    failover = min(first_ok.values())
    print(
        f"failover: first write acknowledged {failover * 1000:.0f} ms after kill -9 of the leader; "
        f"{len(acked)} acked, {len(unknown)} unknown"
    )
    assert failover < 8.0
    survivors = [i for i in range(c.size) if i != leader]
    new_leader = c.wait_leader(among=survivors)
    existing = {w.workflow_id for w in c.node_client(new_leader).list_workflows("acked-")}
    lost = [w for w in acked if w not in existing]
    assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:5]}"
    # The killed node comes back and catches up with everything.
    c.cluster.start_node(leader)
    commit = c.status(new_leader).commit_index
    c.wait_applied(leader, commit, timeout=30)
    for wid in acked[-20:]:
        assert c.node_client(leader).get_state(wid, consistency="serializable").variables["k"] >= 1
    for cl in clients:
        cl.close()


def test_a_restarted_node_catches_up(make_cluster) -> None:
    c: ClusterHandle = make_cluster()
    follower = c.followers()[0]
    c.kill(follower)
    for n in range(30):
        c.client.persist_state(f"catch-{n}", current_step="s", variables={"n": n})
    last = c.client.persist_state("catch-last", current_step="done")
    c.cluster.start_node(follower)
    got = c.node_client(follower, timeout=20).get_state(
        "catch-last", consistency="serializable", min_index=last.applied_index
    )
    assert got.current_step == "done"
    assert c.node_client(follower).get_state("catch-7", consistency="serializable").variables == {"n": 7}


def test_a_lagging_node_catches_up_through_a_snapshot(make_cluster) -> None:
    c: ClusterHandle = make_cluster(overrides={"raft": {"snapshot_entries": 20}})
    leader = c.wait_leader()
    lagging = c.followers()[0]
    c.kill(lagging)
    for n in range(120):
        c.client.persist_state(f"snap-{n % 10}", current_step=f"s{n}", variables={"n": n})
    for i in range(c.size):
        if i != lagging:
            c.client.snapshot(c.endpoint(i))
    leader_status = c.status(leader)
    assert leader_status.snapshot_index > 100
    assert leader_status.log_entries < 60, "the leader's log was not compacted"
    c.cluster.start_node(lagging)
    c.wait_applied(lagging, leader_status.commit_index, timeout=30)
    wait_until(lambda: "installed snapshot" in c.log(lagging), 10, "the lagging node did not install a snapshot")
    for k in range(10):
        mine = c.node_client(lagging).get_state(f"snap-{k}", consistency="serializable")
        theirs = c.node_client(leader).get_state(f"snap-{k}", consistency="serializable")
        assert mine.raw == theirs.raw
    result = c.client.validate_state("snap-3")
    assert result.valid, result.problems
    assert len({d.digest for d in result.replicas if d.reachable}) == 1 and len(result.replicas) == 3


def test_the_whole_cluster_killed_and_restarted_keeps_everything(make_cluster) -> None:
    # Trap 3: after compaction the journal alone no longer holds the state; the snapshot file must.
    c: ClusterHandle = make_cluster(overrides={"raft": {"snapshot_entries": 20}})
    acked = {}
    for n in range(80):
        s = c.client.persist_state(f"all-{n % 16}", current_step=f"s{n}", variables={"n": n})
        acked[s.workflow_id] = s.version
    for i in range(c.size):
        c.client.snapshot(c.endpoint(i))
    for n in range(80, 100):
        s = c.client.persist_state(f"all-{n % 16}", current_step=f"s{n}", variables={"n": n})
        acked[s.workflow_id] = s.version
    cp = c.client.create_checkpoint("all-3")
    for i in range(c.size):
        c.kill(i)
    for i in range(c.size):
        c.cluster.start_node(i)
    c.wait_leader(30)
    for wid, version in acked.items():
        assert c.client.get_state(wid).version == version
    assert c.client.get_checkpoint("all-3", cp.id).checksum == cp.checksum
    assert c.client.validate_state("all-3").valid


def test_concurrent_cas_writers_get_exactly_one_winner_per_version(make_cluster) -> None:
    c: ClusterHandle = make_cluster()
    c.client.persist_state("cas", current_step="start", expected_version=0)
    writers = 6
    clients = [Client(c.cluster.endpoints, timeout=10) for _ in range(writers)]
    # A timeout on the gate, and a writer that fails breaks it for all: no thread waits forever for one that died.
    gate = threading.Barrier(writers, timeout=30)
    outcomes: list[tuple[int, int, str]] = []  # (round, worker, outcome)
    errors: list[tuple[int, BaseException]] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for round_ in range(8):
                gate.wait()
                version = clients[n].get_state("cas").version
                gate.wait()
                try:
                    clients[n].persist_state("cas", current_step=f"{round_}-{n}", expected_version=version)
                    outcome = "won"
                except ConflictError as err:
                    assert err.current_version == version + 1
                    outcome = "lost"
                with lock:
                    outcomes.append((round_, n, outcome))
        except BaseException as exc:
            with lock:
                errors.append((n, exc))
            gate.abort()

    threads = [threading.Thread(target=work, args=(n,), name=f"writer-{n}", daemon=True) for n in range(writers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert [t.name for t in threads if t.is_alive()] == [], "writers still running after 120s"
    # The first error is the cause; the others are the BrokenBarrierError it caused.
    assert errors == [], errors
    assert len(outcomes) == writers * 8
    for round_ in range(8):
        winners = [o for o in outcomes if o[0] == round_ and o[2] == "won"]
        assert len(winners) == 1, f"round {round_}: {winners}"
    final = c.client.get_state("cas")
    assert final.version == 9
    assert [h.version for h in final.history] == list(range(1, 10))
    for cl in clients:
        cl.close()


def test_a_retry_with_the_same_request_id_applies_once_even_across_a_leader_change(make_cluster) -> None:
    c: ClusterHandle = make_cluster()
    first = c.client.persist_state("dedup", current_step="a", variables={"n": 1}, request_id="req-1")
    again = c.client.persist_state("dedup", current_step="a", variables={"n": 1}, request_id="req-1")
    assert again.version == first.version == 1
    with pytest.raises(FailedPreconditionError, match="already used"):
        c.client.persist_state("dedup", current_step="OTHER", request_id="req-1")
    c.kill(c.wait_leader())
    after = c.client.persist_state("dedup", current_step="a", variables={"n": 1}, request_id="req-1", timeout=20)
    assert after.version == 1
    assert len(c.client.get_state("dedup").history) == 1


def test_a_wiped_node_rebuilds_from_a_snapshot(make_cluster) -> None:
    import shutil

    c: ClusterHandle = make_cluster(overrides={"raft": {"snapshot_entries": 20}})
    wiped = c.followers()[0]
    for n in range(60):
        c.client.persist_state(f"wipe-{n % 6}", current_step=f"s{n}", variables={"n": n})
    for i in range(c.size):
        c.client.snapshot(c.endpoint(i))
    c.kill(wiped)
    shutil.rmtree(c.cluster.specs[wiped].data_dir / "data")
    c.cluster.start_node(wiped)
    last = c.client.persist_state("wipe-last", current_step="done")
    got = c.node_client(wiped, timeout=30).get_state(
        "wipe-last", consistency="serializable", min_index=last.applied_index
    )
    assert got.current_step == "done"
    for k in range(6):
        assert (
            c.node_client(wiped).get_state(f"wipe-{k}", consistency="serializable").raw
            == c.client.get_state(f"wipe-{k}").raw
        )


def test_leadership_transfer_under_load_loses_nothing(make_cluster) -> None:
    c: ClusterHandle = make_cluster()
    old = c.wait_leader()
    stop = threading.Event()
    acked: list[str] = []
    unknown: list[str] = []
    writer = threading.Thread(
        target=_writer, args=(Client(c.cluster.endpoints, timeout=8), "t", stop, acked, unknown, {}, [])
    )
    writer.start()
    wait_until(lambda: len(acked) > 20, 10, "writes did not start")
    new_id = c.client.transfer_leadership()
    assert new_id != c.cluster.specs[old].node_id
    wait_until(lambda: c.leader_index() not in (None, old), 10, "leadership did not move")
    count = len(acked)
    wait_until(lambda: len(acked) > count + 20, 10, "writes stalled after the transfer")
    stop.set()
    writer.join(15)
    existing = {w.workflow_id for w in c.client.list_workflows("acked-t-")}
    assert not [w for w in acked if w not in existing]


def test_followers_campaign_soon_after_the_leaders_connection_closes(make_cluster) -> None:
    """A killed leader's connections close at once: a follower campaigns after a fraction of the election
    timeout (here 10 s, so waiting it out would take over 10 s), not after the whole of it."""
    handle = make_cluster(3, {"raft": {"election_timeout": "10s", "heartbeat_interval": "100ms"}})
    leader = handle.wait_leader(60)
    handle.kill(leader)
    killed = time.monotonic()
    survivors = [i for i in range(handle.size) if i != leader]
    handle.wait_leader(timeout=8, among=survivors)
    assert time.monotonic() - killed < 8


def test_after_an_idle_spell_a_killed_leader_is_replaced_in_one_election(make_cluster) -> None:
    """Followers never send each other Raft messages, and pysyncobj drops a message sent on a connection that
    has read nothing for connectionTimeout (2 s here): without keepalives the first vote request after the
    leader dies is lost and the election needs another round (term + 2 or more)."""
    handle = make_cluster(3, {"raft": {"election_timeout": "1s", "heartbeat_interval": "100ms"}})
    leader = handle.wait_leader(60)
    term = handle.status(leader).term
    # The precondition is an idle spell longer than connectionTimeout: wait it out, watching that nothing moves.
    idle_until = time.monotonic() + 3.0
    wait_until(lambda: time.monotonic() >= idle_until and handle.status(leader).term == term, 10, "term moved")
    handle.kill(leader)
    survivors = [i for i in range(handle.size) if i != leader]
    new_leader = handle.wait_leader(timeout=10, among=survivors)
    assert handle.status(new_leader).term == term + 1

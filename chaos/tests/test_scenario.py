"""Real chaos scenarios, short enough for CI. As root the nodes live in network namespaces (partitions);
otherwise the runner falls back to loopback with kills and pauses, and says so in its report. A scenario
that asks for partitions needs root: without it, it is skipped, and the skip fails the session."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from chaos.netns import netns_available

ROOT = Path(__file__).resolve().parents[2]
# A scenario with partition faults needs them; without root the runner would leave them out. The skip
# fails the session (tests/conftest.py: no silent skips), naming what to do.
needs_netns = pytest.mark.skipif(
    not netns_available(), reason="needs root and network namespaces (ip netns): run as root, as .ci/run does"
)


def chaos(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chaos", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def leftovers(prefix: str) -> list[str]:
    """Namespaces and links named PREFIX... (listing them needs no root: this looks for real, always)."""
    if shutil.which("ip") is None:
        pytest.fail("the ip command is missing: install iproute2 (.ci/run does)")
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return [n for n in names if n.startswith(prefix)] + [ln for ln in links.splitlines() if f" {prefix}" in ln]


def processes_of(out: Path, but: int | None = None) -> list[str]:
    """Processes of a run (nodes, workers, ...): their command line or environment names its directory."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) in (os.getpid(), but):
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if str(out).encode() in cmdline or str(out).encode() in (proc / "environ").read_bytes():
                command = cmdline.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name}: {command[:200]}")
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.CompletedProcess]]:
    out = tmp_path_factory.mktemp("chaos") / "run"
    proc = chaos(
        "run",
        "--nodes",
        "3",
        "--duration",
        "40",
        "--faults",
        "kill,pause,partition",
        "--seed",
        "5",  # its first fault (the nemesis' first draw) is a partition
        "--interval",
        "5",
        "--hold",
        "2.5",
        "--net-prefix",
        "czk",
        "--subnet",
        "10.214.9",
        "--out",
        str(out),
    )
    yield out, proc


@needs_netns
def test_stream_writes_under_kills_pauses_and_partitions_pass_every_checker(tmp_path: Path) -> None:
    """The clients persist over PersistStream: a stream broken by a kill or cut off by a partition is reopened
    at the leader and its writes retried under their request ids; group commit runs under every fault."""
    out = tmp_path / "run"
    proc = chaos(
        "run",
        "--nodes",
        "3",
        "--duration",
        "30",
        "--faults",
        "kill,pause,partition",
        "--seed",
        "6",
        "--interval",
        "4",
        "--hold",
        "2",
        "--stream-writes",
        "--net-prefix",
        "czs",
        "--subnet",
        "10.214.11",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdicts = {v["name"]: v["status"] for v in json.loads((out / "verdicts.json").read_text())}
    assert set(verdicts.values()) == {"pass"} and len(verdicts) == 6, verdicts
    assert json.loads((out / "run.json").read_text())["stream_writes"] is True
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert len(faults) >= 3
    writes = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert sum(1 for w in writes if w["f"] in ("write", "cas") and w.get("type") == "ok") > 50
    assert leftovers("czs") == [] and processes_of(out) == []


@needs_netns
def test_a_short_scenario_passes_every_checker(short_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, proc = short_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert {v["name"]: v["status"] for v in verdicts} == {
        "linearizable": "pass",
        "no-lost-writes": "pass",
        "exactly-once": "pass",
        "convergence": "pass",
        "liveness": "pass",
        "audit": "pass",
    }
    meta = json.loads((out / "run.json").read_text())
    assert (meta["net_prefix"], meta["subnet"]) == ("czk", "10.214.9")
    assert meta["netns"] is True
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert len(faults) >= 4 and all(f["end_ns"] > f["start_ns"] for f in faults)
    assert any(f["name"].startswith("partition-") and not f["error"] for f in faults), f"no partition ran: {faults}"
    kinds = {json.loads(line)["f"] for line in (out / "history.jsonl").read_text().splitlines()}
    assert kinds == {"read", "write", "cas", "checkpoint", "recover"}
    report = (out / "report.md").read_text()
    for section in ("## Verdicts", "## Operations", "## Faults"):
        assert section in report
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert leftovers("czk") == [] and processes_of(out) == []


@needs_netns
def test_check_reproduces_the_verdicts_from_the_saved_run(short_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, first = short_run
    before = (out / "verdicts.json").read_text()
    again = chaos("check", str(out))
    assert again.returncode == first.returncode
    assert json.loads((out / "verdicts.json").read_text()) == json.loads(before)


def secure_cluster_evidence(out: Path) -> list[str]:
    """What shows that a run's cluster really was secure, node by node; the empty list if all of it does: its
    config asks for mTLS with client certificates, access control and encryption at rest; its log says it
    served TLS only; its certificate names its (namespace) address; no value the clients wrote is on disk
    in plaintext (record keys may be)."""
    from cryptography import x509

    missing = []
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    written = [h["value"] for h in history if h["f"] in ("write", "cas") and h["type"] == "invoke" and h.get("value")]
    values = [v.encode() for v in written if v.startswith("init-")] + [v.encode() for v in written[-20:]]
    assert len(values) >= 20, written
    for node in sorted((out / "cluster").glob("node[0-9]*")):
        config = yaml.safe_load((node / "node.yaml").read_text())
        tls, auth = config.get("tls") or {}, config.get("auth") or {}
        encryption = config["state_storage"].get("encryption") or {}
        if tls.get("client_auth") != "require" or not auth.get("enabled") or not encryption.get("enabled"):
            missing.append(f"{node.name}: config tls={tls} auth={auth} encryption={encryption}")
        if "serving gRPC over TLS (client_auth require)" not in (node / "node.log").read_text(errors="replace"):
            missing.append(f"{node.name}: its log does not say it served TLS with client certificates required")
        host = config["cluster"]["advertise_grpc_address"].rpartition(":")[0]
        if tls.get("cert"):
            cert = x509.load_pem_x509_certificate(Path(tls["cert"]).read_bytes())
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            if host not in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}:
                missing.append(f"{node.name}: its certificate does not name its address {host}")
        for path in (f for f in (node / "data").rglob("*") if f.is_file()):
            data = path.read_bytes()
            missing += [f"{path}: holds {v!r} in plaintext" for v in values if v in data]
    return missing


@needs_netns
def test_the_short_scenario_passes_every_checker_on_a_secure_cluster(tmp_path: Path) -> None:
    """The CI scenario (same faults, seed and timing) with mTLS, access control and encryption at rest on:
    every client, the nemesis and the final reads use the admin's certificate; the checkers still pass."""
    out = tmp_path / "run"
    proc = chaos(
        "run",
        "--nodes",
        "3",
        "--duration",
        "40",
        "--faults",
        "kill,pause,partition",
        "--seed",
        "5",
        "--interval",
        "5",
        "--hold",
        "2.5",
        "--secure",
        "--net-prefix",
        "czx",
        "--subnet",
        "10.214.15",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert {v["name"]: v["status"] for v in verdicts} == {
        "linearizable": "pass",
        "no-lost-writes": "pass",
        "exactly-once": "pass",
        "convergence": "pass",
        "liveness": "pass",
        "audit": "pass",
    }
    meta = json.loads((out / "run.json").read_text())
    assert meta["secure"] is True and meta["netns"] is True
    assert "secure: true" in (out / "report.md").read_text()
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert len(faults) >= 4 and all(f["end_ns"] > f["start_ns"] and not f["error"] for f in faults), faults
    assert any(f["name"].startswith("partition-") for f in faults), f"no partition ran: {faults}"
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert {h["f"] for h in history} == {"read", "write", "cas", "checkpoint", "recover"}
    # Acknowledged, over TLS: nothing the checkers passed was vacuous (all calls refused would pass them too).
    ok = [h["f"] for h in history if h["type"] == "ok"]
    assert sum(f in ("write", "cas") for f in ok) > 50 and ok.count("read") > 50, sorted(set(ok))
    assert secure_cluster_evidence(out) == []
    assert leftovers("czx") == [] and processes_of(out) == []


def workers_of(out: Path) -> list[int]:
    """Processes whose environment points at this run's worker events (none may outlive the run)."""
    marker = f"CHAOS_EVENTS={out}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes():
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("chaos-wf") / "run"
    proc = chaos(
        "run",
        "--nodes",
        "3",
        "--duration",
        "35",
        "--workload",
        "workflows",
        "--faults",
        "kill,workers",
        "--seed",
        "1",
        "--interval",
        "5",
        "--hold",
        "2.5",
        "--net-prefix",
        "czf",
        "--subnet",
        "10.214.14",
        "--settle",
        "60",
        "--out",
        str(out),
    )
    return out, proc


def test_a_workflow_scenario_with_worker_faults_passes_every_checker(
    workflow_run: tuple[Path, subprocess.CompletedProcess],
) -> None:
    out, proc = workflow_run
    verdicts = {v["name"]: v for v in json.loads((out / "verdicts.json").read_text())}
    assert set(verdicts) == {
        "convergence",
        "audit",
        "wf-liveness",
        "wf-results-stable",
        "wf-no-reexecution",
        "wf-leases",
        "wf-step-order",
    }
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert any(f["name"].startswith("worker-") and not f["error"] for f in faults), faults
    assert any(f["name"].startswith("kill-") for f in faults), faults
    assert workers_of(out) == [] and processes_of(out) == [] and leftovers("czf") == []
    counts = verdicts["wf-liveness"]["details"]
    assert counts["workflows_started"] >= 50
    assert verdicts["wf-no-reexecution"]["details"]["steps_persisted"] >= 3 * counts["workflows_started"]
    assert verdicts["wf-leases"]["details"]["recoveries"] >= 1, "no lease expired: no recovery was exercised"
    kinds = {json.loads(line)["f"] for line in (out / "history.jsonl").read_text().splitlines()}
    assert kinds == {"start", "wf-read"}
    assert "## Workflows" in (out / "report.md").read_text()
    failing = {name for name, v in verdicts.items() if v["status"] != "pass"}
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert failing == set(), {name: verdicts[name]["violations"][:3] for name in failing}
    assert counts["workflows_completed"] == counts["workflows_started"] + counts["unknown_starts_that_exist"]


@pytest.mark.parametrize(
    ("secure", "prefix", "subnet"), [(False, "czu", "10.214.10"), (True, "czv", "10.214.16")], ids=["plain", "secure"]
)
def test_the_unsafe_read_mode_is_caught_as_stale_reads(tmp_path: Path, secure: bool, prefix: str, subnet: str) -> None:
    """Secure too: the stale reads come over mTLS with the admin's certificate, and the checker catches them."""
    faults = "partition-leader" if netns_available() else "pause-leader-long"
    proc = chaos(
        "run",
        *(["--secure"] if secure else []),
        "--nodes",
        "3",
        "--duration",
        "20",
        "--faults",
        faults,
        "--seed",
        "3",
        "--interval",
        "7",
        "--hold",
        "4",
        "--unsafe-reads",
        "--net-prefix",
        prefix,
        "--subnet",
        subnet,
        "--out",
        str(tmp_path / "unsafe"),
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    verdicts = {v["name"]: v for v in json.loads((tmp_path / "unsafe" / "verdicts.json").read_text())}
    assert verdicts["linearizable"]["status"] == "FAIL"
    assert any("read ->" in v and "cannot be linearized" in v for v in verdicts["linearizable"]["violations"])
    assert json.loads((tmp_path / "unsafe" / "run.json").read_text())["secure"] is secure
    if secure:
        assert secure_cluster_evidence(tmp_path / "unsafe") == []
    assert leftovers(prefix) == [] and processes_of(tmp_path / "unsafe") == []


class Output:
    """A child's output lines, read as they come (so a test can wait for one, with a deadline)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self.closed = True
            self._seen.notify_all()

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> tuple[int, re.Match] | None:
        """The first line from `start` on matching `pattern`: (its number, the match); None at EOF or timeout."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for n in range(start, len(self.lines)):
                    match = re.search(pattern, self.lines[n])
                    if match:
                        return n, match
                start = len(self.lines)
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    return None
                self._seen.wait(left)

    def text(self) -> str:
        with self._seen:
            return "".join(self.lines)[-4000:]


@needs_netns
def test_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chaos",
            "run",
            "--nodes",
            "3",
            "--duration",
            "120",
            "--faults",
            "kill-leader,partition",
            "--interval",
            "4",
            "--hold",
            "2",
            "--net-prefix",
            "czi",
            "--subnet",
            "10.214.11",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job: Ctrl-C goes to all of it
    )
    assert proc.stdout is not None
    output = Output(proc.stdout)
    try:
        # Mid-run: the faults chosen, the first one injected and healed (recorded), the second one injected.
        chosen = output.wait_for(r"faults: (.+)$", 120)
        assert chosen, f"the run never chose its faults:\n{output.text()}"
        names = "|".join(re.escape(name.strip()) for name in chosen[1][1].split(","))
        first = output.wait_for(rf"\] ({names}): ", 60, chosen[0] + 1)
        assert first, f"no fault was injected:\n{output.text()}"
        second = output.wait_for(rf"\] ({names}): ", 60, first[0] + 1)
        assert second, f"no second fault was injected:\n{output.text()}"
        assert proc.poll() is None, f"the run had already ended ({proc.returncode}):\n{output.text()}"
        # What the cleanup must remove exists now: the check below can see it.
        assert len(processes_of(out, but=proc.pid)) >= 2 and leftovers("czi") != []
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:  # a failed check above: still stop it (and its cleanup) before failing
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    # It stopped because of the signal (an unhandled KeyboardInterrupt exits by SIGINT), before its end ...
    assert proc.returncode == -signal.SIGINT, f"exit {proc.returncode}:\n{output.text()}"
    assert not (out / "run.json").exists(), "the run finished instead of stopping at the signal"
    # ... after writing what it had (the first fault, healed), and leaving no process or namespace behind.
    recorded = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert recorded and recorded[0]["name"] == first[1][1] and recorded[0]["end_ns"] > recorded[0]["start_ns"]
    assert (out / "history.jsonl").exists()
    assert processes_of(out) == [], "node processes left"
    assert leftovers("czi") == []


@needs_netns
def test_a_second_network_with_a_taken_prefix_is_refused() -> None:
    from chaos.netns import NetnsNetwork

    with NetnsNetwork(2, prefix="czd", subnet="10.214.12") as first:
        with pytest.raises(RuntimeError, match="another run uses prefix 'czd'"):
            NetnsNetwork(2, prefix="czd", subnet="10.214.13").create()
        assert first.namespace(0) in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert leftovers("czd") == []

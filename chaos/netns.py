"""Test hosts in Linux network namespaces, joined by veth pairs to one bridge, with partitions.

Each node gets namespace PREFIX<i> with address SUBNET.<i+1> on its eth0; the bridge PREFIXbr
holds SUBNET.254 so that the test process (in the root namespace) reaches every node directly.
A partition is a blackhole route inside a node's namespace: `cut(a, b)` stops a's packets to b
(one way); `cut_both(a, b)` both ways. Everything made here is removed by `destroy()`, which is
safe to call twice and after a failure. Traffic only ever goes to these addresses.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field


class NetnsUnavailable(RuntimeError):
    """Network namespaces need root and iproute2."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def netns_available() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        return _ip("netns", "list", check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class NetnsNetwork:
    size: int
    prefix: str = "cz"
    subnet: str = "10.213.0"
    created: list[str] = field(default_factory=list)
    cuts: set[tuple[int, int]] = field(default_factory=set)
    shaped: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not netns_available():
            raise NetnsUnavailable("network namespaces need root and the ip command")
        if len(self.prefix) > 6:
            raise ValueError("prefix must be at most 6 characters (interface names are short)")

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    def namespace(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(i)]

    def create(self) -> NetnsNetwork:
        existing = set(_ip("netns", "list", check=False).stdout.split())
        taken = sorted({self.namespace(i) for i in range(self.size)} & existing)
        if taken or _ip("link", "show", self.bridge, check=False).returncode == 0:
            # Never tear down what may be another live run's network: it would cross-wire the two.
            raise RuntimeError(
                f"{', '.join(taken) or self.bridge} already exist(s): another run uses prefix {self.prefix!r} "
                f"(choose another), or an interrupted one left them (remove: ip netns del NAME; ip link del "
                f"{self.bridge})"
            )
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self.created.append(f"link:{self.bridge}")
            _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i in range(self.size):
                ns, veth = self.namespace(i), f"{self.prefix}v{i}"
                _ip("netns", "add", ns)
                self.created.append(f"netns:{ns}")
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                self.created.append(f"link:{veth}")
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    # ---- faults --------------------------------------------------------------------------------

    def cut(self, src: int, dst: int) -> None:
        """Drop everything src sends to dst (one way)."""
        if (src, dst) not in self.cuts:
            _ip("-n", self.namespace(src), "route", "add", "blackhole", f"{self.address(dst)}/32")
            self.cuts.add((src, dst))

    def cut_both(self, a: int, b: int) -> None:
        self.cut(a, b)
        self.cut(b, a)

    def isolate(self, i: int) -> None:
        """Cut node i off from every other node (the test process still reaches it)."""
        for j in range(self.size):
            if j != i:
                self.cut_both(i, j)

    def partition(self, *groups: list[int]) -> None:
        """Only nodes within the same group can talk."""
        for gi, group in enumerate(groups):
            for other in groups[gi + 1 :]:
                for a in group:
                    for b in other:
                        self.cut_both(a, b)

    def heal(self) -> None:
        for src, dst in sorted(self.cuts):
            _ip("-n", self.namespace(src), "route", "del", "blackhole", f"{self.address(dst)}/32", check=False)
        self.cuts.clear()

    def netem(self, i: int, spec: list[str]) -> None:
        """Shape node i's outgoing traffic with netem (for example ["delay", "50ms"] or ["loss", "20%"])."""
        subprocess.run(
            [*self.exec_prefix(i), "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", *spec],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        )
        self.shaped.add(i)

    def clear_netem(self) -> None:
        for i in sorted(self.shaped):
            subprocess.run(
                [*self.exec_prefix(i), "tc", "qdisc", "del", "dev", "eth0", "root"], capture_output=True, timeout=10
            )
        self.shaped.clear()

    # ---- teardown ------------------------------------------------------------------------------

    def destroy(self) -> None:
        for i in range(self.size):
            _ip("netns", "del", self.namespace(i), check=False)
            _ip("link", "del", f"{self.prefix}v{i}", check=False)
        _ip("link", "del", self.bridge, check=False)
        self.created.clear()
        self.cuts.clear()

    def __enter__(self) -> NetnsNetwork:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def netem_available() -> bool:
    """Whether this kernel has the netem qdisc (latency and loss); checked in a scratch namespace."""
    if not netns_available():
        return False
    scratch = f"czq{os.getpid() % 10000}"
    try:
        _ip("netns", "add", scratch)
        result = subprocess.run(
            ["ip", "netns", "exec", scratch, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        _ip("netns", "del", scratch, check=False)

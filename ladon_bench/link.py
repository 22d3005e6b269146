"""An emulated robot-edge link on one Linux host: two network namespaces joined by a veth pair, shaped with ``tc``.

:class:`LinkTestbed` creates the namespaces ``<prefix>robot`` and ``<prefix>edge``, the veth pair between them
(10.213.<n>.1/30 on the robot, .2 on the edge), the multicast route that DDS discovery needs, and CPU cgroups
(cgroup v1 ``cpu``/``cpuacct``/``cpuset``, or the unified v2 hierarchy) that pin and limit the robot side.
:meth:`LinkTestbed.apply` switches the link between :class:`LinkSpec` settings while the processes keep running:

* rate: a ``tbf`` qdisc on both veth ends (the rate applies to each direction; each packet paced at the
  rate, see :func:`tbf_arguments`);
* loss: ``iptables -t raw -A PREROUTING -m statistic --mode random`` on both receiving ends, so single wire
  packets (IP fragments included) are lost, as on a lossy radio link;
* delay: ``netem`` when the kernel has it (it is checked once); otherwise a delay request is an error, and
  :attr:`LinkTestbed.netem` says so for the report.

Everything is removed by :meth:`LinkTestbed.close` (also on exceptions when used as a context manager): deleting a
namespace deletes its veth end, qdiscs and iptables rules; the cgroups are removed after their processes.
Needs root (CAP_NET_ADMIN and cgroup write access).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ladon.errors import LadonError

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000


class LinkSetupError(LadonError):
    """The emulated link cannot be set up here (not root, a tool or kernel feature missing, ...)."""


@dataclass(frozen=True)
class LinkSpec:
    """One link setting: rate in kbit/s (``None`` = unshaped), packet loss in [0, 1), one-way delay in ms."""

    rate_kbit: float | None = None
    loss: float = 0.0
    delay_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.rate_kbit is not None and not self.rate_kbit > 0:
            raise LinkSetupError(f"link rate must be > 0 kbit/s, got {self.rate_kbit}")
        if not 0.0 <= self.loss < 1.0:
            raise LinkSetupError(f"link loss must be in [0, 1), got {self.loss}")
        if self.delay_ms < 0:
            raise LinkSetupError(f"link delay must be >= 0 ms, got {self.delay_ms}")

    @property
    def name(self) -> str:
        rate = "unshaped" if self.rate_kbit is None else (
            f"{self.rate_kbit / 1000:g}Mbit" if self.rate_kbit >= 1000 else f"{self.rate_kbit:g}kbit")
        parts = [rate, f"loss{self.loss * 100:g}%"]
        if self.delay_ms:
            parts.append(f"delay{self.delay_ms:g}ms")
        return " ".join(parts)

    @property
    def rate_bits_per_s(self) -> float:
        return math.inf if self.rate_kbit is None else self.rate_kbit * 1000.0

    def to_dict(self) -> dict[str, float | None]:
        return {"rate_kbit": self.rate_kbit, "loss": self.loss, "delay_ms": self.delay_ms}


def parse_rate(text: str) -> float | None:
    """``'unshaped'``, ``'37.5kbit'``, ``'10Mbit'`` or a plain number of kbit/s -> kbit/s (``None`` = unshaped)."""
    t = text.strip().lower()
    if t in ("unshaped", "none", "inf", "0"):
        return None
    for suffix, factor in (("mbit", 1000.0), ("kbit", 1.0), ("m", 1000.0), ("k", 1.0)):
        if t.endswith(suffix):
            return float(t[: -len(suffix)]) * factor
    return float(t)


PEAK_RATE_FACTOR = 1.02
"""tbf's peak rate relative to its rate (the kernel needs peakrate > rate): see :func:`tbf_arguments`."""
LINK_MTU_BYTES = 1514
"""Largest frame on the veth (1500-byte IP MTU + Ethernet header): the peak bucket holds one."""


def tbf_arguments(rate_kbit: float) -> list[str]:
    """``tc`` arguments of the token bucket for ``rate_kbit``: a queue of 2 s of data (at least 256 KiB), so that
    DDS's 64 KB datagrams queue instead of being dropped at low rates, and a peak rate 2 % above the rate with a
    one-frame peak bucket, so that every packet leaves at (about) the link rate as on a real radio. Without the peak
    rate the bucket (10 ms of data, at least two frames: 3 KB) let a small frame's messages through at veth speed:
    at 37.5 kbit/s a 3 KB burst is 0.65 s of air time."""
    bytes_per_s = rate_kbit * 1000.0 / 8.0
    burst = max(2 * LINK_MTU_BYTES, int(bytes_per_s * 0.010))
    limit = max(256 * 1024, int(bytes_per_s * 2.0))
    return ["tbf", "rate", f"{rate_kbit:g}kbit", "burst", str(burst), "limit", str(limit),
            "peakrate", f"{rate_kbit * PEAK_RATE_FACTOR:g}kbit", "mtu", str(LINK_MTU_BYTES)]


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LinkSetupError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    return proc


def require_root() -> None:
    """Raise :class:`LinkSetupError` with a clear message unless running as root with ``ip`` and ``tc``."""
    if os.geteuid() != 0:
        raise LinkSetupError("the split benchmark creates network namespaces, qdiscs and cgroups: run it as root "
                           "(e.g. `sudo .venv/bin/ladon-bench-split ...`)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise LinkSetupError(f"`{tool}` not found: install iproute2 (Debian/Ubuntu: apt install iproute2)")


class CpuGroup:
    """A CPU cgroup (v1 ``cpu`` + ``cpuacct`` + ``cpuset`` controllers, or v2) with a core set and a quota."""

    def __init__(self, name: str, cpus: str, quota: float | None) -> None:
        self.name = name
        self.v1 = (CGROUP_ROOT / "cpuacct").is_dir() and (CGROUP_ROOT / "cpu").is_dir()
        self.paths: list[Path] = []
        try:
            if self.v1:
                for controller in ("cpu", "cpuacct", "cpuset"):
                    path = CGROUP_ROOT / controller / name
                    path.mkdir(exist_ok=True)
                    self.paths.append(path)
                cpuset = CGROUP_ROOT / "cpuset" / name
                (cpuset / "cpuset.mems").write_text((CGROUP_ROOT / "cpuset" / "cpuset.mems").read_text())
                (cpuset / "cpuset.cpus").write_text(cpus)
                (CGROUP_ROOT / "cpu" / name / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
                (CGROUP_ROOT / "cpu" / name / "cpu.cfs_quota_us").write_text(
                    "-1" if quota is None else str(int(quota * CFS_PERIOD_US)))
            else:
                root = CGROUP_ROOT
                controllers = (root / "cgroup.subtree_control").read_text()
                for c in ("cpu", "cpuset"):
                    if c not in controllers.split():
                        (root / "cgroup.subtree_control").write_text(f"+{c}")
                path = root / name
                path.mkdir(exist_ok=True)
                self.paths.append(path)
                (path / "cpuset.cpus").write_text(cpus)
                (path / "cpu.max").write_text(
                    "max" if quota is None else f"{int(quota * CFS_PERIOD_US)} {CFS_PERIOD_US}")
        except OSError as exc:
            self.remove()
            raise LinkSetupError(f"cannot set up cgroup {name!r} (cpus {cpus}, quota {quota}): {exc}") from None

    def add(self, pid: int) -> None:
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(pid))

    def cpu_seconds(self) -> float:
        """CPU time used by the group's processes so far (user + system), in seconds."""
        if self.v1:
            return int((CGROUP_ROOT / "cpuacct" / self.name / "cpuacct.usage").read_text()) / 1e9
        for line in (self.paths[0] / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        raise LinkSetupError(f"no usage_usec in {self.paths[0] / 'cpu.stat'}")

    def pids(self) -> list[int]:
        if not self.paths:
            return []
        try:
            return [int(p) for p in (self.paths[0] / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self) -> None:
        """Move leftover processes to the root group and delete the group (processes should be gone already)."""
        for path in self.paths:
            if not path.is_dir():
                continue
            try:
                for pid in (path / "cgroup.procs").read_text().split():
                    (path.parent / "cgroup.procs").write_text(pid)
            except OSError:
                pass
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
        self.paths = []


class LinkTestbed:
    """Robot and edge namespaces joined by a shaped veth link, with CPU groups; see the module docstring."""

    def __init__(self, prefix: str = "ladon-", subnet: int = 213, robot_cpus: str | None = None,
                 robot_quota: float | None = 0.5, edge_cpus: str | None = None) -> None:
        require_root()
        self.prefix = prefix
        self.robot_ns, self.edge_ns = f"{prefix}robot", f"{prefix}edge"
        self.robot_dev, self.edge_dev = "veth-robot", "veth-edge"
        self.robot_ip, self.edge_ip = f"10.{subnet}.0.1", f"10.{subnet}.0.2"
        n = len(os.sched_getaffinity(0))
        self.robot_cpus = robot_cpus if robot_cpus is not None else str(n - 1)
        self.edge_cpus = edge_cpus if edge_cpus is not None else ("0" if n == 1 else f"0-{n - 2}" if n > 2 else "0")
        self.robot_quota = robot_quota
        self.netem = False
        self.current: LinkSpec | None = None
        self.robot_group: CpuGroup | None = None
        self.edge_group: CpuGroup | None = None
        self._created: list[str] = []
        try:
            self._create()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------------------ setup
    def _create(self) -> None:
        for ns in (self.robot_ns, self.edge_ns):
            if ns in _run(["ip", "netns", "list"]).stdout.split():
                _run(["ip", "netns", "del", ns])  # left over from a killed run
            _run(["ip", "netns", "add", ns])
            self._created.append(ns)
        _run(["ip", "link", "add", self.robot_dev, "netns", self.robot_ns, "type", "veth",
              "peer", "name", self.edge_dev, "netns", self.edge_ns])
        sides = ((self.robot_ns, self.robot_dev, self.robot_ip), (self.edge_ns, self.edge_dev, self.edge_ip))
        for ns, dev, ip in sides:
            _run(["ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "link", "set", dev, "up"])
            _run(["ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", dev])  # DDS discovery multicast
        probe = _run(["tc", "-n", self.robot_ns, "qdisc", "add", "dev", self.robot_dev, "root", "netem",
                      "delay", "0ms"], check=False)
        self.netem = probe.returncode == 0
        if self.netem:
            _run(["tc", "-n", self.robot_ns, "qdisc", "del", "dev", self.robot_dev, "root"])
        tag = self.prefix.strip("-") or "ladon"
        self.robot_group = CpuGroup(f"{tag}-bench-robot", self.robot_cpus, self.robot_quota)
        self.edge_group = CpuGroup(f"{tag}-bench-edge", self.edge_cpus, None)

    def netns_command(self, side: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the ``robot`` or ``edge`` namespace."""
        return ["ip", "netns", "exec", self.robot_ns if side == "robot" else self.edge_ns, *argv]

    # ------------------------------------------------------------------------------------------------ link
    def apply(self, link: LinkSpec) -> None:
        """Switch both directions of the link to ``link`` (rate, loss, delay)."""
        if link.delay_ms and not self.netem:
            raise LinkSetupError("this kernel has no netem qdisc: a propagation delay cannot be emulated")
        if link.loss and shutil.which("iptables") is None:
            raise LinkSetupError("packet loss needs iptables (Debian/Ubuntu: apt install iptables)")
        for ns, dev in ((self.robot_ns, self.robot_dev), (self.edge_ns, self.edge_dev)):
            _run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False)
            if link.delay_ms and link.rate_kbit is not None:
                _run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem",
                      "delay", f"{link.delay_ms:g}ms", "rate", f"{link.rate_kbit:g}kbit"])
            elif link.delay_ms:
                _run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "netem", "delay", f"{link.delay_ms:g}ms"])
            elif link.rate_kbit is not None:
                _run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", *tbf_arguments(link.rate_kbit)])
            if shutil.which("iptables") is not None:
                _run(["ip", "netns", "exec", ns, "iptables", "-t", "raw", "-F", "PREROUTING"], check=False)
            if link.loss:
                _run(["ip", "netns", "exec", ns, "iptables", "-t", "raw", "-A", "PREROUTING", "-i", dev,
                      "-m", "statistic", "--mode", "random", "--probability", f"{link.loss:.6f}", "-j", "DROP"])
        self.current = link

    def counters(self) -> dict[str, int]:
        """Bytes and packets the robot's veth end sent (uplink) and received (downlink), and the packets the
        emulated loss dropped (both receivers)."""
        out = json.loads(_run(["ip", "-n", self.robot_ns, "-s", "-j", "link", "show", self.robot_dev]).stdout)
        stats = out[0]["stats64"]
        return {"uplink_bytes": int(stats["tx"]["bytes"]), "uplink_packets": int(stats["tx"]["packets"]),
                "downlink_bytes": int(stats["rx"]["bytes"]), "downlink_packets": int(stats["rx"]["packets"]),
                "lost_packets": sum(self._loss_drops(ns) for ns in (self.robot_ns, self.edge_ns))}

    @staticmethod
    def _loss_drops(ns: str) -> int:
        if shutil.which("iptables") is None:
            return 0
        proc = _run(["ip", "netns", "exec", ns, "iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"],
                    check=False)
        return sum(int(line.split()[0]) for line in proc.stdout.splitlines()
                   if "statistic" in line and line.split()[0].isdigit())

    # ------------------------------------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Delete the namespaces (their veth ends, qdiscs and iptables rules go with them) and the cgroups."""
        for ns in reversed(self._created):
            _run(["ip", "netns", "del", ns], check=False)
        self._created = []
        for group in (self.robot_group, self.edge_group):
            if group is not None:
                group.remove()

    def __enter__(self) -> LinkTestbed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""``python -m ladon_bench.large_sample_probe``: reliable DDS samples of a given size over a shaped, lossy link, with
Fast DDS XML profiles that differ in one setting, measured through real DDS (:class:`ladon_bench.link.LinkTestbed`).

Questions it answers: does a sample larger than one IP packet survive IP loss with the shipped ``reliable`` profile?
Fast DDS sends a sample up to 64 KB as one UDP datagram; the IP layer splits it into ~1.5 KB fragments, and losing
any one of them loses the whole datagram, which the reader then NACKs and the writer resends whole. At 5 % loss a
57 KB datagram (40 fragments) arrives intact 13 % of the time. With the participant or writer property
``fastdds.max_message_size`` = 1400 (``config/fastdds_reliable.xml``), Fast DDS itself cuts the sample into RTPS
fragments that each fit one IP packet, which the reader collects across retransmissions. And: which heartbeat
period keeps a reliable link usable at LoRa-class rates (``--xml fastdds_reliable.xml,fastdds_reliable_lowrate.xml``)?

A publisher in the robot namespace sends one ``std_msgs/String`` of ``--sizes`` bytes at a time to a subscriber in
the edge namespace (reliable, keep-last 5, set in code), waits for it (``--deadline-s``), and counts the link's
bytes and packets. Per profile and size: delivered, p50/p99 latency, wire bytes and packets per sample (both
directions, incl. repairs, heartbeats, ACKs). One unmeasured sample first waits for discovery, then
``--settle-s``. Writes ``--out``/large_samples.{json,md}. Needs root.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from ladon.errors import LadonError
from ladon_bench.link import LinkSpec, LinkTestbed, parse_rate
from ladon_bench.repair_probe import readline, start_pair, stop
from ladon_bench.runner import FASTDDS_NS, udp_only_profiles

REPO = Path(__file__).resolve().parent.parent
MAX_MESSAGE_SIZE = "fastdds.max_message_size"


def without_message_size_cap(source: Path | None, dest: Path) -> Path:
    """``source`` (a Fast DDS XML) without any ``fastdds.max_message_size`` property, written to ``dest``."""
    if source is None:
        raise LadonError(f"no endpoint profiles to remove {MAX_MESSAGE_SIZE} from")
    ET.register_namespace("", FASTDDS_NS)
    tree = ET.parse(source)
    ns = f"{{{FASTDDS_NS}}}"
    removed = 0
    for properties in tree.getroot().iter(f"{ns}properties"):
        for prop in list(properties.findall(f"{ns}property")):
            if (prop.findtext(f"{ns}name") or "").strip() == MAX_MESSAGE_SIZE:
                properties.remove(prop)
                removed += 1
    if not removed:
        raise LadonError(f"{source}: no {MAX_MESSAGE_SIZE} property to remove")
    tree.write(dest, encoding="UTF-8", xml_declaration=True)
    return dest


def measure(tb: LinkTestbed, domain: int, xml: Path | None, sizes: list[int], samples: int,
            deadline_s: float, settle_s: float = 0.0) -> dict[str, Any]:
    """Per size: ``samples`` samples sent one at a time; delivery latencies and wire cost."""
    pub, sub = start_pair(tb, domain, xml)
    out: dict[str, Any] = {}
    try:
        readline(pub, 240)  # discovery: slow on LoRa-class links
        pub.stdin.write("warmup 0\n")  # unmeasured: waits for the discovery traffic queued on the link
        pub.stdin.flush()
        readline(pub, 60)
        readline(sub, 240)
        time.sleep(settle_s)  # at LoRa-class rates the discovery traffic keeps the link busy for a while
        for size in sizes:
            latencies: list[float] = []
            late = 0
            before = tb.counters()
            for i in range(samples):
                name = f"s{size}_{i}"
                pub.stdin.write(f"{name} {size}\n")
                pub.stdin.flush()
                sent = readline(pub, 10)["t"]
                while True:  # skip arrivals of earlier samples that came after their deadline
                    try:
                        got = readline(sub, max(0.05, sent + deadline_s - time.monotonic()))
                    except LadonError:
                        late += 1
                        break
                    if got["data"] == name:
                        latencies.append(got["t"] - sent)
                        break
                time.sleep(0.05)
            after = tb.counters()
            wire = {k: (after[k] - before[k]) / samples for k in after}
            lat = np.array(latencies) * 1e3
            out[str(size)] = {
                "samples": samples, "delivered": len(latencies), "not_delivered_by_deadline": late,
                "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
                "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
                "max_ms": float(lat.max()) if len(lat) else None,
                "wire_bytes_per_sample": wire["uplink_bytes"] + wire["downlink_bytes"],
                "wire_packets_per_sample": wire["uplink_packets"] + wire["downlink_packets"],
                "packets_lost_per_sample": wire["lost_packets"]}
    finally:
        stop(pub, sub)
    return out


def markdown(doc: dict[str, Any]) -> str:
    """One table row per profile, link and sample size."""
    lines = ["# Reliable samples larger than one IP packet over a lossy link",
             "", "`python -m ladon_bench.large_sample_probe " + " ".join(doc["command"].split()[3:]) + "`",
             "", f"{doc['samples']} samples per cell, one in flight at a time; deadline {doc['deadline_s']:g} s; "
             f"measured from {doc.get('settle_s', 0):g} s after discovery; "
             "std_msgs/String of the given size, reliable keep-last 5 (QoS from code), UDPv4 only; rates shape both "
             "directions (tbf), loss drops single IP packets at each receiver (iptables). Wire = both directions "
             "on the robot's veth end, incl. repairs, heartbeats and ACKs.", "",
             "| profile | link | sample | delivered | p50 ms | p99 ms | max ms | wire KB/sample | IP packets/sample |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "–" if v is None else f"{v:.0f}"  # noqa: E731
    for run in doc["runs"]:
        for size, r in run["sizes"].items():
            lines.append(f"| {run['profile']} | {run['link']} | {int(size) / 1e3:g} KB | {r['delivered']}/"
                         f"{r['samples']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | "
                         f"{r['wire_bytes_per_sample'] / 1e3:.1f} | {r['wire_packets_per_sample']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ladon_bench.large_sample_probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--xml", default="fastdds_reliable.xml", help="comma-separated Fast DDS XML files to compare (a "
                   "bare name is looked up in config/)")
    p.add_argument("--uncapped", action="store_true", help=f"also run the first XML without its {MAX_MESSAGE_SIZE}")
    p.add_argument("--sizes", default="1200,20000,57000", help="comma-separated sample sizes (bytes)")
    p.add_argument("--rates", default="10Mbit", help="comma-separated link rates (unshaped, NNkbit, NNMbit)")
    p.add_argument("--losses", default="0.05", help="comma-separated IP packet loss probabilities")
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--deadline-s", type=float, default=5.0)
    p.add_argument("--settle-s", type=float, default=0.0, help="seconds to wait after discovery before measuring "
                   "(discovery traffic takes a minute to drain at 37.5 kbit/s)")
    p.add_argument("--domain", type=int, default=216, help="ROS_DOMAIN_ID (0..232; the namespaces isolate it)")
    p.add_argument("--prefix", default="lsp-", help="name prefix of the namespaces and cgroups")
    p.add_argument("--subnet", type=int, default=216)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "large_samples"))
    args = p.parse_args(argv)
    from ladon_ros.launcher import config_dir

    sources = [Path(x) if "/" in x else config_dir() / x for x in args.xml.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(f"/tmp/{args.prefix}large_samples")
    tmp.mkdir(parents=True, exist_ok=True)
    profiles: dict[str, Path | None] = {
        source.name: udp_only_profiles(source, tmp / f"{i}_{source.name}") for i, source in enumerate(sources)}
    if args.uncapped:
        profiles[f"{sources[0].name} without {MAX_MESSAGE_SIZE}"] = without_message_size_cap(
            profiles[sources[0].name], tmp / "uncapped.xml")
    doc: dict[str, Any] = {"tool": "python -m ladon_bench.large_sample_probe",
                           "command": " ".join(["python -m ladon_bench.large_sample_probe", *(argv or sys.argv[1:])]),
                           "xml": [str(s.relative_to(REPO) if s.is_relative_to(REPO) else s) for s in sources],
                           "samples": args.samples, "deadline_s": args.deadline_s, "settle_s": args.settle_s,
                           "runs": []}
    with LinkTestbed(prefix=args.prefix, subnet=args.subnet, robot_quota=None) as tb:
        for rate in args.rates.split(","):
            for loss in (float(x) for x in args.losses.split(",")):
                link = LinkSpec(rate_kbit=parse_rate(rate), loss=loss)
                for name, xml in profiles.items():
                    tb.apply(link)  # a fresh qdisc: nothing queued by the previous profile's run
                    sizes_out = measure(tb, args.domain, xml, sizes, args.samples, args.deadline_s,
                                         args.settle_s)
                    doc["runs"].append({"profile": name, "link": link.name, "sizes": sizes_out})
                    print(json.dumps(doc["runs"][-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "large_samples.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "large_samples.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

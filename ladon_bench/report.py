"""Statistics, the robot energy model, and the split benchmark's outputs (JSON, Markdown, PNG plots)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladon_bench.scenario416 import scenario_table


@dataclass(frozen=True)
class EnergyModel:
    """Robot energy per frame = CPU-seconds x ``cpu_power_w`` + uplink airtime x ``radio_power_w``.

    The CPU term charges the device's active power for every second of CPU time its processes used (measured by
    the kernel, idle time excluded). The radio term charges the transmitter for the time the uplink bytes occupy
    the link (bytes x 8 / rate; zero on an unshaped link). The defaults, 5 W and 1 W, are a Jetson Nano in its
    5 W mode and a Wi-Fi transmitter; set both for your device.
    """

    cpu_power_w: float = 5.0
    radio_power_w: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """The parameters and the formula, for the report."""
        return {**asdict(self), "formula": f"E = robot CPU-s × {self.cpu_power_w:g} W + uplink airtime × "
                                           f"{self.radio_power_w:g} W"}

    def energy_j(self, cpu_s: float, uplink_bytes: float, rate_bits_per_s: float) -> float:
        airtime = 0.0 if math.isinf(rate_bits_per_s) else uplink_bytes * 8.0 / rate_bits_per_s
        return cpu_s * self.cpu_power_w + airtime * self.radio_power_w


def latency_summary(latencies: Sequence[float | None], outcomes: Sequence[str] | None = None) -> dict[str, Any]:
    """Delivered/dropped counts and p50/p95/p99/mean of the delivered frames' latencies (seconds).

    ``outcomes`` (per frame: ``delivered``, ``late``, ``lost``) splits the dropped frames into ``late`` (complete
    only after the deadline) and ``lost`` (never complete); without it every dropped frame counts as lost.
    """
    got = np.array([x for x in latencies if x is not None], dtype=np.float64)
    dropped = len(latencies) - int(got.size)
    late = sum(1 for o in outcomes or () if o == "late")
    out: dict[str, Any] = {"frames": len(latencies), "delivered": int(got.size), "dropped": dropped,
                           "late": late, "lost": dropped - late}
    for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        out[name] = float(np.percentile(got, q)) if got.size else None
    out["mean"] = float(got.mean()) if got.size else None
    return out


DOWNLINKS = {"vision": "vision (Classification + Detection2DArray + PNG mask: three messages per frame)",
             "compact": "compact (one ladon_msgs/FrameResults per frame on ladon/results)"}
"""``ladon-bench-split --downlink``: how the results come back, as the Markdown header names it (runs recorded
before the option were all ``vision``)."""


def wire_time_s(run: dict[str, Any]) -> float | None:
    """Air time of a frame's bytes (uplink + downlink, as counted on the veth) at the link's rate: with one frame in
    flight, a lower bound on the latency over a real link of that rate. None on an unshaped link."""
    rate_kbit = run.get("link", {}).get("rate_kbit")
    wire = run.get("wire_bytes_per_frame")
    if not rate_kbit or not wire:
        return None
    return (wire["uplink"] + wire["downlink"]) * 8.0 / (rate_kbit * 1000.0)


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def markdown(document: dict[str, Any]) -> str:
    """The results as Markdown: settings, one table row per configuration and link, and the headline."""
    s = document["settings"]
    m = document["machine"]
    lines = [
        "# Split-computing benchmark (`ladon-bench-split`)",
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores), Linux {m['kernel']}, torch {m['torch']}. "
        f"Robot: CPU(s) {s['robot_cpus']}, quota {s['robot_quota']} of a core; edge: CPU(s) {s['edge_cpus']}.",
        f"Frames: {s['images']} ({s['frame_size']}), {s['frames']} per link after {s['warmup']} warm-up. "
        f"Delay: {s['delay_note']}.",
        f"Energy model: {document['energy_model']['formula']}.",
        f"Link profile: {s.get('link_profile', 'reliable')} (Fast DDS XML: {s.get('fastdds_xml', 'none')}); "
        f"per-frame deadline: {s.get('deadline', '–')}.",
        f"Downlink: {DOWNLINKS.get(s.get('downlink', 'vision'), s.get('downlink'))}.",
        "",
        "| configuration | link | delivered | late | lost | server counted | p50 ms | p95 ms | p99 ms | wire ms | "
        "KB/frame up | KB/frame down | packets lost | robot CPU ms/frame | robot mJ/frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in document["runs"]:
        if r.get("skipped"):
            lines.append(f"| {r['config']} | {r['link']['name']} | skipped: {r['skipped']} | | | | | | | | | | | | |")
            continue
        lat, w = r["latency_s"], r["wire_bytes_per_frame"]
        server = ", ".join(f"{k} {v}" for k, v in r.get("server_counters", {}).items()) or "–"
        lines.append(
            f"| {r['config']} | {r['link']['name']} | {lat['delivered']}/{lat['frames']} | {lat.get('late', 0)} | "
            f"{lat.get('lost', lat['dropped'])} | {server} | "
            f"{_fmt(lat['p50'], 1e3)} | {_fmt(lat['p95'], 1e3)} | {_fmt(lat['p99'], 1e3)} | "
            f"{_fmt(wire_time_s(r), 1e3, 0)} | {w['uplink'] / 1024:.2f} | {w['downlink'] / 1024:.2f} | "
            f"{r.get('lost_packets', 0)} | "
            f"{r['robot_cpu_s_per_frame'] * 1e3:.1f} | {r['robot_energy_j_per_frame'] * 1e3:.1f} |")
    if document.get("headline"):
        lines += ["", "## Per link: the winner, and Ladon, against local computing", "",
                  "| link | fastest (p50) | p50 ms | its latency / energy vs local | lowest robot energy | "
                  "fastest Ladon | p50 ms | Ladon latency / energy vs local |",
                  "|---|---|---|---|---|---|---|---|"]
        for h in document["headline"]:
            ladon = "– | – | –"
            if "ladon" in h:
                ladon = (f"{h['ladon']} | {_fmt(h['ladon_p50_s'], 1e3)} | "
                         f"{h['ladon_latency_reduction_vs_local_pct']:+.1f} % / "
                         f"{h['ladon_energy_reduction_vs_local_pct']:+.1f} %")
            lines.append(f"| {h['link']} | {h['fastest']} | {_fmt(h['fastest_p50_s'], 1e3)} | "
                         f"{h['latency_reduction_vs_local_pct']:+.1f} % / "
                         f"{h['energy_reduction_vs_local_pct']:+.1f} % | {h['lowest_energy']} | {ladon} |")
        lines += ["", "Reductions are (local − configuration) / local; negative means slower or costlier than local."]
    lines += scenario_table(document["runs"])
    lines += ["", "Notes:", *[f"- {n}" for n in document.get("notes", [])], ""]
    return "\n".join(lines)


def headline(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per link: the configuration with the lowest p50 latency and its reduction vs local computing (%)."""
    local = next((r for r in runs if r["config"] == "local" and not r.get("skipped")
                  and r["latency_s"]["p50"] is not None), None)
    if local is None:
        return []
    out = []
    links = []
    for r in runs:
        if r["config"] != "local" and r["link"]["name"] not in links:
            links.append(r["link"]["name"])
    for link in links:
        candidates = [r for r in runs if r["link"]["name"] == link and r["config"] != "local"
                      and not r.get("skipped") and r["latency_s"]["p50"] is not None
                      and r["latency_s"]["dropped"] == 0]
        if not candidates:
            continue
        best = min(candidates, key=lambda r: r["latency_s"]["p50"])
        frugal = min(candidates, key=lambda r: r["robot_energy_j_per_frame"])
        row = {"link": link, "fastest": best["config"], "fastest_p50_s": best["latency_s"]["p50"],
               **_versus(best, local, ""), "lowest_energy": frugal["config"]}
        ladon = [r for r in candidates if r["kind"] == "ladon"]
        if ladon:
            fastest_ladon = min(ladon, key=lambda r: r["latency_s"]["p50"])
            row.update({"ladon": fastest_ladon["config"], "ladon_p50_s": fastest_ladon["latency_s"]["p50"],
                        **_versus(fastest_ladon, local, "ladon_")})
        out.append(row)
    return out


def _versus(run: dict[str, Any], local: dict[str, Any], prefix: str) -> dict[str, float]:
    """Latency and energy reduction of ``run`` against local computing, in % (negative = worse than local)."""
    return {f"{prefix}latency_reduction_vs_local_pct": 100.0 * (1 - run["latency_s"]["p50"]
                                                                 / local["latency_s"]["p50"]),
            f"{prefix}energy_reduction_vs_local_pct": 100.0 * (1 - run["robot_energy_j_per_frame"]
                                                                / local["robot_energy_j_per_frame"])}


UNSHAPED_X = 1e6
"""Where an unshaped link sits on the plots' data-rate axis (kbit/s), labelled 'unshaped'."""


def _link_x(link: dict[str, Any]) -> float:
    return UNSHAPED_X if link["rate_kbit"] is None else link["rate_kbit"]


def _rate_label(x: float) -> str:
    if x >= UNSHAPED_X:
        return "unshaped"
    return f"{x / 1000:g} Mbit/s" if x >= 1000 else f"{x:g} kbit/s"


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plots(document: dict[str, Any], out_dir: Path) -> list[Path]:
    """Latency vs data rate (loss 0 % and 1 %), robot energy per configuration, and bytes per frame."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in document["runs"] if not r.get("skipped") and r["latency_s"]["p50"] is not None]
    configs = list(dict.fromkeys(r["config"] for r in runs))
    colors = {c: plt.cm.tab10(i % 10) for i, c in enumerate(configs)}
    on_robot = {r["config"] for r in runs if r["link"]["name"] == "none (on the robot)"}  # local computing
    paths = []

    losses = sorted({r["link"]["loss"] for r in runs if r["config"] not in on_robot})
    fig, axes = plt.subplots(1, max(1, len(losses)), figsize=(6.5 * max(1, len(losses)), 4.5), squeeze=False)
    for ax, loss in zip(axes[0], losses or [0.0]):
        for c in configs:
            rs = sorted((r for r in runs if r["config"] == c and r["link"]["loss"] == loss),
                        key=lambda r: _link_x(r["link"]))
            if c in on_robot:
                local = [r for r in runs if r["config"] == c]
                if local:
                    ax.axhline(local[0]["latency_s"]["p50"] * 1e3, color=colors[c], ls="--", label=f"{c} (no link)")
                continue
            if not rs:
                continue
            x = [_link_x(r["link"]) for r in rs]
            p50 = [r["latency_s"]["p50"] * 1e3 for r in rs]
            p95 = [r["latency_s"]["p95"] * 1e3 for r in rs]
            ax.plot(x, p50, "o-", color=colors[c], label=c)
            ax.fill_between(x, p50, p95, color=colors[c], alpha=0.15)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted({_link_x(r["link"]) for r in runs if r["config"] not in on_robot})
        ax.set_xticks(ticks, [_rate_label(t) for t in ticks], rotation=30, fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("link data rate (both directions)")
        ax.set_ylabel("end-to-end latency per frame, ms (p50; band to p95)")
        ax.set_title(f"packet loss {loss * 100:g} %")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    paths.append(_save(fig, out_dir / "latency_vs_rate.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    energy_loss = min(losses) if losses else 0.0  # the lossless links when measured
    rates = sorted({_link_x(r["link"]) for r in runs if r["config"] not in on_robot
                    and r["link"]["loss"] == energy_loss})
    width = 0.8 / max(1, len(rates))
    for i, rate in enumerate(rates or [UNSHAPED_X]):
        ys = []
        for c in configs:
            match = [r for r in runs if r["config"] == c and (c in on_robot or (_link_x(r["link"]) == rate
                                                                                and r["link"]["loss"] == energy_loss))]
            ys.append(match[0]["robot_energy_j_per_frame"] * 1e3 if match else np.nan)
        ax.bar(np.arange(len(configs)) + i * width, ys, width, label=_rate_label(rate) if rates else None)
    ax.set_xticks(np.arange(len(configs)) + 0.4 - width / 2, configs, rotation=20, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("robot energy per frame, mJ")
    ax.set_title(f"Robot energy at packet loss {energy_loss * 100:g} % "
                 f"({document['energy_model']['formula']})", fontsize=8)
    if rates:
        ax.legend(fontsize=7)
    paths.append(_save(fig, out_dir / "energy.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    # per configuration: the fastest lossless link measured (unshaped when it was)
    unshaped = [max((r for r in runs if r["config"] == c and r["link"]["loss"] == 0),
                    key=lambda r: _link_x(r["link"]), default=None) for c in configs]
    up = [r["wire_bytes_per_frame"]["uplink"] / 1024 if r else np.nan for r in unshaped]
    down = [r["wire_bytes_per_frame"]["downlink"] / 1024 if r else np.nan for r in unshaped]
    x = np.arange(len(configs))
    ax.bar(x - 0.2, up, 0.4, label="uplink (robot → edge)")
    ax.bar(x + 0.2, down, 0.4, label="downlink (results)")
    ax.set_xticks(x, configs, rotation=20, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("KB on the wire per frame (veth counters)")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "bytes_per_frame.png"))
    return paths


def write_report(document: dict[str, Any], out_dir: str | os.PathLike[str], make_plots: bool = True) -> list[Path]:
    """Write ``split_bench.json``, ``split_bench.md`` and the plots into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    document = {**document, "headline": headline(document["runs"])}
    paths = [out / "split_bench.json", out / "split_bench.md"]
    paths[0].write_text(json.dumps(document, indent=2) + "\n")
    paths[1].write_text(markdown(document))
    if make_plots:
        paths += plots(document, out)
    return paths


def profile_comparison(documents: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Compare ``ladon-bench-split`` results of several link profiles (name -> split_bench.json document): per
    configuration, link rate and loss, each profile's delivered/late/lost frames and p50/p99, and whether its p99 is
    at most twice its own p50 on the same link without loss with no frame delivered late (the tail target of
    issue #10; ``None`` for the lossless reference cells). Returns the rows and a Markdown table."""
    rows: list[dict[str, Any]] = []
    for profile, doc in documents.items():
        runs = [r for r in doc["runs"] if not r.get("skipped")]
        base = {(r["config"], r["link"]["rate_kbit"]): r["latency_s"]["p50"] for r in runs if r["link"]["loss"] == 0}
        for r in runs:
            lat = r["latency_s"]
            ref = base.get((r["config"], r["link"]["rate_kbit"]))
            ok = None if r["link"]["loss"] == 0 else (  # the lossless cell is the reference
                lat["p99"] is not None and ref is not None and lat["p99"] <= 2 * ref and lat.get("late", 0) == 0)
            rows.append({"profile": profile, "config": r["config"], "rate_kbit": r["link"]["rate_kbit"],
                         "loss": r["link"]["loss"], "frames": lat["frames"], "delivered": lat["delivered"],
                         "late": lat.get("late", 0), "lost": lat.get("lost", lat["dropped"]), "p50": lat["p50"],
                         "p99": lat["p99"], "lossless_p50": ref, "target_met": ok,
                         "server": r.get("server_counters", {})})
    rows.sort(key=lambda x: (x["config"], -(x["rate_kbit"] or math.inf), x["loss"], x["profile"]))
    lines = ["| configuration | link | loss | profile | delivered | late | lost | p50 ms | p99 ms | "
             "p99 ≤ 2 × lossless p50 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        rate = "unshaped" if x["rate_kbit"] is None else f"{x['rate_kbit'] / 1000:g} Mbit/s"
        verdict = "reference" if x["target_met"] is None else "yes" if x["target_met"] else "**no**"
        if x["late"]:
            verdict += f" ({x['late']} late)"
        lines.append(f"| {x['config']} | {rate} | {x['loss'] * 100:g} % | {x['profile']} | "
                     f"{x['delivered']}/{x['frames']} | {x['late']} | {x['lost']} | {_fmt(x['p50'], 1e3, 0)} | "
                     f"{_fmt(x['p99'], 1e3, 0)} | {verdict} (2 × {_fmt(x['lossless_p50'], 1e3, 0)}) |")
    return rows, "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ladon_bench.report compare OUT NAME=DIR ...``: the profile comparison of several
    ``ladon-bench-split`` output folders, written to OUT.md and OUT.json."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ladon_bench.report")
    sub = parser.add_subparsers(dest="cmd", required=True)
    compare = sub.add_parser("compare", help="compare link profiles (see profile_comparison)")
    compare.add_argument("out", help="output path without suffix (.md and .json are written)")
    compare.add_argument("runs", nargs="+", help="NAME=DIR: a profile name and its bench-split output folder")
    args = parser.parse_args(argv)
    documents = {}
    for item in args.runs:
        name, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"expected NAME=DIR, got {item!r}")
        documents[name] = json.loads((Path(folder) / "split_bench.json").read_text())
    rows, table = profile_comparison(documents)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.md").write_text(table)  # not with_suffix: 'beta1.28' is no suffix
    Path(f"{out}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

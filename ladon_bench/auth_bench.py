"""``python -m ladon_bench.auth_bench``: what application-level authentication costs per packet (bytes and time).

Times ``Signer.sign`` (robot), ``Verifier.verify`` on wire bytes (server, parse + HMAC + constant-time compare) and,
for reference, ``Packet.from_bytes`` alone and ``to_bytes``, on a demo-model packet (~1 KB) and on packets with
the payload sizes of an untrained and a trained ResNet-50 Ladon (random bytes of that size: HMAC cost depends
only on length). Writes ``auth_bench.json`` and ``auth_bench.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _median_us(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(min(50, repeats)):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def run(args: argparse.Namespace) -> int:
    """Measure, print and write the table."""
    import ladon
    from ladon._cli_common import output_dir, safe_output_path, write_output
    from ladon.auth import Signer, Verifier
    from ladon.image_io import list_images, read_image
    from ladon.packet import Packet

    out = output_dir(args.out)
    for name in ("auth_bench.json", "auth_bench.md"):
        safe_output_path(out, name, args.force)
    model_path = REPO / "models" / "demo.pt"
    encoder = ladon.load_encoder(model_path) if model_path.exists() else ladon.build_model(
        "resnet_tiny", num_bottleneck_channels=8, seed=0).encoder
    (demo,) = encoder.encode([read_image(list_images(REPO / "ladon" / "assets" / "shapes")[0])])
    cases = {f"demo model packet ({len(demo.data):,} B payload)": demo}
    big_shape = (24, 103, 103)  # ResNet-50 Ladon at 416 px
    for label, size in (("trained ResNet-50 Ladon, ~20 KB payload", 20_000),
                        ("untrained ResNet-50 Ladon, 171,788 B payload", 171_788)):
        cases[label] = replace(demo, latent_shape=big_shape, data=os.urandom(size))
    key = os.urandom(32)
    signer, verifier = Signer("robot1", key), Verifier({"robot1": key})
    rows = []
    for label, packet in cases.items():
        plain, signed = packet.to_bytes(), signer.sign_bytes(packet)
        parsed = Packet.from_bytes(signed)
        rows.append({
            "packet": label, "bytes_plain": len(plain), "bytes_signed": len(signed),
            "overhead_bytes": len(signed) - len(plain),
            "to_bytes_us": round(_median_us(packet.to_bytes, args.repeats), 2),
            "from_bytes_us": round(_median_us(lambda b=plain: Packet.from_bytes(b), args.repeats), 2),
            "sign_us": round(_median_us(lambda p=packet: signer.sign(p), args.repeats), 2),
            "verify_bytes_us": round(_median_us(lambda b=signed: verifier.verify(b), args.repeats), 2),
            "verify_packet_us": round(_median_us(lambda p=parsed: verifier.verify(p),
                                                 args.repeats), 2),
        })
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
                         f"{platform.python_version()}", "repeats": args.repeats, "key_id": "robot1",
              "rows": rows}
    lines = ["# Packet authentication cost (HMAC-SHA256)", "",
             f"{report['machine']}; medians of {args.repeats} runs, microseconds.", "",
             "| packet | bytes | + auth bytes | to_bytes | from_bytes | sign (robot) | verify bytes (server) | "
             "verify parsed packet |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['packet']} | {r['bytes_plain']:,} | {r['overhead_bytes']} | {r['to_bytes_us']:.1f} | "
                     f"{r['from_bytes_us']:.1f} | {r['sign_us']:.1f} | {r['verify_bytes_us']:.1f} | "
                     f"{r['verify_packet_us']:.1f} |")
    lines += ["", "`verify bytes` parses the header (caps, CRC) and checks the tag; `verify parsed packet` is what "
              "the server node does after `msg_to_packet` (re-serialises, then HMAC)."]
    md = "\n".join(lines) + "\n"
    print(md)
    write_output(out, "auth_bench.json", json.dumps(report, indent=2) + "\n", force=args.force)
    write_output(out, "auth_bench.md", md, force=args.force)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ladon_bench.auth_bench``."""
    from ladon._cli_common import add_force_option, run_guarded

    parser = argparse.ArgumentParser(prog="python -m ladon_bench.auth_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "auth"))
    add_force_option(parser)
    return run_guarded(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

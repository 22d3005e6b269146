"""``python -m ladon_bench.fuzz`` (``make fuzz``): coverage-guided fuzzing of everything that reads untrusted bytes.

Targets (each in its own child process, so a crash is a signal the supervisor sees, not a lost run):

* ``parser``     ``Packet.from_bytes`` + ``Verifier.verify`` on arbitrary bytes (signed and unsigned seeds);
* ``conversion`` ``ladon_ros.conversions.msg_to_packet`` on forged ``CompressedFeatures`` messages (every field
  forgeable within its ROS type, the authentication trailer included), then the verifier;
* ``decoder``    ``Packet.from_bytes`` -> ``LadonServer.check_packet`` -> the rANS decoder
  (``LadonServer.decode``) on forged packets whose CRC is recomputed (so forged payloads reach the decoder);
* ``infer``      ``LadonServer.infer`` (all three heads) on the same forged packets: the whole server path.

An execution passes when it returns or raises a :class:`ladon.errors.LadonError`; anything else is an *untyped
error* (saved with its input), a signal is a *crash*, a slow input is a *hang* (libFuzzer ``-timeout``). atheris
(libFuzzer) drives the inputs when it is installed; otherwise a seeded random mutator does (no coverage guidance;
the report says which). Results: ``<out>/fuzz.json`` and ``fuzz.md``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("parser", "conversion", "decoder", "infer")
DEFAULT_RUNS = {"parser": 3_000_000, "conversion": 1_000_000, "decoder": 300_000, "infer": 10_000}
DEFAULT_SECONDS = {"parser": 900, "conversion": 600, "decoder": 600, "infer": 300}
SEED_KEY = bytes(range(32))
SEED_KEY_ID = "robot1"
MAX_LEN = 8192
STATS_EVERY_S = 1.0


# ------------------------------------------------------------------------------------------------ input helpers
class Provider:
    """Reads typed values from fuzz bytes (deterministic; running out of bytes gives zeros)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out + bytes(n - len(out))

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def f32(self) -> float:
        return struct.unpack("<f", self.take(4))[0]

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


def fix_crc(buf: bytes) -> bytes:
    """``buf`` with its last four bytes replaced by the CRC-32 of the others (a deliberate forger's packet)."""
    if len(buf) < 8:
        return buf
    return buf[:-4] + struct.pack("<I", zlib.crc32(buf[:-4]) & 0xFFFFFFFF)


def seed_packets(model_path: Path | None) -> list[bytes]:
    """Genuine packets: the bundled scenes encoded by ``model_path`` (or a tiny random model), unsigned and signed,
    plus two non-square crops."""
    import ladon
    from ladon.auth import Signer
    from ladon.image_io import list_images, read_image

    if model_path is not None and model_path.exists():
        encoder = ladon.load_encoder(model_path)
    else:
        encoder = ladon.build_model("resnet_tiny", num_bottleneck_channels=8, seed=0, beta=1.28,
                                    preprocess=ladon.PreprocessConfig(input_size=160)).encoder
    images = [read_image(p) for p in list_images(REPO / "ladon" / "assets" / "shapes")][:4]
    images += [images[0][:, :100], images[1][:90]]
    signer = Signer(SEED_KEY_ID, SEED_KEY)
    out = []
    for image in images:
        (packet,) = encoder.encode([image])
        out += [packet.to_bytes(), signer.sign_bytes(packet)]
    return out


# ------------------------------------------------------------------------------------------------ targets
def write_seeds(directory: Path, model_path: Path | None) -> list[bytes]:
    """Encode the seed packets once (torch) and store them for the children."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = seed_packets(model_path)
    for i, seed in enumerate(seeds):
        (directory / f"{i:03d}.ldnp").write_bytes(seed)
    return seeds


def read_seeds(directory: Path) -> list[bytes]:
    """The seed packets :func:`write_seeds` stored."""
    return [p.read_bytes() for p in sorted(directory.glob("*.ldnp"))]


class Target:
    """One fuzz target: ``run(data)`` executes one input and returns the outcome name."""

    name = ""

    def __init__(self, model_path: Path | None, seeds: list[bytes] | None = None) -> None:
        self.model_path = model_path
        self.seed_bytes = seeds or []

    def run(self, data: bytes) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class ParserTarget(Target):
    name = "parser"

    def __init__(self, model_path: Path | None, seeds: list[bytes] | None = None) -> None:
        super().__init__(model_path, seeds)
        from ladon.auth import Verifier
        from ladon.packet import Packet

        self.parse = Packet.from_bytes
        self.verifier = Verifier({SEED_KEY_ID: SEED_KEY}, required=False)

    def run(self, data: bytes) -> str:
        mode, body = (data[0] if data else 0), data[1:]
        if mode & 1:  # half the inputs have a valid CRC, so the fields behind it are reached
            body = fix_crc(body)
        packet = self.parse(body)
        self.verifier.verify(body)
        return "accepted_signed" if packet.authenticated else "accepted"


class ConversionTarget(Target):
    name = "conversion"

    def __init__(self, model_path: Path | None, seeds: list[bytes] | None = None) -> None:
        super().__init__(model_path, seeds)
        from ladon.auth import Verifier
        from ladon.packet import Packet
        from ladon_ros import conversions

        self.conversions = conversions
        self.verifier = Verifier({SEED_KEY_ID: SEED_KEY}, required=False)
        self.seeds = [Packet.from_bytes(b) for b in self.seed_bytes]

    def run(self, data: bytes) -> str:
        from std_msgs.msg import Header

        p = Provider(data)
        seed = self.seeds[p.u8() % len(self.seeds)]
        msg = self.conversions.packet_to_msg(seed, Header())
        which = p.u16()  # one bit per field: forge it or keep the genuine value
        if which & 1:
            msg.model_id = p.take(p.u8() % 80).decode("utf-8", "replace")
        if which & 2:
            msg.model_hash = list(p.take(16))
        if which & 4:
            msg.beta = p.f32()
        if which & 8:
            msg.codec_version = p.u16()
        if which & 16:
            msg.latent_shape = [p.u16(), p.u16(), p.u16()]
        if which & 32:
            msg.original_size = [p.u16(), p.u16()]
        if which & 64:
            msg.resized_size = [p.u16(), p.u16()]
        if which & 128:
            msg.padded_size = [p.u16(), p.u16()]
        crc_mode = p.u8() % 3
        if which & 256:
            msg.data = p.rest()
        if crc_mode == 0:
            msg.crc32 = p.u32()
        elif crc_mode == 1:  # a forger recomputes the CRC field to match the forged fields
            msg.crc32 = self.conversions.msg_to_packet(msg, check_crc=False).crc32
        packet = self.conversions.msg_to_packet(msg)
        self.verifier.verify(packet)
        return "accepted_signed" if packet.authenticated else "accepted"


class DecoderTarget(Target):
    name = "decoder"
    full = False

    def __init__(self, model_path: Path | None, seeds: list[bytes] | None = None) -> None:
        super().__init__(model_path, seeds)
        import torch

        import ladon

        torch.set_num_threads(1)
        if model_path is not None and model_path.exists():
            self.model = ladon.load_model(model_path)
        else:
            self.model = ladon.build_model("resnet_tiny", num_bottleneck_channels=8, seed=0, beta=1.28,
                                           preprocess=ladon.PreprocessConfig(input_size=160))
        self.server = self.model.server
        self.parse = ladon.Packet.from_bytes
        self.seeds = self.seed_bytes

    def forged(self, data: bytes) -> bytes:
        """Mode byte: raw bytes; genuine header + forged payload; or bytes edited in place; CRC recomputed."""
        p = Provider(data)
        mode = p.u8() % 4
        seed = self.seeds[p.u8() % len(self.seeds)]
        if mode == 0:
            return fix_crc(p.rest())
        if mode == 1:  # genuine header, forged payload of any length (payload_len follows)
            head_len = 47 + seed[46]
            payload = p.rest()
            body = seed[:head_len] + struct.pack("<I", len(payload)) + payload
            return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
        if mode == 2:  # edits in place: (offset, value) pairs
            buf = bytearray(seed)
            while p.pos + 3 <= len(p.data):
                buf[p.u16() % len(buf)] = p.u8()
            return fix_crc(bytes(buf))
        return p.rest()  # raw, CRC as given

    def run(self, data: bytes) -> str:
        packet = self.parse(self.forged(data))
        self.server.check_packet(packet)
        if self.full:
            self.server.infer([packet])
            return "served"
        self.server.decode(packet)
        return "decoded"


class InferTarget(DecoderTarget):
    name = "infer"
    full = True


TARGET_CLASSES = {t.name: t for t in (ParserTarget, ConversionTarget, DecoderTarget, InferTarget)}
INSTRUMENT = {"parser": ["ladon.packet", "ladon.auth", "ladon.geometry"],
              "conversion": ["ladon.packet", "ladon.auth", "ladon.geometry", "ladon_ros.conversions"],
              "decoder": ["ladon.packet", "ladon.server", "ladon.bottleneck", "ladon.geometry"],
              "infer": ["ladon.packet", "ladon.server", "ladon.bottleneck", "ladon.geometry", "ladon.heads"]}


# ------------------------------------------------------------------------------------------------ child
class Recorder:
    """Counts outcomes, saves untyped errors, writes the stats file at most once per second and at the end."""

    def __init__(self, stats_path: Path, failures_dir: Path, runs: int, seconds: float, engine: str) -> None:
        self.stats_path, self.failures_dir = stats_path, failures_dir
        self.runs, self.seconds, self.engine = runs, seconds, engine
        self.counts: collections.Counter[str] = collections.Counter()
        self.executions = 0
        self.untyped: list[dict[str, str]] = []
        self.start = time.monotonic()
        self.last_write = 0.0

    def execute(self, target: Target, data: bytes) -> None:
        from ladon.errors import LadonError

        try:
            outcome = target.run(data)
        except LadonError as exc:
            outcome = type(exc).__name__
        except Exception as exc:
            outcome = "UNTYPED:" + type(exc).__name__
            if len(self.untyped) < 50:
                self.failures_dir.mkdir(parents=True, exist_ok=True)
                path = self.failures_dir / f"untyped-{target.name}-{len(self.untyped)}.bin"
                path.write_bytes(data)
                self.untyped.append({"error": f"{type(exc).__name__}: {exc}"[:500], "input": str(path),
                                     "traceback": traceback.format_exc(limit=6)[-2000:]})
        self.counts[outcome] += 1
        self.executions += 1
        now = time.monotonic()
        done = self.executions >= self.runs or now - self.start >= self.seconds
        if done or now - self.last_write >= STATS_EVERY_S:
            self.write(done)
        if done:
            os._exit(0)  # libFuzzer would keep going; the budget is ours

    def write(self, finished: bool) -> None:
        stats = {"executions": self.executions, "seconds": round(time.monotonic() - self.start, 3),
                 "counts": dict(self.counts), "untyped": self.untyped, "finished": finished, "engine": self.engine}
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        os.replace(tmp, self.stats_path)
        self.last_write = time.monotonic()


def child(args: argparse.Namespace) -> int:
    """Run one target until its budget is spent (called in the child process)."""
    work = Path(args.work)
    corpus = work / "corpus"
    model = Path(args.model) if args.model else None
    seeds = read_seeds(Path(args.seeds))
    try:
        import atheris
    except ImportError:
        atheris = None
    if args.engine == "atheris" and atheris is None:
        print("atheris is not installed", file=sys.stderr)
        return 3
    engine = "atheris" if atheris is not None and args.engine != "random" else "random"
    if engine == "atheris":
        with atheris.instrument_imports(include=INSTRUMENT[args.target]):
            target = TARGET_CLASSES[args.target](model, seeds)
    else:
        target = TARGET_CLASSES[args.target](model, seeds)
    recorder = Recorder(work / "stats.json", work / "failures", args.runs, args.seconds, engine)
    if not any(corpus.iterdir()):
        for i, seed in enumerate(seeds):
            if args.target == "conversion":  # seed index, which fields to forge (u16), CRC mode, values
                for j, which in enumerate((0, 1, 4, 8, 16, 32, 256, 0x1FF)):
                    (corpus / f"seed-{i}-{j}").write_bytes(bytes((i,)) + struct.pack("<H", which) + bytes((2,))
                                                           + seed[8:48])
            elif args.target == "parser":  # mode byte (odd = fix the CRC) in front of a genuine packet
                (corpus / f"seed-{i}").write_bytes(bytes((1,)) + seed)
            else:  # decoder modes: 3 = the raw genuine packet, 2 = in-place edits, 1 = genuine header + payload
                (corpus / f"seed-{i}-raw").write_bytes(bytes((3, 0)) + seed)
                (corpus / f"seed-{i}-edit").write_bytes(bytes((2, i)) + struct.pack("<H", 60) + bytes((7,)))
                (corpus / f"seed-{i}-payload").write_bytes(bytes((1, i)) + seed[60:-4])
    if engine == "atheris":
        atheris.Setup([sys.argv[0], str(corpus), f"-max_len={MAX_LEN}", f"-timeout={args.timeout}",
                       "-rss_limit_mb=6144", f"-seed={args.seed}", "-print_final_stats=0", "-close_fd_mask=1",
                       f"-artifact_prefix={work / 'failures'}/"],
                      lambda data: recorder.execute(target, data))
        (work / "failures").mkdir(exist_ok=True)
        atheris.Fuzz()
        return 0
    rng = random.Random(args.seed)
    pool = [p.read_bytes() for p in sorted(corpus.iterdir())]
    while True:  # ends by os._exit in Recorder.execute
        recorder.execute(target, _mutate(rng, rng.choice(pool)))


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """Random mutations (bit flips, byte sets, interesting values, truncation, insertion, splicing)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        if not buf:
            buf += bytes([rng.randrange(256)])
        i = rng.randrange(len(buf))
        if op == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[i] = rng.randrange(256)
        elif op == 2:
            value = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF))
            buf[i:i + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        elif op == 3:
            del buf[rng.randrange(len(buf)):]
        elif op == 4:
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        else:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j:j + rng.randint(1, 64)]
    return bytes(buf[:MAX_LEN])


# ------------------------------------------------------------------------------------------------ supervisor
def run_target(target: str, runs: int, seconds: float, work: Path, model: str, engine: str, seed: int,
               timeout: int, seeds_dir: Path) -> dict[str, Any]:
    """Run ``target`` in child processes until ``runs`` executions or ``seconds`` are spent; a crash (signal)
    is recorded and the next child continues with the remaining budget."""
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    total: dict[str, Any] = {"target": target, "executions": 0, "seconds": 0.0, "counts": collections.Counter(),
                             "untyped": [], "crashes": [], "hangs": 0, "engine": engine}
    start = time.monotonic()
    attempt = 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(":"))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    while total["executions"] < runs and time.monotonic() - start < seconds and attempt < 20:
        stats_path = work / "stats.json"
        stats_path.unlink(missing_ok=True)
        left_s = max(1.0, seconds - (time.monotonic() - start))
        cmd = [sys.executable, "-m", "ladon_bench.fuzz", "_child", "--target", target, "--work", str(work),
               "--runs", str(runs - total["executions"]), "--seconds", f"{left_s:.1f}", "--model", model,
               "--engine", engine, "--seed", str(seed + attempt), "--timeout", str(timeout),
               "--seeds", str(seeds_dir)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=left_s + 120)
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
        total["executions"] += stats.get("executions", 0)
        total["seconds"] += stats.get("seconds", 0.0)
        total["counts"].update(stats.get("counts", {}))
        total["untyped"] += stats.get("untyped", [])
        total["engine"] = stats.get("engine", total["engine"])
        if proc.returncode == 3:
            raise RuntimeError("atheris is not installed (use --engine random)")
        if proc.returncode != 0 or not stats.get("finished"):
            tail = (proc.stderr or "")[-3000:]
            if "libFuzzer: timeout" in tail:
                total["hangs"] += 1
            total["crashes"].append({"returncode": proc.returncode, "hang": "libFuzzer: timeout" in tail,
                                     "stderr_tail": tail[-1500:]})
        attempt += 1
    total["counts"] = dict(sorted(total["counts"].items(), key=lambda kv: -kv[1]))
    total["corpus_size"] = sum(1 for _ in corpus.iterdir())
    total["wall_seconds"] = round(time.monotonic() - start, 1)
    total["executions_per_s"] = round(total["executions"] / max(total["seconds"], 1e-9), 1)
    total["untyped_errors"] = sum(v for k, v in total["counts"].items() if k.startswith("UNTYPED:"))
    return total


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = ["# Fuzzing (`make fuzz`)", "",
             f"{report['machine']}; engine {report['engine']}; model `{report['model']}`; "
             f"{report['date']}", "",
             "| target | executions | time (s) | exec/s | crashes | hangs | untyped errors | corpus | "
             "accepted | typed rejections (top) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for t in report["targets"]:
        counts = t["counts"]
        accepted = sum(v for k, v in counts.items() if k in ("accepted", "accepted_signed", "decoded", "served"))
        typed = [(k, v) for k, v in counts.items() if k.endswith("Error") and not k.startswith("UNTYPED:")]
        top = ", ".join(f"{k} {v:,}" for k, v in typed[:5])
        lines.append(f"| {t['target']} | {t['executions']:,} | {t['seconds']:.0f} | {t['executions_per_s']:,.0f} | "
                     f"{len(t['crashes'])} | {t['hangs']} | {t['untyped_errors']} | {t['corpus_size']:,} | "
                     f"{accepted:,} | {top} |")
    total = sum(t["executions"] for t in report["targets"])
    lines += ["", f"Total: {total:,} executions. An execution passes when it returns or raises a typed "
              "`LadonError`; an untyped error is any other exception, a crash is a signal (compressai's C++ rANS "
              "decoder included), a hang is an input slower than the per-input timeout."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m ladon_bench.fuzz``."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m ladon_bench.fuzz", description=__doc__.splitlines()[0])
    if argv[:1] == ["_child"]:
        parser.add_argument("_child")
        parser.add_argument("--target", choices=TARGETS, required=True)
        parser.add_argument("--work", required=True)
        parser.add_argument("--runs", type=int, required=True)
        parser.add_argument("--seconds", type=float, required=True)
        parser.add_argument("--model", default="")
        parser.add_argument("--engine", default="auto")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--timeout", type=int, default=10)
        parser.add_argument("--seeds", required=True)
        return child(parser.parse_args(argv))
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {TARGETS}")
    parser.add_argument("--runs", default="", help="executions per target, e.g. parser=1000000,decoder=50000 "
                        f"(defaults {DEFAULT_RUNS})")
    parser.add_argument("--seconds", default="", help=f"time cap per target, same syntax (defaults "
                        f"{DEFAULT_SECONDS})")
    parser.add_argument("--model", default=str(REPO / "models" / "demo.pt"),
                        help="model whose server is fuzzed (default models/demo.pt; a tiny random model if absent)")
    parser.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=10, help="seconds per input before it counts as a hang")
    parser.add_argument("--work", default="", help="work folder for corpora and failing inputs (default: temp)")
    parser.add_argument("--out", default="", help="write fuzz.json and fuzz.md here (bench/results/fuzz)")
    parser.add_argument("--force", action="store_true", help="replace earlier result files")
    args = parser.parse_args(argv)

    def per_target(text: str, defaults: dict[str, float]) -> dict[str, float]:
        values = dict(defaults)
        for item in filter(None, text.split(",")):
            key, _, value = item.partition("=")
            if key not in TARGETS:
                parser.error(f"unknown target {key!r}")
            values[key] = float(value)
        return values

    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")
    runs, seconds = per_target(args.runs, DEFAULT_RUNS), per_target(args.seconds, DEFAULT_SECONDS)
    out = None
    if args.out:
        from ladon._cli_common import output_dir, safe_output_path

        out = output_dir(args.out)
        for name in ("fuzz.json", "fuzz.md"):
            safe_output_path(out, name, args.force)
    work_root = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ladon-fuzz-"))
    try:
        import atheris  # noqa: F401

        have_atheris = True
    except ImportError:
        have_atheris = False
    engine = "random" if args.engine == "random" or (args.engine == "auto" and not have_atheris) else "atheris"
    seeds_dir = work_root / "seeds"
    if not any(seeds_dir.glob("*.ldnp")):
        write_seeds(seeds_dir, Path(args.model) if args.model else None)
    results = []
    for target in targets:
        print(f"fuzzing {target}: up to {int(runs[target]):,} executions or {seconds[target]:g} s ({engine})",
              flush=True)
        result = run_target(target, int(runs[target]), seconds[target], work_root / target, args.model, engine,
                            args.seed, args.timeout, seeds_dir)
        print(f"  {result['executions']:,} executions in {result['seconds']:.1f} s, crashes "
              f"{len(result['crashes'])}, hangs {result['hangs']}, untyped {result['untyped_errors']}, corpus "
              f"{result['corpus_size']}", flush=True)
        results.append(result)
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
                         f"{platform.python_version()}",
              "engine": engine, "model": _shown(Path(args.model)) if Path(args.model).exists() else "tiny random model",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "work": str(work_root),
              "targets": results}
    md = markdown(report)
    print(md)
    if out is not None:
        from ladon._cli_common import write_output

        write_output(out, "fuzz.json", json.dumps(report, indent=2) + "\n", force=args.force)
        write_output(out, "fuzz.md", md, force=args.force)
        print(f"wrote {out / 'fuzz.json'} and {out / 'fuzz.md'}")
    if not args.work:
        shutil.rmtree(work_root, ignore_errors=True)
    bad = sum(len(r["crashes"]) + r["hangs"] + r["untyped_errors"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

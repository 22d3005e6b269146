"""The fuzz harness (``make fuzz``) at test scale: every target runs, reaches its code, and finds nothing; the
harness itself tells typed rejections from untyped errors."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from ladon.errors import PacketError
from ladon_bench import fuzz


def test_all_targets_short_run(tmp_path):
    out = tmp_path / "out"
    rc = fuzz.main(["--runs", "parser=3000,conversion=1000,decoder=200,infer=8", "--out", str(out),
                    "--work", str(tmp_path / "work"), "--timeout", "20"])
    report = json.loads((out / "fuzz.json").read_text())
    assert rc == 0
    by = {t["target"]: t for t in report["targets"]}
    assert set(by) == set(fuzz.TARGETS)
    for t in by.values():
        assert t["crashes"] == [] and t["hangs"] == 0 and t["untyped_errors"] == 0, t
        assert t["executions"] >= 8 and t["corpus_size"] > 0
    # the inputs reach what they are meant to reach: accepted packets, the decoder, the heads
    assert by["parser"]["counts"].get("accepted", 0) + by["parser"]["counts"].get("accepted_signed", 0) > 0
    assert by["decoder"]["counts"].get("decoded", 0) > 0
    assert by["infer"]["counts"].get("served", 0) > 0
    assert "| parser |" in (out / "fuzz.md").read_text()


def test_random_engine_runs_without_atheris(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "0.ldnp").write_bytes(b"LDNP\x01\x00" + bytes(60))
    result = fuzz.run_target("parser", 1500, 60, tmp_path / "w", "", "random", 0, 10, seeds)
    assert result["engine"] == "random" and result["executions"] == 1500 and result["untyped_errors"] == 0


class _Raises(fuzz.Target):
    name = "raises"

    def __init__(self, exc: Exception) -> None:
        super().__init__(None)
        self.exc = exc

    def run(self, data: bytes) -> str:
        raise self.exc


def test_recorder_counts_typed_and_untyped_errors(tmp_path):
    recorder = fuzz.Recorder(tmp_path / "stats.json", tmp_path / "failures", runs=10**9, seconds=1e9,
                             engine="random")
    recorder.execute(_Raises(PacketError("typed")), b"a")
    recorder.execute(_Raises(KeyError("untyped")), b"bb")
    recorder.write(False)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"] == {"PacketError": 1, "UNTYPED:KeyError": 1}
    (saved,) = stats["untyped"]
    assert "KeyError" in saved["error"] and open(saved["input"], "rb").read() == b"bb"


def test_provider_and_crc_helpers():
    p = fuzz.Provider(b"\x01\x02\x03")
    assert p.u8() == 1 and p.u16() == 0x0302 and p.u32() == 0 and p.rest() == b""
    body = b"LDNP" + bytes(20)
    fixed = fuzz.fix_crc(body + b"\0\0\0\0")
    assert struct.unpack("<I", fixed[-4:])[0] == zlib.crc32(body)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_decoder_forgery_modes_produce_bytes(mode):
    target = fuzz.DecoderTarget.__new__(fuzz.DecoderTarget)
    target.seeds = [b"LDNP\x01\x00" + bytes(40) + b"\x02ab" + struct.pack("<I", 3) + b"xyz" + bytes(4)]
    out = target.forged(bytes((mode, 0)) + b"\x05\x00\x41payload")
    assert isinstance(out, bytes) and out

"""``ladon replay``: recorded packets through the heads, offline and without ROS.

Covers: results equal to serving the same packets in-process (per robot, stamps kept); packets of two models in
one bag, each served by its own model, or skipped and counted, or stopped with ModelMismatchError; a bag without
features topics; a truncated bag (error names the offset, earlier frames kept); a packet with a bad CRC rejected
and counted; the CLI's exit status and error line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import ladon
from ladon import cli
from ladon.bag import BagWriter, TopicInfo
from ladon.errors import ModelMismatchError, NoFeaturesError, TruncatedBagError
from ladon.replay import replay_bag
from ladon.results import detections_above

sys.path.insert(0, str(Path(__file__).parent))
from _bag_helpers import STRING_DEFINITION, features_cdr, features_topic, string_cdr, write_features_bag

REPO = Path(__file__).resolve().parents[2]
SHAPES = sorted((REPO / "ladon" / "assets" / "shapes").glob("*.png"))


@pytest.fixture(scope="module")
def models() -> dict[str, ladon.LadonModel]:
    return {"demo": ladon.load_model(REPO / "models" / "demo.pt"),
            "beta10": ladon.load_model(REPO / "models" / "demo_beta10.24.pt")}


@pytest.fixture(scope="module")
def frames(models) -> list[tuple[str, ladon.Packet, int]]:
    """Six scenes: robots r1/r2 encode with the demo model, r3 with the beta 10.24 model."""
    images = [cv2.imread(str(p))[:, :, ::-1].copy() for p in SHAPES[:6]]
    out = []
    for i, image in enumerate(images):
        robot = ("r1", "r2", "r3")[i % 3]
        model = models["beta10"] if robot == "r3" else models["demo"]
        (packet,) = model.encoder.encode([image])
        out.append((f"/{robot}/ladon/features", packet, 200 + i))
    return out


@pytest.fixture(scope="module")
def bag(tmp_path_factory, frames) -> Path:
    return write_features_bag(tmp_path_factory.mktemp("replay") / "drive", frames, chunk_size=3000)


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_replay_equals_serving_the_packets_in_process(bag, frames, models, tmp_path):
    stats = replay_bag(bag.parent, list(models.values()), tmp_path, masks=True)
    assert (stats.frames, stats.replayed, sum(stats.rejected.values())) == (6, 6, 0)
    assert dict(stats.per_robot) == {"/r1": 2, "/r2": 2, "/r3": 2}
    lines = _lines(tmp_path)
    for line, (topic, packet, sec) in zip(lines, frames):
        model = models["beta10"] if topic.startswith("/r3") else models["demo"]
        (expected,) = model.server.infer([packet])
        expected = detections_above(expected, 0.3)
        assert line["topic"] == topic and line["robot"] == topic[:3]
        assert line["stamp"] == {"sec": sec, "nanosec": 7} and line["frame_id"] == "camera"
        assert line["model_hash"] == model.model_hash.hex()
        got = line["result"]
        want = expected.to_dict()
        assert got["classification"] == want["classification"]
        assert got["detection"] == want["detection"]
        assert got["segmentation"] == want["segmentation"]
        mask = cv2.imread(str(tmp_path / "masks" / topic[1:3] / f"{sec}.000000007.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, expected.segmentation.mask)
        overlay = cv2.imread(str(tmp_path / "overlays" / topic[1:3] / f"{sec}.000000007.png"))
        assert overlay.shape[:2] == expected.geometry.original_size
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["replayed"] == 6 and summary["error"] is None


def test_packets_of_a_model_not_given_skip_or_stop(bag, models, tmp_path):
    stats = replay_bag(bag, [models["demo"]], tmp_path / "skip", skip_mismatched=True)
    assert stats.replayed == 4
    ((what, n),) = stats.skipped_mismatched.items()
    assert n == 2 and models["beta10"].model_hash.hex()[:12] in what
    with pytest.raises(ModelMismatchError, match="--skip-mismatched") as info:
        replay_bag(bag, [models["demo"]], tmp_path / "stop")
    assert "/r3/ladon/features at 202.000000007" in str(info.value)
    assert len(_lines(tmp_path / "stop")) == 2  # the frames before the foreign packet are kept
    summary = json.loads((tmp_path / "stop" / "summary.json").read_text())
    assert summary["replayed"] == 2 and "ModelMismatchError" in summary["error"]


def test_a_bag_without_features_topics(tmp_path):
    with BagWriter(tmp_path / "chatter") as writer:
        writer.add_topic(TopicInfo(name="/chatter", type="std_msgs/msg/String", definition=STRING_DEFINITION))
        writer.write("/chatter", string_cdr("hi"), 1)
    with pytest.raises(NoFeaturesError, match=r"/chatter \[std_msgs/msg/String\]"):
        replay_bag(tmp_path / "chatter", [], tmp_path / "out")


def test_topics_option_and_other_topics_ignored(tmp_path, frames, models):
    bag = write_features_bag(tmp_path / "mixed", frames[:2], extra_strings=3)
    stats = replay_bag(bag, [models["demo"]], tmp_path / "out", topics=["/r2/ladon/features"], overlays=False)
    assert (stats.frames, stats.replayed, dict(stats.per_robot)) == (1, 1, {"/r2": 1})
    with pytest.raises(NoFeaturesError, match="none of the requested topics"):
        replay_bag(bag, [models["demo"]], tmp_path / "out2", topics=["/nope"])


def test_truncated_bag_keeps_the_frames_before_the_cut(bag, models, tmp_path):
    data = bag.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedBagError) as info:
        replay_bag(cut, list(models.values()), tmp_path / "out", overlays=False)
    kept = _lines(tmp_path / "out")
    assert 0 < len(kept) < 6 and info.value.messages_read == len(kept)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["error_offset"] == info.value.offset and summary["replayed"] == len(kept)
    assert f"at byte {info.value.offset}" in summary["error"]


def test_bad_crc_is_rejected_and_counted(tmp_path, frames, models):
    _, packet, _ = frames[0]
    with BagWriter(tmp_path / "bad") as writer:
        writer.add_topic(features_topic("/r1/ladon/features"))
        writer.write("/r1/ladon/features", features_cdr(packet, 1, crc=packet.crc32 ^ 1), 1)
        writer.write("/r1/ladon/features", features_cdr(packet, 2), 2)
    stats = replay_bag(tmp_path / "bad", [models["demo"]], tmp_path / "out", overlays=False)
    assert (stats.frames, stats.replayed, dict(stats.rejected)) == (2, 1, {"ChecksumError": 1})


def test_cli(bag, tmp_path, capsys):
    demo, beta10 = str(REPO / "models" / "demo.pt"), str(REPO / "models" / "demo_beta10.24.pt")
    assert cli.main(["replay", str(bag.parent), "--model", demo, "--model", beta10, "--out", str(tmp_path / "a"),
                     "--no-overlays"]) == 0
    assert "replayed 6 of 6 frame(s) from 3 topic(s)" in capsys.readouterr().out
    assert cli.main(["replay", str(bag.parent), "--model", demo, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--skip-mismatched" in err
    assert cli.main(["replay", str(tmp_path / "nothing"), "--model", demo, "--out", str(tmp_path / "c")]) == 2
    assert "no such bag" in capsys.readouterr().err
    again = ["replay", str(bag.parent), "--model", demo, "--model", beta10, "--out", str(tmp_path / "a"),
             "--no-overlays"]
    assert cli.main(again) == 2  # an earlier replay's outputs are never silently replaced
    assert "already exists" in capsys.readouterr().err and len(_lines(tmp_path / "a")) == 6
    assert cli.main([*again, "--force"]) == 0


def test_verify_keys_rejects_unsigned_forged_and_unknown_keys(tmp_path, frames, models):
    """Signed packets (the server's auth convention) replay; with --verify-keys the others are rejected, counted."""
    from ladon.auth import Signer, generate_key_file, load_keys_dir

    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    generate_key_file(keys / "robot1.key")
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    generate_key_file(other / "robot9.key")
    good = Signer("robot1", load_keys_dir(keys)["robot1"])
    stranger = Signer("robot9", load_keys_dir(other)["robot9"])
    _, packet, _ = frames[0]
    signed = good.sign(packet)
    forged = signed.with_tag("robot1", bytes(32))
    with BagWriter(tmp_path / "signed") as writer:
        writer.add_topic(features_topic("/r1/ladon/features"))
        for i, p in enumerate([signed, packet, forged, stranger.sign(packet), signed]):
            writer.write("/r1/ladon/features", features_cdr(p, i), i + 1)
    stats = replay_bag(tmp_path / "signed", [models["demo"]], tmp_path / "plain", overlays=False)
    assert (stats.replayed, sum(stats.rejected.values())) == (5, 0)  # without keys: signed packets replay too
    assert cli.main(["replay", str(tmp_path / "signed"), "--model", str(REPO / "models" / "demo.pt"),
                     "--out", str(tmp_path / "checked"), "--no-overlays", "--verify-keys", str(keys)]) == 0
    summary = json.loads((tmp_path / "checked" / "summary.json").read_text())
    assert summary["replayed"] == 2 and sum(summary["rejected"].values()) == 3
    assert [line["stamp"]["sec"] for line in _lines(tmp_path / "checked")] == [0, 4]

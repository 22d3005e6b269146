"""``ladon replay``: recorded packets through the heads, offline and without ROS.

Covers: results equal to serving the same packets in-process (per robot, stamps kept); packets of two models in
one bag, each served by its own model, or skipped and counted, or stopped with ModelMismatchError; a bag without
features topics; a truncated bag (error names the offset, earlier frames kept); a packet with a bad CRC rejected
and counted; the CLI's exit status and error line. Channel groups (packet format 2): frames reassembled per robot
and served like the same image sent as one packet; frames missing a group dropped and counted, or served flagged
partial; deadlines in the bag's log time (late groups counted); duplicate and late groups rejected by type.
"""

from __future__ import annotations

import dataclasses
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
from ladon.reassembly import AssembledFrame, Reassembler
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


# ------------------------------------------------------------------------------------------ channel groups (format 2)
S = 10**9  # nanoseconds per second of log time


@pytest.fixture(scope="module")
def scenes(models) -> list[tuple[ladon.Packet, list[ladon.Packet]]]:
    """Three scenes encoded by the demo model as one packet and as four channel groups (frame ids 5, 6, 7)."""
    encoder = models["demo"].encoder
    out = []
    for i, path in enumerate(SHAPES[:3]):
        image = cv2.imread(str(path))[:, :, ::-1].copy()
        (single,) = encoder.encode([image])
        groups = encoder.encode_frame(image, packetization="groups", num_groups=4, frame_id=5 + i)
        assert [g.group.index for g in groups] == [0, 1, 2, 3]
        out.append((single, groups))
    return out


def _heads(result: dict) -> tuple:
    return result["classification"], result["detection"], result["segmentation"]


def _expected(model: ladon.LadonModel, item) -> dict:
    (result,) = model.server.infer([item])
    return detections_above(result, 0.3).to_dict()


def _partial_frame(groups: list[ladon.Packet], missing: set[int]) -> AssembledFrame:
    """What the server's reassembler hands out under ``partial`` for ``groups`` less the ``missing`` ones."""
    clock = [0.0]
    r = Reassembler(policy="partial", clock=lambda: clock[0])
    for g in groups:
        if g.group.index not in missing:
            assert r.add(g) is None
    clock[0] = 1.0
    (frame,) = r.expire()
    return frame


def test_grouped_frames_replay_like_their_single_packets(scenes, models, tmp_path):
    """Groups interleaved across two robots (same frame ids, out of order) reassemble per robot; each frame's
    outputs equal those of the same image sent as one packet; single packets in between replay as before."""
    (single0, groups0), (single1, groups1), _ = scenes
    r1, r2 = "/r1/ladon/features", "/r2/ladon/features"
    groups1 = [dataclasses.replace(g, group=dataclasses.replace(g.group, frame_id=5)) for g in groups1]
    t = 300 * S
    entries = [(r1, groups0[2], 300, t), (r2, groups1[0], 301, t + 1), (r1, groups0[0], 300, t + 2),
               (r1, single1, 302, t + 3), (r2, groups1[3], 301, t + 4), (r2, groups1[1], 301, t + 5),
               (r1, groups0[3], 300, t + 6), (r1, groups0[1], 300, t + 7), (r2, groups1[2], 301, t + 8)]
    bag = write_features_bag(tmp_path / "groups", entries)
    stats = replay_bag(bag, [models["demo"]], tmp_path / "out", masks=True)
    assert (stats.messages, stats.frames, stats.replayed, stats.group_packets) == (9, 3, 3, 8)
    assert dict(stats.rejected) == {} and dict(stats.per_robot) == {"/r1": 2, "/r2": 1}
    lines = _lines(tmp_path / "out")
    assert [(line["topic"], line["stamp"]["sec"]) for line in lines] == [(r1, 302), (r1, 300), (r2, 301)]
    for line, single in zip(lines, (single1, single0, single1)):
        assert _heads(line["result"]) == _heads(_expected(models["demo"], single))
        assert "partial" not in line and "partial" not in line["result"]
    assert "groups" not in lines[0] and lines[0]["packet_bytes"] == single1.nbytes
    assert lines[1]["groups"] == 4 and lines[1]["packet_bytes"] == sum(g.nbytes for g in groups0)
    assert lines[1]["log_time_ns"] == t  # the first group's
    mask = cv2.imread(str(tmp_path / "out" / "masks" / "r1" / "300.000000007.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, models["demo"].server.infer([single0])[0].segmentation.mask)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["group_packets"], summary["groups_complete"], summary["groups_incomplete_dropped"],
            summary["groups_partial"], summary["group_policy"]) == (8, 2, 0, 0, "drop")


def test_incomplete_frames_are_dropped_or_served_partial(scenes, models, tmp_path):
    """A frame missing a group expires at its deadline (a later message's log time) or at the end of the bag:
    dropped and counted under ``drop``, served flagged partial under ``partial``."""
    (_, a), (single_b, b), (_, c) = scenes
    topic = "/r1/ladon/features"
    t = 400 * S
    entries = [(topic, g, 400, t + g.group.index * S // 100) for g in a if g.group.index != 1]  # A: group 1 lost
    entries += [(topic, g, 401, t + S + i * S // 100) for i, g in enumerate(b)]  # 1 s later: A is past its deadline
    entries += [(topic, g, 402, t + 2 * S) for g in c if g.group.index not in (0, 3)]  # the bag ends: C incomplete
    bag = write_features_bag(tmp_path / "lossy", entries)

    stats = replay_bag(bag, [models["demo"]], tmp_path / "drop", overlays=False)
    assert (stats.frames, stats.replayed, stats.group_packets, dict(stats.rejected)) == (3, 1, 9, {})
    (line,) = _lines(tmp_path / "drop")
    assert line["stamp"]["sec"] == 401 and _heads(line["result"]) == _heads(_expected(models["demo"], single_b))
    summary = json.loads((tmp_path / "drop" / "summary.json").read_text())
    assert (summary["groups_incomplete_dropped"], summary["groups_complete"], summary["groups_partial"]) == (2, 1, 0)

    stats = replay_bag(bag, [models["demo"]], tmp_path / "partial", group_policy="partial")
    assert (stats.frames, stats.replayed, dict(stats.rejected)) == (3, 3, {})
    lines = _lines(tmp_path / "partial")
    assert [line["stamp"]["sec"] for line in lines] == [400, 401, 402]  # A is served when B's first group is read
    assert (lines[0]["partial"], lines[0]["missing_groups"]) == (True, [1])
    assert (lines[2]["partial"], lines[2]["missing_groups"]) == (True, [0, 3])
    assert lines[0]["result"]["missing_groups"] == [1] and "partial" not in lines[1]
    assert lines[0]["result"] == {**_expected(models["demo"], _partial_frame(a, {1})),
                                  "timings_ms": lines[0]["result"]["timings_ms"]}
    assert _heads(lines[2]["result"]) == _heads(_expected(models["demo"], _partial_frame(c, {0, 3})))
    assert _heads(lines[1]["result"]) == _heads(_expected(models["demo"], single_b))
    assert (tmp_path / "partial" / "overlays" / "r1" / "400.000000007.png").is_file()
    summary = json.loads((tmp_path / "partial" / "summary.json").read_text())
    assert (summary["groups_incomplete_dropped"], summary["groups_complete"], summary["groups_partial"]) == (0, 1, 2)


def test_group_deadline_runs_on_log_time(scenes, models, tmp_path):
    """A group logged after its frame's deadline is late (rejected and counted) and the frame incomplete; a longer
    deadline takes it in. Groups sharing one log time complete even with a 1 ns deadline (no wall clock)."""
    single, groups = scenes[0]
    topic = "/r1/ladon/features"
    t = 500 * S
    late = write_features_bag(tmp_path / "late", [(topic, g, 500, t + (S // 2 if g.group.index == 3 else i))
                                                  for i, g in enumerate(groups)])
    stats = replay_bag(late, [models["demo"]], tmp_path / "drop", overlays=False)  # default deadline 0.2 s
    assert (stats.frames, stats.replayed, dict(stats.rejected)) == (1, 0, {"LateGroupError": 1})
    summary = json.loads((tmp_path / "drop" / "summary.json").read_text())
    assert (summary["groups_incomplete_dropped"], summary["groups_late"], summary["group_packets"]) == (1, 1, 3)

    stats = replay_bag(late, [models["demo"]], tmp_path / "partial", overlays=False, group_policy="partial")
    assert (stats.replayed, dict(stats.rejected), stats.groups["late"]) == (1, {"LateGroupError": 1}, 1)
    (line,) = _lines(tmp_path / "partial")
    assert line["missing_groups"] == [3]

    stats = replay_bag(late, [models["demo"]], tmp_path / "long", overlays=False, group_deadline_s=0.6)
    assert (stats.replayed, dict(stats.rejected), stats.groups["complete"]) == (1, {}, 1)
    (line,) = _lines(tmp_path / "long")
    assert _heads(line["result"]) == _heads(_expected(models["demo"], single))

    same = write_features_bag(tmp_path / "same", [(topic, g, 500, t) for g in groups])
    stats = replay_bag(same, [models["demo"]], tmp_path / "ns", overlays=False, group_deadline_s=1e-9)
    assert (stats.replayed, stats.groups["complete"], stats.groups["incomplete"]) == (1, 1, 0)


def test_refused_groups_are_rejected_by_type(scenes, models, tmp_path):
    """A duplicate group and a lone group of a frame already completed are typed GroupErrors, counted."""
    _, groups = scenes[0]
    topic = "/r1/ladon/features"
    t = 600 * S
    entries = [(topic, groups[0], 600, t), (topic, groups[0], 600, t + 1)]
    entries += [(topic, g, 600, t + 2 + i) for i, g in enumerate(groups[1:])]
    entries.append((topic, groups[2], 600, t + 10))  # after completion
    bag = write_features_bag(tmp_path / "dup", entries)
    stats = replay_bag(bag, [models["demo"]], tmp_path / "out", overlays=False)
    assert (stats.frames, stats.replayed, stats.group_packets) == (1, 1, 4)
    assert dict(stats.rejected) == {"DuplicateGroupError": 1, "LateGroupError": 1}
    assert (stats.groups["duplicate"], stats.groups["late"]) == (1, 1)


def test_cli_group_options(scenes, tmp_path, capsys):
    _, groups = scenes[0]
    topic = "/r1/ladon/features"
    bag = write_features_bag(tmp_path / "bag", [(topic, g, 700, 700 * S) for g in groups[:3]])
    demo = str(REPO / "models" / "demo.pt")
    assert cli.main(["replay", str(bag), "--model", demo, "--out", str(tmp_path / "a"), "--no-overlays",
                     "--group-policy", "partial", "--group-deadline-s", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "replayed 1 of 1 frame(s)" in out and "0 complete, 1 served partial, 0 incomplete dropped" in out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert (summary["group_policy"], summary["group_deadline_s"], summary["groups_partial"]) == ("partial", 0.5, 1)
    assert _lines(tmp_path / "a")[0]["missing_groups"] == [3]
    assert cli.main(["replay", str(bag), "--model", demo, "--out", str(tmp_path / "b"),
                     "--group-deadline-s", "0"]) == 2
    assert "--group-deadline-s must be > 0" in capsys.readouterr().err
    assert cli.main(["replay", str(bag), "--model", demo, "--out", str(tmp_path / "c"), "--group-policy",
                     "maybe"]) == 2
    assert "invalid choice: 'maybe'" in capsys.readouterr().err

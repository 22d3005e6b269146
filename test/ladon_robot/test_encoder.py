"""RobotEncoder: torch-free packets that today's server decodes; bundle checks; preprocessing equal to torch's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ladon.errors import (
    BundleError,
    BundleIntegrityError,
    BundleMismatchError,
    ImageSizeMismatchError,
    InvalidImageError,
)
from ladon.packet import Packet
from ladon_robot import RobotEncoder
from ladon_robot.preprocess import preprocess_numpy

REPO = Path(__file__).resolve().parents[2]


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def demo_model():
    import ladon

    return ladon.load_model(REPO / "models" / "demo.pt")


def test_preprocessing_equals_torch_bit_for_bit() -> None:
    import torch

    from ladon.geometry import PreprocessConfig
    from ladon.preprocess import preprocess

    rng = np.random.default_rng(0)
    previous = torch.get_num_threads()
    try:
        for config in (PreprocessConfig(), PreprocessConfig(input_size=160, pad_multiple=16)):
            for h, w in [(416, 416), (160, 160), (480, 640), (720, 1280), (100, 37), (417, 300), (33, 900), (5, 7)]:
                image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                got, got_geometry = preprocess_numpy(image, config)
                # torch's multi-threaded resize (the path its default thread count takes here) is reproduced bit
                # for bit; its single-thread path rounds differently in the last float bit (measured: about half
                # of the values differ by <= 1 ULP), so there the numpy result is equal within 1e-6.
                torch.set_num_threads(2)
                expected, geometry = preprocess(image, config)
                assert got_geometry == geometry
                np.testing.assert_array_equal(got, expected.numpy(), err_msg=f"{h}x{w} {config}")
                torch.set_num_threads(1)
                np.testing.assert_allclose(got, preprocess(image, config)[0].numpy(), rtol=0, atol=1e-6)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_packets_decode_on_the_server_and_fp32_matches_torch(demo_bundle, demo_images, demo_model,
                                                             precision) -> None:
    from ladon.bottleneck import decompress_latent

    robot = RobotEncoder(demo_bundle, precision, threads=1)
    assert (robot.model_id, robot.model_hash, robot.beta) == (
        demo_model.encoder.model_id, demo_model.encoder.model_hash, demo_model.encoder.beta)
    eb = demo_model.encoder.entropy_bottleneck
    wires = robot.encode(demo_images)
    equal = total = 0
    for image, wire in zip(demo_images, wires):
        packet = Packet.from_bytes(wire)
        reference = demo_model.encoder.encode([image])[0]
        assert (packet.geometry, packet.latent_shape) == (reference.geometry, reference.latent_shape)
        a = decompress_latent(eb, packet.data, packet.latent_shape)
        b = decompress_latent(eb, reference.data, reference.latent_shape)
        equal += int((a == b).sum())
        total += a.numel()
        if precision == "fp32":  # same symbols -> the same rANS bytes as compressai
            assert packet.data == reference.data
        else:
            assert abs(len(packet.data) - len(reference.data)) <= 0.05 * len(reference.data)
    results = demo_model.server.infer(wires, tasks=("classification",))
    assert len(results) == len(wires) and all(r.classification is not None for r in results)
    assert equal / total >= (0.999 if precision == "fp32" else 0.95)


def test_runtime_imports_and_encodes_with_torch_blocked(demo_bundle, demo_images) -> None:
    image_path = REPO / "ladon" / "assets" / "shapes" / "shapes_01.png"
    code = f"""
import sys
sys.modules["torch"] = None
sys.modules["compressai"] = None
import cv2
from ladon_robot import RobotEncoder
enc = RobotEncoder({str(demo_bundle)!r}, "int8")
image = cv2.cvtColor(cv2.imread({str(image_path)!r}), cv2.COLOR_BGR2RGB)
wire = enc.encode([image])[0]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "compressai")
                and sys.modules[m] is not None)
print(wire.hex())
print(loaded)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    wire_hex, loaded = out.stdout.strip().splitlines()[-2:]
    assert loaded == "[]"
    assert bytes.fromhex(wire_hex) == RobotEncoder(demo_bundle, "int8").encode([demo_images[0]])[0]


def test_tampered_truncated_or_missing_files_are_refused(demo_bundle, tmp_path) -> None:
    for name, damage in [("encoder_int8.onnx", "flip"), ("encoder_int8.onnx", "truncate"),
                         ("entropy.npz", "flip"), ("entropy.npz", "truncate"), ("entropy.npz", "delete")]:
        bundle = copy_bundle(demo_bundle, tmp_path / f"{name}-{damage}")
        path = bundle / name
        data = bytearray(path.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0x01
            path.write_bytes(bytes(data))
        elif damage == "truncate":
            path.write_bytes(bytes(data[: len(data) - 7]))
        else:
            path.unlink()
        with pytest.raises(BundleIntegrityError, match=name):
            RobotEncoder(bundle, "int8")
    bundle = copy_bundle(demo_bundle, tmp_path / "bad-manifest")
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleIntegrityError, match="JSON"):
        RobotEncoder(bundle)
    with pytest.raises(BundleError, match="not a robot bundle"):
        RobotEncoder(tmp_path)


def _rewrite_digests(bundle: Path) -> None:
    from ladon.export import sha256_file

    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = {"sha256": sha256_file(bundle / name), "bytes": (bundle / name).stat().st_size}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_bundle_from_another_model_is_refused(demo_bundle, tmp_path) -> None:
    from ladon.export import export_encoder
    from ladon.model import load_encoder

    other = tmp_path / "other"
    export_encoder(load_encoder(REPO / "models" / "demo_beta10.24.pt"), other,
                   calibration_images=sorted((REPO / "ladon" / "assets" / "shapes").glob("*.png"))[:2])
    ours = RobotEncoder(demo_bundle, "fp32")
    with pytest.raises(BundleMismatchError, match="expected"):
        RobotEncoder(other, "fp32", expected_model_hash=ours.model_hash)
    with pytest.raises(BundleMismatchError, match="expected"):
        RobotEncoder(other, "fp32", expected_model_id="some-other-id")
    # Files mixed from two bundles, manifest digests rewritten to match: the embedded model hashes disagree.
    for name in ("encoder_fp32.onnx", "entropy.npz"):
        mixed = copy_bundle(demo_bundle, tmp_path / f"mixed-{name}")
        shutil.copy(other / name, mixed / name)
        _rewrite_digests(mixed)
        with pytest.raises(BundleMismatchError, match="belong"):
            RobotEncoder(mixed, "fp32")


def test_fixed_size_bundle_refuses_other_sizes(tmp_path, demo_images, demo_model) -> None:
    from ladon.export import export_encoder

    bundle = tmp_path / "fixed"
    manifest = export_encoder(demo_model.encoder, bundle, fixed_size=(160, 160),
                              calibration_images=sorted((REPO / "ladon" / "assets" / "shapes").glob("*.png"))[:3]
                              ).manifest
    assert manifest["input"] == {"dynamic": False, "image_size": [160, 160], "padded_size": [160, 160]}
    robot = RobotEncoder(bundle, "fp32")
    wire = robot.encode([demo_images[0]])[0]
    assert Packet.from_bytes(wire).data == demo_model.encoder.encode([demo_images[0]])[0].data
    with pytest.raises(ImageSizeMismatchError, match="160x160"):
        robot.encode([np.zeros((120, 160, 3), np.uint8)])
    with pytest.raises(InvalidImageError):
        robot.encode([np.zeros((160, 160), np.uint8)])
    with pytest.raises(BundleError, match="precision"):
        RobotEncoder(bundle, "fp16")


def test_channel_groups_match_the_torch_encoder_and_reassemble(demo_bundle, demo_images, demo_model) -> None:
    """The C rANS codes channel groups too (one pass per group): same bytes as the torch encoder's groups where
    the symbols agree (fp32), and the groups concatenate to the single stream's latent."""
    import torch

    from ladon.bottleneck import assemble_latent, decompress_latent

    robot = RobotEncoder(demo_bundle, "fp32", threads=1)
    eb = demo_model.encoder.entropy_bottleneck
    image = demo_images[0]
    (single,) = robot.encode_packets([image])
    assert robot.encode_frame(image) == [single]  # version 1 by default
    groups = robot.encode_frame(image, packetization="groups", num_groups=4, frame_id=9)
    reference = demo_model.encoder.encode_frame(image, packetization="groups", num_groups=4, frame_id=9)
    assert [p.group for p in groups] == [p.group for p in reference]
    assert [p.data for p in groups] == [p.data for p in reference]
    latent = assemble_latent(eb, [(p.group.channel_start, p.group.channel_stop, p.data) for p in groups],
                             single.latent_shape)
    assert torch.equal(latent, decompress_latent(eb, single.data, single.latent_shape))

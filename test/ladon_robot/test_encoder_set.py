"""Bundle sets: the demo model set exported for the torch-free robot, loaded as an EncoderSet, served by ModelSet."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ladon.assets import project_dir
from ladon.bundle_set import BUNDLE_SET_MANIFEST, is_bundle_set, read_bundle_set
from ladon.errors import BundleMismatchError, LadonError
from ladon.model_set import DuplicateBetaError, EncoderSet, ModelSetError, SetMismatchError, load_model_set
from ladon_robot import RobotEncoder
from ladon_robot.encoder_set import load_robot_encoder_set

DEMO_SET = project_dir("models") / "demo_set.json"


@pytest.fixture(scope="module")
def bundle_set(tmp_path_factory):
    """`ladon export-encoder models/demo_set.json -o DIR` through the CLI's own entry point."""
    from ladon.cli import main

    out = tmp_path_factory.mktemp("bundle_set") / "demo_set"
    assert main(["export-encoder", str(DEMO_SET), "-o", str(out)]) == 0
    return out


def _copy(bundle_set, tmp_path):
    target = tmp_path / "set"
    shutil.copytree(bundle_set, target)
    return target


def _edit_manifest(directory, edit) -> None:
    path = directory / BUNDLE_SET_MANIFEST
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_export_writes_one_bundle_per_beta_and_the_server_set_decodes_them(bundle_set, demo_images) -> None:
    assert is_bundle_set(bundle_set) and not is_bundle_set(bundle_set / "beta1.28")
    assert [(d.name, beta) for d, beta, _ in read_bundle_set(bundle_set)] == [("beta1.28", 1.28),
                                                                             ("beta10.24", 10.24)]
    robot = load_robot_encoder_set(bundle_set, "int8")
    assert isinstance(robot, EncoderSet) and all(isinstance(e, RobotEncoder) for e in robot.encoders)
    server = load_model_set(DEMO_SET)
    assert robot.betas == (1.28, 10.24)
    assert [e.model_hash for e in robot.encoders] == [m.model_hash for m in server.models]
    images = demo_images[:3]
    small, large = robot.encode_at(1, images), robot.encode_at(0, images)
    assert [p.model_hash for p in large] == [robot.encoders[0].model_hash] * 3
    assert sum(p.nbytes for p in small) < sum(p.nbytes for p in large)  # the point of a set: fewer bytes
    results = server.infer([p.to_bytes() for p in small + large], tasks=("classification",))
    assert all(r.classification is not None for r in results)
    assert robot.encode(images[:1]) == large[:1]  # a set used with a fixed beta: the most accurate


@pytest.mark.parametrize("edit,error,match", [
    (lambda d: d["bundles"][0].update(dir="../beta1.28"), ModelSetError, "folder name"),
    (lambda d: d["bundles"][0].update(dir="/etc"), ModelSetError, "folder name"),
    (lambda d: d["bundles"][0].update(model_hash="00" * 16), BundleMismatchError, "hash"),
    (lambda d: d["bundles"][0].update(beta=2.0), ModelSetError, "beta"),
    (lambda d: d["bundles"][0].update(beta=float("nan")), ModelSetError, "finite"),
    (lambda d: d["bundles"][0].update(extra=1), ModelSetError, "exactly"),
    (lambda d: d["bundles"].append(dict(d["bundles"][0])), DuplicateBetaError, "twice"),
    (lambda d: d["bundles"].extend([d["bundles"][0]] * 20), ModelSetError, "at most"),
    (lambda d: d.update(bundles=[]), ModelSetError, "non-empty"),
    (lambda d: d.update(format="ladon-model-set"), ModelSetError, "not a ladon-robot-bundle-set"),
    (lambda d: d.update(format_version=2), ModelSetError, "not supported"),
])
def test_bad_set_manifests_are_typed_errors(bundle_set, tmp_path, edit, error, match) -> None:
    target = _copy(bundle_set, tmp_path)
    _edit_manifest(target, edit)
    with pytest.raises(error, match=match) as info:
        load_robot_encoder_set(target, "fp32")
    assert isinstance(info.value, LadonError)


def test_members_with_other_preprocessing_are_refused(bundle_set, tmp_path) -> None:
    target = _copy(bundle_set, tmp_path)
    manifest = target / "beta10.24" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["preprocess"]["input_size"] = 224  # the manifest itself is not hashed; the set check must catch it
    manifest.write_text(json.dumps(doc))
    with pytest.raises(SetMismatchError, match="preprocessing"):
        load_robot_encoder_set(target, "fp32")


def test_not_a_set_and_unreadable_manifests(bundle_set, tmp_path) -> None:
    with pytest.raises(ModelSetError, match="not a bundle set"):
        read_bundle_set(bundle_set / "beta1.28")
    target = _copy(bundle_set, tmp_path)
    (target / BUNDLE_SET_MANIFEST).write_bytes(b"{not json")
    with pytest.raises(ModelSetError, match="cannot read"):
        read_bundle_set(target)
    (target / BUNDLE_SET_MANIFEST).write_bytes(b" " * (1 << 17))
    with pytest.raises(ModelSetError, match="exceeds"):
        read_bundle_set(target)


def test_the_set_adapts_in_the_robot_runtime_without_torch(bundle_set) -> None:
    """The same code path the encoder node takes (rate controller + set) in a process with torch blocked."""
    import subprocess
    import sys

    code = f"""
import sys
sys.modules["torch"] = None
sys.modules["compressai"] = None
import numpy as np
from ladon.rate_control import RateController
from ladon_robot.encoder_set import load_robot_encoder_set
robot = load_robot_encoder_set({str(bundle_set)!r}, "int8")
ctl = RateController(robot.betas)
rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
sizes = [robot.encode_at(level, [rgb])[0].nbytes for level in range(len(robot))]
print(sizes, ctl.choose(0.0).level, sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "compressai")
                                           and sys.modules[m] is not None))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    line = out.stdout.strip().splitlines()[-1]
    sizes = json.loads(line[:line.index("]") + 1])
    assert sizes[0] > sizes[1] > 0 and line.endswith("0 []")


def test_mixed_runtimes_in_one_set_share_the_checks(bundle_set) -> None:
    """EncoderSet's checks do not depend on the runtime: a torch and an ONNX member of the same beta collide."""
    from ladon.model import load_encoder

    torch_member = load_encoder(project_dir("models") / "demo.pt")
    onnx_member = RobotEncoder(bundle_set / "beta1.28", "fp32")
    with pytest.raises(DuplicateBetaError):
        EncoderSet([torch_member, onnx_member])
    rgb = np.zeros((60, 80, 3), np.uint8)
    assert torch_member.encode([rgb])[0].latent_shape == onnx_member.encode_packets([rgb])[0].latent_shape

"""`ladon export-encoder`: the robot bundle's files, manifest and digests; the ONNX graph equals the torch encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from ladon.assets import bundled_shapes_dir, project_dir  # noqa: E402
from ladon.cli import main  # noqa: E402
from ladon.errors import BundleError  # noqa: E402
from ladon.export import exportable_analysis, sha256_file  # noqa: E402
from ladon.image_io import read_image  # noqa: E402
from ladon.model import load_encoder  # noqa: E402
from ladon.preprocess import preprocess  # noqa: E402

DEMO_MODEL = project_dir("models") / "demo.pt"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "bundle"
    images = [str(p) for p in sorted(bundled_shapes_dir().glob("*.png"))[:4]]
    assert main(["export-encoder", str(DEMO_MODEL), "-o", str(out), "--calibration-images", *images]) == 0
    return out


def test_manifest_describes_the_model_and_every_file(exported) -> None:
    encoder = load_encoder(DEMO_MODEL)
    m = json.loads((exported / "manifest.json").read_text())
    assert m["format"] == "ladon-robot-bundle" and m["format_version"] == 1
    assert (m["model_id"], m["model_hash"], m["beta"]) == (encoder.model_id, encoder.model_hash.hex(), encoder.beta)
    assert m["latent_channels"] == encoder.num_bottleneck_channels and m["codec_version"] == 1
    assert m["preprocess"]["input_size"] == encoder.preprocess_config.input_size
    assert m["input"] == {"dynamic": True}
    assert len(m["calibration"]["images"]) == 4
    assert m["check"]["images"] == 4 and m["check"]["fp32_symbols_equal_to_torch"] >= 0.999
    assert m["check"]["int8_symbols_equal_to_torch"] >= 0.9
    assert set(m["files"]) == {"encoder_fp32.onnx", "encoder_int8.onnx", "entropy.npz"}
    for name, info in m["files"].items():
        assert info == {"sha256": sha256_file(exported / name), "bytes": (exported / name).stat().st_size}
    eb = encoder.entropy_bottleneck
    with np.load(exported / "entropy.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["quantized_cdf"], eb._quantized_cdf.numpy())
        np.testing.assert_array_equal(npz["cdf_length"], eb._cdf_length.numpy())
        np.testing.assert_array_equal(npz["offset"], eb._offset.numpy())
        np.testing.assert_array_equal(npz["medians"], eb.quantiles[:, 0, 1].detach().numpy())
    # int8 weights: the quantised file is much smaller than the fp32 one.
    assert m["files"]["encoder_int8.onnx"]["bytes"] < 0.6 * m["files"]["encoder_fp32.onnx"]["bytes"]


def test_folded_gdn_is_bit_identical_and_onnx_fp32_is_close(exported) -> None:
    encoder = load_encoder(DEMO_MODEL)
    folded = exportable_analysis(encoder)
    session = ort.InferenceSession(str(exported / "encoder_fp32.onnx"), providers=["CPUExecutionProvider"])
    for path in sorted(bundled_shapes_dir().glob("*.png"))[:2]:
        x, _ = preprocess(read_image(path), encoder.preprocess_config)
        with torch.no_grad():
            expected = encoder.analysis(x)
            assert torch.equal(folded(x), expected)
        (got,) = session.run(None, {"image": x.numpy()})
        np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-4)
    # dynamic size: a non-square padded input works too
    x = torch.zeros(1, 3, 96, 160)
    assert session.run(None, {"image": x.numpy()})[0].shape == tuple(encoder.analysis(x).shape)


def test_refuses_non_empty_output_and_bad_options(exported, tmp_path, capsys) -> None:
    assert main(["export-encoder", str(DEMO_MODEL), "-o", str(exported)]) == 2
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(BundleError, match="calibration method"):
        from ladon.export import export_encoder

        export_encoder(load_encoder(DEMO_MODEL), tmp_path / "x", calibration_method="magic")
    assert main(["export-encoder", str(DEMO_MODEL), "-o", str(tmp_path / "y"), "--fixed-size", "0x3"]) == 2

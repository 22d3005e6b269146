"""Robot bundles of the bundled demo models, exported once per test session."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory):
    """Bundle of models/demo.pt (dynamic input size), calibrated on the bundled images."""
    from ladon.assets import project_dir
    from ladon.export import export_encoder
    from ladon.model import load_encoder

    out = tmp_path_factory.mktemp("bundle") / "demo"
    export_encoder(load_encoder(project_dir("models") / "demo.pt"), out)
    return out


@pytest.fixture(scope="session")
def demo_images():
    from ladon.assets import bundled_images_dir, bundled_shapes_dir
    from ladon.image_io import read_image

    paths = sorted(bundled_shapes_dir().glob("*.png")) + sorted(bundled_images_dir().glob("*"))
    return [read_image(p) for p in paths]

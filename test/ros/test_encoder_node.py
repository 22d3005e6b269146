"""ladon_encoder node in-process: lazy input, packets equal ``encoder.encode``, bad frames counted, limits."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from ladon_msgs.msg import CompressedFeatures
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

import ladon
from ladon.errors import LadonError
from ladon_encoder_node.node import LadonEncoderNode
from ladon_ros.conversions import array_to_image_msg, msg_to_packet

SIZE = (48, 64)
MODEL_ID = "tiny-encoder-test"
BETA = 0.25
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
_namespaces = (f"/enc{i}" for i in itertools.count())


@dataclasses.dataclass
class Files:
    model: ladon.LadonModel
    full: Path
    encoder_only: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    model = ladon.build_model("resnet18", num_bottleneck_channels=8, seed=0, beta=BETA, model_id=MODEL_ID,
                              preprocess=ladon.PreprocessConfig(input_size=128))
    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "tiny.pt")
    model.save_encoder(folder / "tiny_encoder.pt")
    return Files(model, folder / "tiny.pt", folder / "tiny_encoder.pt")


def _header(n: int) -> Header:
    h = Header(frame_id=f"cam{n}")
    h.stamp.sec, h.stamp.nanosec = divmod(time.time_ns(), 10**9)
    return h


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*SIZE, 3), dtype=np.uint8)


class Harness:
    """One encoder node in its own namespace, plus a client node that feeds it and listens."""

    def __init__(self, ros_context, model_path: Path, **params) -> None:
        self.ns = next(_namespaces)
        overrides = {"model": str(model_path), "torch_threads": 1, "diagnostics_period": 0.2,
                     "input_qos.reliability": "reliable", **params}
        self.node = LadonEncoderNode(context=ros_context, namespace=self.ns,
                                     parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        self.client = Node("encoder_test_client", namespace=self.ns, context=ros_context)
        self.executor = SingleThreadedExecutor(context=ros_context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self.features: list[CompressedFeatures] = []
        self.features_sub = None
        self.image_pub = self.client.create_publisher(Image, "image", RELIABLE)
        self.compressed_pub = self.client.create_publisher(CompressedImage, "image/compressed", RELIABLE)

    def listen(self) -> None:
        self.features_sub = self.client.create_subscription(CompressedFeatures, "ladon/features",
                                                            self.features.append, RELIABLE)

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            self.executor.spin_once(timeout_sec=0.02)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def publish(self, msg: Image | CompressedImage) -> None:
        """Publish once the encoder's (lazy) image subscription is matched."""
        pub = self.image_pub if isinstance(msg, Image) else self.compressed_pub
        self.spin_until(lambda: pub.get_subscription_count() > 0)
        pub.publish(msg)

    def handled(self) -> int:
        """Frames the node has dealt with: published, rejected, dropped or skipped."""
        c = self.node.stats.counters
        return c["frames"] + c["rejected_images"] + c["dropped_oversize"] + c["skipped_rate"]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.client.destroy_node()


@pytest.fixture
def harness(ros_context, files, request):
    """A started Harness; parametrize indirectly with (model kind, params) to change it."""
    kind, params = getattr(request, "param", ("full", {}))
    h = Harness(ros_context, files.full if kind == "full" else files.encoder_only, **params)
    yield h
    h.close()


def test_image_subscription_exists_only_while_features_are_subscribed(harness):
    h = harness
    h.spin_for(0.5)
    assert h.node.subscription is None
    assert h.image_pub.get_subscription_count() == 0
    h.listen()
    h.spin_until(lambda: h.node.subscription is not None)
    h.spin_until(lambda: h.image_pub.get_subscription_count() == 1)
    assert h.node.subscription.topic_name == f"{h.ns}/image"
    h.client.destroy_subscription(h.features_sub)
    h.spin_until(lambda: h.node.subscription is None)
    h.spin_until(lambda: h.image_pub.get_subscription_count() == 0)


@pytest.mark.parametrize("harness", [("full", {}), ("encoder_only", {})], indirect=True,
                         ids=["full_model", "encoder_only_file"])
def test_published_packet_equals_encoder_encode(harness, files):
    h = harness
    assert h.node.encoder.model_hash == files.model.encoder.model_hash
    h.listen()
    rgb = _rgb(0)
    header = _header(1)
    h.publish(array_to_image_msg(rgb, "rgb8", header))
    h.spin_until(lambda: h.features)
    (msg,) = h.features
    assert msg.header == header
    assert msg.encode_time_ms > 0
    assert msg_to_packet(msg) == files.model.encoder.encode([rgb])[0]
    assert msg.model_id == MODEL_ID and msg.beta == pytest.approx(BETA)


def test_other_encodings_are_converted_before_encoding(harness, files):
    h = harness
    h.listen()
    rgb = _rgb(1)
    gray = rgb[:, :, 1]
    rgba = np.concatenate([rgb, np.full((*SIZE, 1), 99, np.uint8)], axis=2)
    rgba_msg = array_to_image_msg(rgba, "rgba8", _header(12))
    inputs = [(array_to_image_msg(rgb[:, :, ::-1], "bgr8", _header(10)), rgb),
              (array_to_image_msg(gray, "mono8", _header(11)), np.repeat(gray[:, :, None], 3, axis=2)),
              (rgba_msg, rgb)]
    for i, (msg, expected_rgb) in enumerate(inputs, start=1):
        h.publish(msg)
        h.spin_until(lambda i=i: len(h.features) == i)
        assert h.features[-1].header == msg.header
        assert msg_to_packet(h.features[-1]) == files.model.encoder.encode([expected_rgb])[0], msg.encoding


@pytest.mark.parametrize("harness", [("full", {"image_transport": "compressed"})], indirect=True)
def test_compressed_transport_encodes_jpeg(harness, files):
    h = harness
    h.listen()
    h.spin_until(lambda: h.node.subscription is not None)
    assert h.node.subscription.topic_name == f"{h.ns}/image/compressed"
    assert h.image_pub.get_subscription_count() == 0
    ok, jpeg = cv2.imencode(".jpg", _rgb(2)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    header = _header(20)
    h.publish(CompressedImage(header=header, format="jpeg", data=jpeg.tobytes()))
    h.spin_until(lambda: h.features)
    assert h.features[0].header == header
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1]
    assert msg_to_packet(h.features[0]) == files.model.encoder.encode([decoded])[0]


def _diagnostic(arrays: list[DiagnosticArray], name: str) -> DiagnosticStatus | None:
    for array in reversed(arrays):
        for status in array.status:
            if status.name == name:
                return status
    return None


def test_bad_images_are_counted_and_the_node_keeps_working(harness, files):
    h = harness
    diagnostics: list[DiagnosticArray] = []
    h.client.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    h.listen()
    bad_encoding = array_to_image_msg(_rgb(3), "rgb8", _header(30))
    bad_encoding.encoding = "nv21"  # not a cv_bridge encoding we convert
    truncated = array_to_image_msg(_rgb(3), "rgb8", _header(31))
    truncated.data = bytes(truncated.data)[:-10]
    huge = array_to_image_msg(_rgb(3), "rgb8", _header(32))
    huge.height = huge.width = 1 << 20  # declares a huge image, carries a small one
    for n, msg in enumerate([bad_encoding, truncated, huge], start=1):
        h.publish(msg)
        h.spin_until(lambda n=n: h.node.stats.counters["rejected_images"] == n)
    assert "data bytes" in h.node.stats.last_error or "exceeds the caps" in h.node.stats.last_error
    assert h.features == []

    rgb = _rgb(4)
    h.publish(array_to_image_msg(rgb, "rgb8", _header(33)))
    h.spin_until(lambda: h.features)
    assert msg_to_packet(h.features[0]) == files.model.encoder.encode([rgb])[0]

    name = f"{h.ns}/ladon_encoder: encoder"
    h.spin_until(lambda: (s := _diagnostic(diagnostics, name)) is not None and
                 {v.key: v.value for v in s.values}.get("frames") == "1")
    status = _diagnostic(diagnostics, name)
    values = {v.key: v.value for v in status.values}
    assert status.level == DiagnosticStatus.WARN and "3 rejected_images" in status.message
    assert status.hardware_id.endswith("/cpu")  # host/device, as the server reports it
    assert values["rejected_images"] == "3"
    assert float(values["bytes_per_frame_mean"]) == msg_to_packet(h.features[0]).nbytes
    assert float(values["encode_ms_mean"]) > 0
    assert float(values["stamp_age_ms_mean"]) >= 0


def test_unstamped_frames_have_no_stamp_age(harness):
    h = harness
    h.listen()
    h.publish(array_to_image_msg(_rgb(5), "rgb8", Header(frame_id="cam")))
    h.spin_until(lambda: h.features)
    assert h.node.stats.counters["frames"] == 1 and len(h.node.stats.ages_s) == 0
    assert h.node.stats.status("n", "h").level == DiagnosticStatus.OK


@pytest.mark.parametrize("harness", [("full", {"max_payload_bytes": 100, "packetization": "single"}),
                                     ("full", {"max_payload_bytes": 100})], indirect=True)
def test_oversize_packets_are_dropped_and_counted(harness):
    """``single``: over max_payload_bytes is dropped; ``auto``: dropped only when even one channel's group packet
    does not fit."""
    h = harness
    h.listen()
    h.publish(array_to_image_msg(_rgb(6), "rgb8", _header(60)))
    h.spin_until(lambda: h.node.stats.counters["dropped_oversize"] == 1)
    h.spin_for(0.3)
    assert h.features == [] and h.node.stats.counters["frames"] == 0
    single = h.node.packetization.packetization == "single"
    assert ("max_payload_bytes 100" if single else "does not fit one packet") in h.node.stats.last_error


@pytest.mark.parametrize("harness", [("full", {"max_payload_bytes": 1200})], indirect=True)
def test_frames_over_max_payload_bytes_are_sent_as_channel_groups(harness, files):
    """``packetization: auto`` (default): a frame whose packet exceeds max_payload_bytes goes out as version-2
    channel groups, each within the limit, that reassemble to the single packet's latent."""
    import torch

    from ladon.bottleneck import assemble_latent, decompress_latent

    h = harness
    h.listen()
    rgb = _rgb(6)
    (single,) = files.model.encoder.encode([rgb])
    assert single.nbytes > 1200
    h.publish(array_to_image_msg(rgb, "rgb8", _header(61)))
    h.spin_until(lambda: h.node.stats.counters["frames"] == 1)
    h.spin_until(lambda: len(h.features) == h.node.stats.counters["group_packets"])
    packets = [msg_to_packet(m) for m in h.features]
    assert len(packets) >= 2 and all(p.group is not None and p.nbytes <= 1200 for p in packets)
    assert {p.group.frame_id for p in packets} == {packets[0].group.frame_id}
    assert h.node.stats.counters["frames_grouped"] == 1 and h.node.stats.counters["dropped_oversize"] == 0
    eb = files.model.encoder.entropy_bottleneck
    latent = assemble_latent(eb, [(p.group.channel_start, p.group.channel_stop, p.data) for p in packets],
                             single.latent_shape)
    assert torch.equal(latent, decompress_latent(eb, single.data, single.latent_shape))


@pytest.mark.parametrize("harness", [("full", {"max_rate_hz": 0.2})], indirect=True)
def test_max_rate_skips_frames(harness):
    h = harness
    h.listen()
    for n in range(3):
        h.publish(array_to_image_msg(_rgb(7), "rgb8", _header(70 + n)))
    h.spin_until(lambda: h.handled() == 3)
    assert h.node.stats.counters["frames"] == 1 and h.node.stats.counters["skipped_rate"] == 2
    h.spin_until(lambda: h.features)
    assert h.features[0].header.frame_id == "cam70"


@pytest.mark.parametrize(("params", "match"), [
    ({"beta": 0.5}, r"parameter beta expects 0\.5"),
    ({"model_id": "another-model"}, r"parameter model_id expects 'another-model'"),
    ({"image_transport": "theora"}, "image_transport"),
])
def test_identity_mismatch_or_bad_transport_fails_at_construction(ros_context, files, params, match):
    overrides = [Parameter("model", value=str(files.encoder_only)), *(Parameter(k, value=v) for k, v in
                                                                        params.items())]
    with pytest.raises(LadonError, match=match):
        LadonEncoderNode(context=ros_context, parameter_overrides=overrides)


def test_matching_identity_is_accepted(ros_context, files):
    node = LadonEncoderNode(context=ros_context, parameter_overrides=[
        Parameter("model", value=str(files.encoder_only)), Parameter("beta", value=BETA),
        Parameter("model_id", value=MODEL_ID)])
    try:
        assert node.encoder.model_id == MODEL_ID and node.encoder.random_weights  # the file says so
    finally:
        node.destroy_node()


def test_missing_model_without_random_weights_raises(ros_context, tmp_path):
    with pytest.raises(LadonError, match="'model' is required"):
        LadonEncoderNode(context=ros_context)
    with pytest.raises(LadonError, match="not found"):
        LadonEncoderNode(context=ros_context, parameter_overrides=[Parameter("model", value=str(tmp_path / "x.pt"))])

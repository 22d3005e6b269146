"""Application-level authentication over ROS: the encoder node signs (over real DDS), the message carries the
trailer, and the server-side helper (``ladon_ros.auth.FeaturesAuthenticator``) accepts and rejects."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from ladon_msgs.msg import CompressedFeatures
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

import ladon
import ladon.geometry
from ladon.auth import Signer, generate_key_file
from ladon.errors import KeyFileError, MissingTagError, PacketError, TagMismatchError, UnknownKeyError
from ladon.features_message import AUTH_CODEC_BIT
from ladon_encoder_node.node import LadonEncoderNode
from ladon_ros.auth import FeaturesAuthenticator, declare_signer, declare_verifier, robot_key_id
from ladon_ros.conversions import array_to_image_msg, msg_to_packet, packet_to_msg

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
_ids = itertools.count()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = ladon.build_model("resnet18", num_bottleneck_channels=8, seed=0, beta=0.25, model_id="auth-test",
                              preprocess=ladon.PreprocessConfig(input_size=96))
    folder = tmp_path_factory.mktemp("auth")
    model.save_encoder(folder / "enc.pt")
    keys = folder / "keys"
    keys.mkdir(mode=0o700)
    generate_key_file(keys / "robot1.key")
    generate_key_file(keys / "robot2.key")
    return model, folder / "enc.pt", keys


def _rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def _features_from_encoder_node(ros_context, model_path: Path, ns: str, **params) -> CompressedFeatures:
    """Start an encoder node in ``ns``, feed it one frame over DDS, return the features message it publishes."""
    overrides = {"model": str(model_path), "torch_threads": 1, "input_qos.reliability": "reliable", **params}
    node = LadonEncoderNode(context=ros_context, namespace=ns,
                            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    client = Node(f"auth_client_{next(_ids)}", namespace=ns, context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(client)
    got: list[CompressedFeatures] = []
    try:
        client.create_subscription(CompressedFeatures, "ladon/features", got.append, RELIABLE)
        pub = client.create_publisher(Image, "image", RELIABLE)
        deadline = time.monotonic() + 20
        while pub.get_subscription_count() == 0:
            assert time.monotonic() < deadline, "encoder never subscribed to its input"
            executor.spin_once(timeout_sec=0.02)
        pub.publish(array_to_image_msg(_rgb(), "rgb8", Header(frame_id="cam")))
        while not got:
            assert time.monotonic() < deadline, "no features received"
            executor.spin_once(timeout_sec=0.02)
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()
    return got[0]


def test_encoder_node_signs_every_packet_over_dds(ros_context, setup):
    model, enc, keys = setup
    msg = _features_from_encoder_node(ros_context, enc, "/robot1", **{"auth.key_file": str(keys / "robot1.key")})
    assert msg.codec_version & AUTH_CODEC_BIT
    packet = msg_to_packet(msg)
    assert packet.key_id == "robot1"
    (expected,) = model.encoder.encode([_rgb()])
    assert packet.without_tag() == expected  # signing changes nothing but the trailer
    auth = FeaturesAuthenticator(ladon.auth.Verifier.from_dir(keys))
    assert auth.check("/robot1", packet) == packet
    with pytest.raises(UnknownKeyError, match="not allowed"):  # robot1's key on robot2's topic
        auth.check("/robot2", packet)
    assert FeaturesAuthenticator(auth.verifier, bind_robot=False).check("/robot2", packet) == packet
    # a forger on the domain edits a field and recomputes the message's CRC field (keeping key id and tag)
    for change in ({"beta": packet.beta * 2}, {"data": bytes(len(packet.data))},
                   {"geometry": ladon.geometry.Geometry((4000, 4000), packet.geometry.resized_size,
                                                        packet.geometry.padded_size)}):
        forged = msg_to_packet(packet_to_msg(dataclasses.replace(packet, **change), msg.header))
        with pytest.raises(TagMismatchError):
            auth.check("/robot1", forged)


def test_encoder_node_without_key_sends_untagged_packets(ros_context, setup):
    _, enc, keys = setup
    msg = _features_from_encoder_node(ros_context, enc, "/robot2")
    assert not msg.codec_version & AUTH_CODEC_BIT
    with pytest.raises(MissingTagError):
        FeaturesAuthenticator(ladon.auth.Verifier.from_dir(keys)).check("/robot2", msg_to_packet(msg))


def test_signed_message_round_trip_and_malformed_trailers(setup):
    model, _, keys = setup
    (packet,) = model.encoder.encode([_rgb()])
    signed = Signer.from_file(keys / "robot1.key").sign(packet)
    msg = packet_to_msg(signed, Header())
    assert msg_to_packet(msg) == signed
    assert msg_to_packet(packet_to_msg(packet, Header())) == packet  # unsigned messages unchanged
    data = bytes(msg.data)
    for bad in (b"", b"\x00" + data[1:], b"\x21" + data[1:], data[:20], b"\x02\xff\xfe" + data[3:]):
        msg.data = bad
        with pytest.raises(PacketError):
            msg_to_packet(msg)


def test_node_parameters(ros_context, setup, tmp_path):
    _, _, keys = setup
    plain = Node("auth_params_off", context=ros_context)
    assert declare_signer(plain) is None and declare_verifier(plain) is None
    plain.destroy_node()
    node = Node("auth_params_on", context=ros_context, parameter_overrides=[
        Parameter("auth.key_file", value=str(keys / "robot2.key")), Parameter("auth.key_id", value="other"),
        Parameter("auth.keys_dir", value=str(keys)), Parameter("auth.required", value=False)])
    try:
        assert declare_signer(node).key_id == "other"
        auth = declare_verifier(node)
        assert auth.verifier.key_ids == {"robot1", "robot2"} and not auth.verifier.required
    finally:
        node.destroy_node()
    loose = tmp_path / "loose.key"
    loose.write_text("ab" * 32)
    loose.chmod(0o644)
    node = Node("auth_params_bad", context=ros_context, parameter_overrides=[
        Parameter("auth.key_file", value=str(loose))])
    try:
        with pytest.raises(KeyFileError):
            declare_signer(node)
    finally:
        node.destroy_node()
    assert robot_key_id("/fleet/robot1") == "fleet.robot1" and robot_key_id("/") is None

"""ladon_encoder with ``runtime: onnxruntime``: a robot bundle instead of a model file, and no torch needed."""

from __future__ import annotations

import os
import subprocess
import sys
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

pytest.importorskip("onnxruntime")

import ladon
from ladon.errors import LadonError
from ladon_encoder_node.node import LadonEncoderNode
from ladon_robot import RobotEncoder
from ladon_ros.conversions import array_to_image_msg, msg_to_packet

REPO = Path(__file__).resolve().parents[2]
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
MODEL_ID = "tiny-robot-bundle-test"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from ladon.export import export_encoder

    model = ladon.build_model("resnet18", num_bottleneck_channels=8, seed=0, beta=0.5, model_id=MODEL_ID,
                              preprocess=ladon.PreprocessConfig(input_size=128))
    bundle = tmp_path_factory.mktemp("bundle") / "tiny"
    export_encoder(model.encoder, bundle,
                   calibration_images=sorted((REPO / "ladon" / "assets" / "shapes").glob("*.png"))[:2])
    return model, bundle


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """Two tiny models (beta 0.5 and 4) saved as files and exported as a bundle set (ladon.export)."""
    from ladon.export import export_encoder_set

    folder = tmp_path_factory.mktemp("tiny_set")
    files = []
    for seed, beta in ((0, 0.5), (1, 4.0)):
        model = ladon.build_model("resnet18", num_bottleneck_channels=8, seed=seed, beta=beta,
                                  model_id=f"tiny-set-{beta:g}", preprocess=ladon.PreprocessConfig(input_size=128))
        model.save(folder / f"tiny_{beta:g}.pt")
        files.append(folder / f"tiny_{beta:g}.pt")
    export_encoder_set(files, folder / "bundles",
                       calibration_images=sorted((REPO / "ladon" / "assets" / "shapes").glob("*.png"))[:2])
    return folder / "bundles"


def _node(ros_context, **params) -> LadonEncoderNode:
    overrides = {"diagnostics_period": 0.2, "input_qos.reliability": "reliable", **params}
    return LadonEncoderNode(context=ros_context, namespace="/robot_rt",
                            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


def test_bundle_runtime_publishes_packets_the_server_decodes(ros_context, tiny) -> None:
    model, bundle = tiny
    node = _node(ros_context, bundle=str(bundle), model_id=MODEL_ID)
    client = Node("robot_rt_client", namespace="/robot_rt", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(client)
    try:
        assert isinstance(node.encoder, RobotEncoder) and node.encoder.precision == "int8"
        received: list[CompressedFeatures] = []
        client.create_subscription(CompressedFeatures, "ladon/features", received.append, RELIABLE)
        pub = client.create_publisher(Image, "image", RELIABLE)
        rgb = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        deadline = time.monotonic() + 15
        while pub.get_subscription_count() == 0:
            assert time.monotonic() < deadline, "encoder never subscribed"
            executor.spin_once(timeout_sec=0.02)
        pub.publish(array_to_image_msg(rgb, "rgb8", Header(frame_id="cam")))
        while not received:
            assert time.monotonic() < deadline, "no features published"
            executor.spin_once(timeout_sec=0.02)
        packet = msg_to_packet(received[0])
        assert packet == RobotEncoder(bundle, "int8").encode_packets([rgb])[0]
        assert packet.model_hash == model.encoder.model_hash
        (result,) = model.server.infer([packet.to_bytes()], tasks=("classification",))
        assert result.classification is not None
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()


def test_a_bundle_set_adapts_beta_from_the_acknowledgements(ros_context, tiny_set) -> None:
    """bundle:=<set folder>: an EncoderSet of RobotEncoders with the rate controller; it publishes at the most
    accurate beta and learns from the server's acknowledgements over DDS."""
    from sensor_msgs.msg import TimeReference

    from ladon.model_set import EncoderSet
    from ladon_ros import topics
    from ladon_ros.rate_adaptation import ACK_QOS

    node = _node(ros_context, bundle=str(tiny_set), beta=4.0)  # beta names a member: accepted
    client = Node("robot_set_client", namespace="/robot_rt", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(client)
    try:
        assert isinstance(node.encoder, EncoderSet) and node.encoder.betas == (0.5, 4.0)
        assert all(isinstance(e, RobotEncoder) for e in node.encoder.encoders) and node.adaptive is not None
        received: list[CompressedFeatures] = []
        client.create_subscription(CompressedFeatures, "ladon/features", received.append, RELIABLE)
        acks = client.create_publisher(TimeReference, topics.FEATURES_ACK, ACK_QOS)
        pub = client.create_publisher(Image, "image", RELIABLE)
        rgb = np.random.default_rng(2).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        deadline = time.monotonic() + 15
        while pub.get_subscription_count() == 0 or acks.get_subscription_count() == 0:
            assert time.monotonic() < deadline, "encoder never subscribed"
            executor.spin_once(timeout_sec=0.02)
        pub.publish(array_to_image_msg(rgb, "rgb8", Header(frame_id="cam")))
        while not received:
            assert time.monotonic() < deadline, "no features published"
            executor.spin_once(timeout_sec=0.02)
        packet = msg_to_packet(received[0])
        assert packet.beta == 0.5 and packet.model_hash == node.encoder.encoders[0].model_hash
        acks.publish(TimeReference(header=received[0].header, source=packet.model_hash.hex()))
        while node.adaptive.controller.acks == 0:
            assert time.monotonic() < deadline, "the acknowledgement never reached the controller"
            executor.spin_once(timeout_sec=0.02)
        values = {kv.key: kv.value for kv in node.adaptive.diagnostic_values()}
        assert values["rate_control.betas"] == "[0.5, 4.0]" and values["rate_control.acks"] == "1"
    finally:
        executor.shutdown()
        node.destroy_node()
        client.destroy_node()


def test_a_bundle_set_refuses_a_beta_it_does_not_hold(ros_context, tiny_set) -> None:
    with pytest.raises(LadonError, match="betas"):
        _node(ros_context, bundle=str(tiny_set), beta=2.0)


@pytest.mark.parametrize("params,match", [
    ({"runtime": "torch", "bundle": "BUNDLE"}, "runtime is 'torch'"),
    ({"runtime": "onnxruntime"}, "needs parameter 'bundle'"),
    ({"runtime": "tensorrt", "bundle": "BUNDLE"}, "runtime must be"),
    ({"bundle": "BUNDLE", "model_id": "another-model"}, "another-model"),
    ({"bundle": "BUNDLE", "bundle_precision": "fp16"}, "precision"),
])
def test_bad_runtime_parameters_fail_fast(ros_context, tiny, params, match) -> None:
    params = {k: (str(tiny[1]) if v == "BUNDLE" else v) for k, v in params.items()}
    with pytest.raises(LadonError, match=match):
        _node(ros_context, **params)


def test_bundle_runtime_runs_with_torch_blocked(tiny) -> None:
    code = f"""
import sys
sys.modules["torch"] = None
sys.modules["compressai"] = None
import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter
from ladon_encoder_node.node import LadonEncoderNode
ctx = Context()
rclpy.init(context=ctx)
node = LadonEncoderNode(context=ctx, parameter_overrides=[Parameter("bundle", value={str(tiny[1])!r})])
(packet,) = node._encode([np.zeros((64, 64, 3), np.uint8)])
print(packet.nbytes, sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "compressai", "torchvision")
                            and sys.modules[m] is not None))
node.destroy_node()
rclpy.try_shutdown(context=ctx)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    nbytes, loaded = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(nbytes) > 55 and loaded == "[]"


def test_torch_free_encoder_process_over_dds(tiny, tmp_path) -> None:
    """The encoder node in its own process (torch and compressai blocked) -> real DDS -> this process decodes."""
    import signal

    import rclpy
    from rclpy.context import Context

    model, bundle = tiny
    domain = 156 + os.getpid() % 4  # this project's test domains are 150-159
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = ("import sys\nsys.modules['torch'] = None\nsys.modules['compressai'] = None\n"
            "from ladon_encoder_node.node import main\nsys.exit(main(sys.argv[1:]))")
    log = open(tmp_path / "encoder.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", code, "--ros-args", "-r", "__ns:=/dds_robot",
                             "-p", f"bundle:={bundle}", "-p", "input_qos.reliability:=reliable"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    client = Node("dds_robot_client", namespace="/dds_robot", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client)
    try:
        received: list[CompressedFeatures] = []
        client.create_subscription(CompressedFeatures, "ladon/features", received.append, RELIABLE)
        pub = client.create_publisher(Image, "image", RELIABLE)
        frames = [np.random.default_rng(s).integers(0, 256, (72, 96, 3), dtype=np.uint8) for s in range(3)]
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() == 0:
            assert proc.poll() is None, (tmp_path / "encoder.log").read_text()
            assert time.monotonic() < deadline, "encoder process never subscribed"
            executor.spin_once(timeout_sec=0.05)
        for rgb in frames:
            pub.publish(array_to_image_msg(rgb, "rgb8", Header(frame_id="cam")))
        while len(received) < len(frames):
            assert time.monotonic() < deadline, f"got {len(received)} of {len(frames)} packets"
            executor.spin_once(timeout_sec=0.05)
        local = RobotEncoder(bundle, "int8")
        packets = [msg_to_packet(m) for m in received]
        assert packets == [local.encode_packets([rgb])[0] for rgb in frames]
        results = model.server.infer([p.to_bytes() for p in packets], tasks=("classification",))
        assert all(r.classification is not None for r in results)
    finally:
        executor.shutdown()
        client.destroy_node()
        rclpy.try_shutdown(context=context)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

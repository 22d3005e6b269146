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

"""One source for Humble, Jazzy and Kilted: the Humble module layout is simulated in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from ladon_ros import compat

HUMBLE = textwrap.dedent("""
    import sys, types
    import rclpy.event_handler as real
    import rclpy.executors, rclpy.node, rclpy.publisher, rclpy.qos, rclpy.time  # rclpy's own internals stay real
    import rclpy.lifecycle, rclpy.qos_overriding_options  # (both exist on Humble too)

    class PublisherEventCallbacks(real.PublisherEventCallbacks):  # Humble's signature: no `matched`
        def __init__(self, *, deadline=None, liveliness=None, incompatible_qos=None, use_default_callbacks=True):
            super().__init__(deadline=deadline, liveliness=liveliness, incompatible_qos=incompatible_qos,
                             use_default_callbacks=use_default_callbacks)

    qos_event = types.ModuleType("rclpy.qos_event")
    qos_event.PublisherEventCallbacks = PublisherEventCallbacks
    qos_event.SubscriptionEventCallbacks = real.SubscriptionEventCallbacks
    sys.modules["rclpy.qos_event"] = qos_event
    sys.modules["rclpy.event_handler"] = None  # Humble has no rclpy.event_handler
    for name in [m for m in sys.modules if m.startswith("ladon_ros") or m.startswith("ladon_encoder_node")]:
        del sys.modules[name]

    from ladon_ros import compat
    assert compat.HAS_MATCHED_EVENT is False
    assert compat.PublisherEventCallbacks is PublisherEventCallbacks
    import ladon_encoder_node.node, ladon_server_node.node  # the nodes import through the shim
    import ladon_ros.image_source, ladon_ros.launcher, ladon_ros.recorder, ladon_ros.demo, ladon_ros.overlay_input
    print("humble-ok")
""")

HUMBLE_RUN = HUMBLE.replace('print("humble-ok")', textwrap.dedent("""
    # Without the matched event the encoder polls its subscriber count: lazy input still works.
    import time
    import rclpy
    from ladon_msgs.msg import CompressedFeatures
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    rclpy.init()
    node = ladon_encoder_node.node.LadonEncoderNode(namespace="/humble", parameter_overrides=[
        Parameter("model", value=sys.argv[1])])
    assert node._poll_timer is not None and node.subscription is None
    client = rclpy.create_node("humble_client")
    client.create_subscription(CompressedFeatures, "/humble/ladon/features", lambda m: None, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(client)
    deadline = time.monotonic() + 60
    while node.subscription is None and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    assert node.subscription is not None, "no image subscription by polling"

    # The server's lazy overlay camera input polls too.
    from sensor_msgs.msg import Image
    server = ladon_server_node.node.LadonServerNode(namespace="/humble_edge", parameter_overrides=[
        Parameter("model", value=sys.argv[1]), Parameter("overlay.background", value="image"),
        Parameter("torch_threads", value=1)])
    executor.add_node(server)
    camera = server.robots[0].camera
    assert not camera.subscribed
    client.create_subscription(Image, "/humble_edge/ladon/overlay", lambda m: None, 10)
    deadline = time.monotonic() + 60
    while not camera.subscribed and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    assert camera.subscribed, "no overlay camera subscription by polling"
    print("humble-ok")
"""))


def test_this_distribution_has_the_matched_event() -> None:
    assert compat.HAS_MATCHED_EVENT  # Kilted wheels here


def test_the_nodes_import_with_humbles_module_layout() -> None:
    proc = subprocess.run([sys.executable, "-c", HUMBLE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("humble-ok")


def test_the_nodes_run_lazily_by_polling_with_humbles_layout(tiny_model_file) -> None:
    proc = subprocess.run([sys.executable, "-c", HUMBLE_RUN, str(tiny_model_file)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("humble-ok")

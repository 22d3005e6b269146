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

    class PublisherEventCallbacks:  # Humble's signature: no `matched`
        def __init__(self, *, deadline=None, liveliness=None, incompatible_qos=None, use_default_callbacks=True):
            self.incompatible_qos = incompatible_qos

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
    print("humble-ok")
""")


def test_this_distribution_has_the_matched_event() -> None:
    assert compat.HAS_MATCHED_EVENT  # Kilted wheels here


def test_the_nodes_import_with_humbles_module_layout() -> None:
    proc = subprocess.run([sys.executable, "-c", HUMBLE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("humble-ok")

"""ROS 2 tests: localhost-only discovery and a per-process DDS domain, set before rclpy is first imported."""

from __future__ import annotations

import os

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))

import pytest
import rclpy
from rclpy.context import Context


@pytest.fixture(scope="module")
def ros_context():
    """A fresh rclpy context for one test module (shut down afterwards)."""
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)

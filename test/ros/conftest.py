"""ROS 2 tests: localhost-only discovery and a per-process DDS domain, set before rclpy is first imported."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the test modules import _dds_harness (shared node processes)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))

import time
from collections.abc import Callable

import pytest
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter


@pytest.fixture(scope="module")
def ros_context():
    """A fresh rclpy context for one test module (shut down afterwards)."""
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


class Graph:
    """A client node: service calls, graph queries and subscriptions, spun by one executor."""

    def __init__(self, context) -> None:
        self.node = Node("ladon_lifecycle_test", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, srv_type, name: str, request, timeout: float = 60.0):
        client = self.node.create_client(srv_type, name)
        try:
            self.spin_until(lambda: client.service_is_ready(), timeout, f"service {name}")
            future = client.call_async(request)
            self.spin_until(future.done, timeout, f"reply from {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def state(self, node: str) -> int:
        return self.call(GetState, f"{node}/get_state", GetState.Request()).current_state.id

    def transition(self, node: str, transition: int) -> bool:
        return self.call(ChangeState, f"{node}/change_state",
                         ChangeState.Request(transition=Transition(id=transition))).success

    def set_parameter(self, node: str, name: str, value) -> tuple[bool, str]:
        param = Parameter(name, value=value).to_parameter_msg()
        result = self.call(SetParameters, f"{node}/set_parameters",
                           SetParameters.Request(parameters=[ParameterMsg(name=param.name, value=param.value)]))
        return result.results[0].successful, result.results[0].reason

    def subscribers(self, topic: str) -> int:
        return self.node.count_subscribers(topic)

    def publishers(self, topic: str) -> int:
        return self.node.count_publishers(topic)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def graph(ros_context):
    """A :class:`Graph` client in the module's context."""
    g = Graph(ros_context)
    yield g
    g.close()

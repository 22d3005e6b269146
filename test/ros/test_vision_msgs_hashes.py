"""Wire identity of the message types: installed vision_msgs RIHS01 hashes equal upstream vision_msgs 4.1.1
(/work/shared/reference/ros_toolchain.md §3), the fallback package holds exactly the upstream types, and
ladon_msgs/CompressedFeatures' own hash is pinned so that an accidental wire change is noticed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from ament_index_python.packages import get_package_share_directory
from ladon_msgs.msg import CompressedFeatures
from rclpy.node import Node
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

REPO = Path(__file__).resolve().parents[2]

UPSTREAM_RIHS01 = {
    "Detection2DArray": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "Detection2D": "RIHS01_0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea",
    "ObjectHypothesisWithPose": "RIHS01_41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc",
    "ObjectHypothesis": "RIHS01_51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90",
    "BoundingBox2D": "RIHS01_008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
    "Pose2D": "RIHS01_b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648",
    "Point2D": "RIHS01_eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247",
    "LabelInfo": "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
    "VisionClass": "RIHS01_1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
    "VisionInfo": "RIHS01_95d3116a17484ad91c9a2686e1d54890bbfc3ff6c6a2de137738c4950d45d284",
    "Classification": "RIHS01_f74db28d0eaef3afb78f48bf2161cd709a1383a0309d3454383b25be11345143",
}

UPSTREAM_FIELDS = {  # vision_msgs 4.1.1, ros2 branch (comments are not part of the type)
    "BoundingBox2D": ["vision_msgs/Pose2D center", "float64 size_x", "float64 size_y"],
    "BoundingBox2DArray": ["std_msgs/Header header", "vision_msgs/BoundingBox2D[] boxes"],
    "BoundingBox3D": ["geometry_msgs/Pose center", "geometry_msgs/Vector3 size"],
    "BoundingBox3DArray": ["std_msgs/Header header", "vision_msgs/BoundingBox3D[] boxes"],
    "Classification": ["std_msgs/Header header", "ObjectHypothesis[] results"],
    "Detection2D": ["std_msgs/Header header", "ObjectHypothesisWithPose[] results", "BoundingBox2D bbox",
                    "string id"],
    "Detection2DArray": ["std_msgs/Header header", "Detection2D[] detections"],
    "Detection3D": ["std_msgs/Header header", "ObjectHypothesisWithPose[] results", "BoundingBox3D bbox",
                    "string id"],
    "Detection3DArray": ["std_msgs/Header header", "Detection3D[] detections"],
    "LabelInfo": ["std_msgs/Header header", "vision_msgs/VisionClass[] class_map", "float32 threshold"],
    "ObjectHypothesis": ["string class_id", "float64 score"],
    "ObjectHypothesisWithPose": ["ObjectHypothesis hypothesis", "geometry_msgs/PoseWithCovariance pose"],
    "Point2D": ["float64 x", "float64 y"],
    "Pose2D": ["vision_msgs/Point2D position", "float64 theta"],
    "VisionClass": ["uint16 class_id", "string class_name"],
    "VisionInfo": ["std_msgs/Header header", "string method", "string database_location",
                   "int32 database_version"],
}

COMPRESSED_FEATURES_RIHS01 = "RIHS01_837f364ee5c9aed99fddda42b9057834ca83e23db96c7d2303776ea7b11af97e"
"""Pinned from share/ladon_msgs/msg/CompressedFeatures.json. If this test fails, the message's wire type changed:
old robots and servers no longer match under rmw_zenoh. Bump it deliberately (and say so in the changelog)."""


@pytest.fixture(scope="module", autouse=True)
def ament_prefix_path():
    """Look packages up in this environment's prefix unless AMENT_PREFIX_PATH already says where."""
    previous = os.environ.get("AMENT_PREFIX_PATH")
    if not previous:
        os.environ["AMENT_PREFIX_PATH"] = sys.prefix
    yield
    if not previous:
        os.environ.pop("AMENT_PREFIX_PATH", None)


def _type_hash(package: str, name: str) -> str:
    path = Path(get_package_share_directory(package)) / "msg" / f"{name}.json"
    entry = json.loads(path.read_text())["type_hashes"][0]
    assert entry["type_name"] == f"{package}/msg/{name}"
    return entry["hash_string"]


@pytest.mark.parametrize("name", sorted(UPSTREAM_RIHS01))
def test_installed_vision_msgs_hash_equals_upstream(name):
    assert _type_hash("vision_msgs", name) == UPSTREAM_RIHS01[name]


def test_fallback_package_has_exactly_the_upstream_types():
    files = sorted(p.stem for p in (REPO / "third_party" / "vision_msgs" / "msg").iterdir() if p.suffix == ".msg")
    assert files == sorted(UPSTREAM_FIELDS) and len(files) == 16


@pytest.mark.parametrize("name", sorted(UPSTREAM_FIELDS))
def test_fallback_msg_fields_equal_upstream(name):
    text = (REPO / "third_party" / "vision_msgs" / "msg" / f"{name}.msg").read_text()
    fields = [" ".join(line.split("#", 1)[0].split()) for line in text.splitlines()]
    assert [f for f in fields if f] == UPSTREAM_FIELDS[name]


def test_compressed_features_hash_is_pinned():
    actual = _type_hash("ladon_msgs", "CompressedFeatures")
    print(f"ladon_msgs/msg/CompressedFeatures {actual}")
    assert actual == COMPRESSED_FEATURES_RIHS01


@pytest.mark.parametrize(("msg_type", "expected"), [
    (Detection2DArray, UPSTREAM_RIHS01["Detection2DArray"]),
    (Classification, UPSTREAM_RIHS01["Classification"]),
    (LabelInfo, UPSTREAM_RIHS01["LabelInfo"]),
    (CompressedFeatures, COMPRESSED_FEATURES_RIHS01),
], ids=["Detection2DArray", "Classification", "LabelInfo", "CompressedFeatures"])
def test_loaded_type_support_announces_the_same_hash(ros_context, msg_type, expected):
    """The hash the middleware announces in discovery (from the compiled type support) equals the json's."""
    node = Node("type_hash_check", context=ros_context)
    try:
        topic = f"/type_hash_check/{msg_type.__name__.lower()}"
        node.create_publisher(msg_type, topic, 1)
        (info,) = node.get_publishers_info_by_topic(topic)
        assert str(info.topic_type_hash) == expected
    finally:
        node.destroy_node()

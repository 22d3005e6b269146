"""Foxglove outputs: the fallback foxglove_msgs (field lists of upstream 3.4.3, hashes pinned), ImageAnnotations
and the colourised mask built from a result, and the server publishing them only while subscribed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from foxglove_msgs.msg import ImageAnnotations, PointsAnnotation
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header

import ladon
from ladon.results import detections_above
from ladon.visualize import palette
from ladon_ros.conversions import packet_to_msg
from ladon_ros.foxglove import ANNOTATIONS, COLOR_MASK, color_mask_msg, image_annotations_msg
from ladon_server_node.node import LadonServerNode

REPO = Path(__file__).resolve().parents[2]

UPSTREAM_FIELDS = {  # foxglove_msgs 3.4.3 (foxglove/foxglove-sdk tag ros-v3.4.3, ros/src/foxglove_msgs/ros2/)
    "ImageAnnotations": ["builtin_interfaces/Time timestamp", "foxglove_msgs/CircleAnnotation[] circles",
                         "foxglove_msgs/PointsAnnotation[] points", "foxglove_msgs/TextAnnotation[] texts",
                         "foxglove_msgs/KeyValuePair[] metadata"],
    "PointsAnnotation": ["builtin_interfaces/Time timestamp", "uint8 UNKNOWN=0", "uint8 POINTS=1", "uint8 LINE_LOOP=2",
                         "uint8 LINE_STRIP=3", "uint8 LINE_LIST=4", "uint8 type", "foxglove_msgs/Point2[] points",
                         "foxglove_msgs/Color outline_color", "foxglove_msgs/Color[] outline_colors",
                         "foxglove_msgs/Color fill_color", "float64 thickness",
                         "foxglove_msgs/KeyValuePair[] metadata"],
    "CircleAnnotation": ["builtin_interfaces/Time timestamp", "foxglove_msgs/Point2 position", "float64 diameter",
                         "float64 thickness", "foxglove_msgs/Color fill_color", "foxglove_msgs/Color outline_color",
                         "foxglove_msgs/KeyValuePair[] metadata"],
    "TextAnnotation": ["builtin_interfaces/Time timestamp", "foxglove_msgs/Point2 position", "string text",
                       "float64 font_size", "foxglove_msgs/Color text_color", "foxglove_msgs/Color background_color",
                       "foxglove_msgs/KeyValuePair[] metadata"],
    "Point2": ["float64 x", "float64 y"],
    "Color": ["float64 r", "float64 g", "float64 b", "float64 a"],
    "KeyValuePair": ["string key", "string value"],
}

FALLBACK_RIHS01 = {
    "ImageAnnotations": "RIHS01_bc4e578b1ef80953415d6f966a4cab305c8a44c8b64fc405312b6f06a08fc45e",
    "PointsAnnotation": "RIHS01_e151e5042d911c2949ff9ef427944596eefdf9672ff93d381e8d24e60addf8e6",
    "CircleAnnotation": "RIHS01_8bd0a9869b14ed054b6e3fbfb09bd0dbaa90946083adcca96c964a20191fd99a",
    "TextAnnotation": "RIHS01_9678167e063be85463865db2383506c704498e5f8657f24c576a996e7f2ed2e4",
    "Point2": "RIHS01_d85e823b78e2e88bc31629e305558bcdd2ecc9225f5f9390f96d91930f5696f0",
    "Color": "RIHS01_ed1b16da40c954e6456b950c2ef4559c179e5cb98f1363cb28c3b90c6ee14120",
    "KeyValuePair": "RIHS01_3a1aafc9b6c5876181434af49e3077c3e63174d48c4be9fbc8f65547c59aaded",
}
"""Computed by rosidl when building third_party/foxglove_msgs (share/foxglove_msgs/msg/*.json), and independently by
rosbags from upstream 3.4.3's field lists (test below). No hash published by upstream was found; the hash depends on
the field lists only (comments excluded), so a distro foxglove_msgs 3.4.3 computes the same. A change here means the
wire type changed."""


@pytest.mark.parametrize("name", sorted(UPSTREAM_FIELDS))
def test_fallback_fields_equal_upstream(name):
    text = (REPO / "third_party" / "foxglove_msgs" / "msg" / f"{name}.msg").read_text()
    fields = [" ".join(line.split("#", 1)[0].split()) for line in text.splitlines()]
    assert [f for f in fields if f] == UPSTREAM_FIELDS[name]


def test_fallback_has_exactly_these_types():
    files = sorted(p.stem for p in (REPO / "third_party" / "foxglove_msgs" / "msg").glob("*.msg"))
    assert files == sorted(UPSTREAM_FIELDS)


@pytest.mark.parametrize("name", sorted(FALLBACK_RIHS01))
def test_installed_hashes_are_pinned(name):
    path = Path(sys.prefix) / "share" / "foxglove_msgs" / "msg" / f"{name}.json"
    if not path.is_file():
        pytest.skip("foxglove_msgs comes from elsewhere (not this venv's prefix)")
    entry = json.loads(path.read_text())["type_hashes"][0]
    assert entry["type_name"] == f"foxglove_msgs/msg/{name}"
    assert entry["hash_string"] == FALLBACK_RIHS01[name]


def test_type_support_announces_the_pinned_hash(ros_context):
    node = Node("foxglove_hash_check", context=ros_context)
    try:
        node.create_publisher(ImageAnnotations, "/foxglove_hash_check", 1)
        (info,) = node.get_publishers_info_by_topic("/foxglove_hash_check")
        assert str(info.topic_type_hash) == FALLBACK_RIHS01["ImageAnnotations"]
    finally:
        node.destroy_node()


def _result(model_factory) -> tuple[ladon.LadonModel, ladon.Packet, ladon.Result]:
    model = model_factory(input_size=128)
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    (packet,) = model.encoder.encode([image])
    (result,) = model.server.infer([packet])
    return model, packet, result


def test_annotations_and_colour_mask_from_a_result(tiny_model):
    _, _, result = _result(tiny_model)
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = image_annotations_msg(result, header)
    d = result.detection
    assert len(msg.points) == len(msg.texts) == len(d) > 0 and not msg.circles
    assert msg.timestamp == header.stamp
    for loop, text, box, name, score, label in zip(msg.points, msg.texts, d.boxes, d.class_names, d.scores,
                                                   d.labels):
        x0, y0, x1, y1 = (float(v) for v in box)
        assert loop.type == PointsAnnotation.LINE_LOOP and loop.timestamp == header.stamp
        assert [(p.x, p.y) for p in loop.points] == [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        colour = palette(256)[int(label)] / 255.0
        np.testing.assert_allclose([loop.outline_color.r, loop.outline_color.g, loop.outline_color.b], colour)
        assert (text.position.x, text.position.y) == (x0, y0) and text.text == f"{name} {float(score):.2f}"
    mask = color_mask_msg(result, header)
    assert (mask.encoding, mask.height, mask.width, mask.header) == ("rgb8", 64, 80, header)
    np.testing.assert_array_equal(np.frombuffer(mask.data, np.uint8).reshape(64, 80, 3),
                                  palette(256)[result.segmentation.mask])


def test_server_publishes_them_only_while_subscribed(ros_context, tiny_model, tmp_path):
    model, packet, _ = _result(tiny_model)
    path = tmp_path / "tiny.pt"
    model.save(path)
    server = LadonServerNode(context=ros_context, namespace="/edge", parameter_overrides=[
        Parameter("model", value=str(path)), Parameter("robots", value=["/fx"]), Parameter("torch_threads", value=1),
        Parameter("detection.publish_threshold", value=0.0)])
    client = Node("foxglove_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(server)
    executor.add_node(client)

    def spin_until(predicate, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            executor.spin_once(timeout_sec=0.05)

    try:
        (robot,) = server.robots
        assert robot.foxglove is not None and robot.foxglove.wanted_tasks() == ()
        assert server._wanted_tasks(robot) == ((), False)  # nobody subscribes: no head runs
        annotations: list = []
        masks: list = []
        client.create_subscription(ImageAnnotations, f"/fx/{ANNOTATIONS}", annotations.append, 10)
        client.create_subscription(Image, f"/fx/{COLOR_MASK}", masks.append, 10)
        spin_until(lambda: robot.foxglove.wanted_tasks() == ("detection", "segmentation"))
        assert server._wanted_tasks(robot) == (("detection", "segmentation"), False)
        features = client.create_publisher(type(packet_to_msg(packet, Header())), "/fx/ladon/features", 10)
        spin_until(lambda: features.get_subscription_count() > 0)
        header = Header(frame_id="camera")
        header.stamp.sec, header.stamp.nanosec = 77, 5
        features.publish(packet_to_msg(packet, header))
        spin_until(lambda: annotations and masks)
        expected = detections_above(model.server.infer([packet])[0], 0.0)
        assert masks[0].header == header and annotations[0].timestamp == header.stamp
        boxes = [[p.points[0].x, p.points[0].y, p.points[2].x, p.points[2].y] for p in annotations[0].points]
        np.testing.assert_allclose(np.array(boxes).reshape(-1, 4), expected.detection.boxes, atol=1e-4)
        np.testing.assert_array_equal(np.frombuffer(masks[0].data, np.uint8).reshape(64, 80, 3),
                                      palette(256)[expected.segmentation.mask])
    finally:
        executor.shutdown()
        server.destroy_node()
        client.destroy_node()


def test_layout_file_names_the_published_topics():
    """rviz/split.foxglove.json (Foxglove: Layouts -> Import) shows camera + boxes, coloured mask, classes."""
    from ladon_ros import topics

    layout = json.loads((REPO / "rviz" / "split.foxglove.json").read_text())
    panels = layout["configById"]

    def leaves(node):
        return [node] if isinstance(node, str) else leaves(node["first"]) + leaves(node["second"])

    assert sorted(leaves(layout["layout"])) == sorted(panels)
    camera, mask = panels["Image!ladoncamera"]["imageMode"], panels["Image!ladonmask"]["imageMode"]
    assert camera["imageTopic"] == f"/robot1/{topics.IMAGE}" and mask["imageTopic"] == f"/robot1/{COLOR_MASK}"
    for mode in (camera, mask):  # the Image panel's ImageModeConfig.annotations: a list of subscriptions
        assert mode["annotations"] == [{"topic": f"/robot1/{ANNOTATIONS}",
                                        "schemaName": "foxglove_msgs/msg/ImageAnnotations",
                                        "settings": {"visible": True}}]
    assert panels["RawMessages!ladonclasses"]["topicPath"].startswith(
        f"/robot1/{topics.OUTPUT_TOPICS['classification']}.")


def test_pinned_hashes_equal_an_independent_computation_from_the_upstream_fields():
    """rosbags' own RIHS01 implementation, fed upstream 3.4.3's field lists, gives the hashes rosidl built here."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict = {}
    for name, fields in UPSTREAM_FIELDS.items():
        types.update(get_types_from_msg("\n".join(fields), f"foxglove_msgs/msg/{name}"))
    store.register(types)
    assert {name: store.hash_rihs01(f"foxglove_msgs/msg/{name}") for name in UPSTREAM_FIELDS} == FALLBACK_RIHS01

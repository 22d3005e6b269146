"""Topic names and message types of the Ladon pipeline, in one place.

Names are relative so that a robot's namespace (``/robot1/ladon/features``) and remaps work; :func:`robot_topic`
places a name inside an explicit namespace, as the server does for each robot it serves. Used by the encoder,
server and image-source nodes, the recorder and the benchmark nodes.
"""

from __future__ import annotations

from ladon_msgs.msg import CompressedFeatures, FrameResults
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification, Detection2DArray

from ladon.tasks import TASKS

IMAGE = "image"
"""The camera input (``sensor_msgs/Image``); ``image/compressed`` for the compressed transport."""
FEATURES = "ladon/features"
"""``ladon_msgs/CompressedFeatures``: one packet per frame, robot -> server."""
FEATURES_ACK = "ladon/features/ack"
"""``sensor_msgs/TimeReference``: the server's per-frame receipt of a features packet (rate adaptation):
``header`` = the frame's header, ``time_ref`` = server receive time, ``source`` = the packet's model hash (hex)."""
PARTIAL = "ladon/partial"
"""``std_msgs/Header``: published by the server just before the outputs of a frame served *partial* (channel groups
lost, ``group_policy: partial``), with that frame's header: outputs whose stamp and frame_id equal one on this topic
were computed with some latent channels filled with the entropy model's medians."""
OVERLAY = "ladon/overlay"
"""``sensor_msgs/Image``: the results drawn for people (published only while subscribed)."""
RESULTS = "ladon/results"
"""``ladon_msgs/FrameResults``: every output of a frame in one message, the compact results downlink (the server
publishes it only while subscribed); ``ladon_results_relay`` re-expands it on the robot under :data:`RELAYED`."""
RESULTS_TYPE = FrameResults
RELAYED = "ladon/relayed"
"""Prefix of ``ladon_results_relay``'s outputs: ``ladon/classification`` -> ``ladon/relayed/classification`` (see
:func:`relayed_topic`), so a robot-side subscriber never receives the server's own topics twice."""
LABEL_INFO_SUFFIX = "/label_info"
"""A task's latched ``vision_msgs/LabelInfo`` is published at ``<output topic>/label_info``."""

OUTPUT_TOPICS: dict[str, str] = {"classification": "ladon/classification", "detection": "ladon/detections",
                                 "segmentation": "ladon/segmentation"}
"""Per task: the server's output topic."""
OUTPUT_TYPES: dict[str, type] = {"classification": Classification, "detection": Detection2DArray,
                                 "segmentation": Image}
"""Per task: the message type published on :data:`OUTPUT_TOPICS`."""
FEATURES_TYPE = CompressedFeatures
FEATURES_TYPE_NAME = "ladon_msgs/msg/CompressedFeatures"
"""The features type as the ROS graph names it (``get_topic_names_and_types``)."""

assert set(OUTPUT_TOPICS) == set(OUTPUT_TYPES) == set(TASKS)


def compressed(topic: str) -> str:
    """The image_transport ``compressed`` topic of an image topic (``image`` -> ``image/compressed``)."""
    return f"{topic}/compressed"


TRANSPORTS = ("raw", "compressed")
"""The image transports the encoder and the server's overlay input understand."""


def transport_topic(node, base: str, transport: str) -> str:
    """The topic of ``base`` in ``transport``, as image_transport names it: the base name is resolved first
    (namespace and remaps, e.g. ``image`` -> ``/camera/image_raw``) and ``/<transport>`` appended, so
    ``-r image:=/camera/image_raw`` with ``compressed`` gives ``/camera/image_raw/compressed``."""
    resolved = node.resolve_topic_name(base)
    return resolved if transport == "raw" else f"{resolved}/{transport}"


def robot_topic(ns: str, name: str) -> str:
    """``name`` inside robot namespace ``ns``: relative when ``ns`` is empty, absolute when ``ns`` starts with /."""
    return f"{ns.rstrip('/')}/{name}" if ns else name


def relayed_topic(topic: str, prefix: str = RELAYED) -> str:
    """The relay's name for one of the server's topics: ``ladon/<rest>`` -> ``<prefix>/<rest>``."""
    rest = topic[len("ladon/"):] if topic.startswith("ladon/") else topic
    return f"{prefix.rstrip('/')}/{rest}"


def output_name(topic: str) -> str:
    """The last segment of an output topic (``ladon/detections`` -> ``detections``): the recorder's key for it."""
    return topic.rsplit("/", 1)[-1]

"""A node that collects one robot's pipeline outputs per camera frame (matched by header stamp).

Used by the multi-process demo and by the DDS tests: it subscribes to the camera image, the compressed features
and every server output, and records what arrived when. It also keeps the latched ``LabelInfo`` of each task, so
the ``class_id`` of a hypothesis (the class index) can be turned into its name (:meth:`Recorder.class_name`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ladon_msgs.msg import CompressedFeatures
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import LabelInfo

from ladon_ros import topics
from ladon_ros.conversions import class_names_from_label_info

OUTPUT_STREAMS: dict[str, tuple[str, type]] = {
    **{topics.output_name(topic): (topic, topics.OUTPUT_TYPES[task]) for task, topic in topics.OUTPUT_TOPICS.items()},
    topics.output_name(topics.OVERLAY): (topics.OVERLAY, Image),
}
"""What the recorder can subscribe to, keyed by the topic's last segment (``detections``, ``overlay``...)."""
OUTPUTS = tuple(OUTPUT_STREAMS)


def stamp_key(header) -> tuple[int, int]:
    """Frame identity: the camera stamp."""
    return (int(header.stamp.sec), int(header.stamp.nanosec))


@dataclass
class RecordedFrame:
    """Everything recorded for one camera frame; ``*_at`` are wall-clock arrival times (time.time())."""

    stamp: tuple[int, int]
    image: Image | None = None
    features: CompressedFeatures | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    arrived_at: dict[str, float] = field(default_factory=dict)

    @property
    def stamp_s(self) -> float:
        return self.stamp[0] + self.stamp[1] * 1e-9

    def complete(self, outputs: tuple[str, ...], with_inputs: bool) -> bool:
        """All ``outputs`` arrived (and, if ``with_inputs``, the camera image and the features too)."""
        inputs_ok = not with_inputs or (self.image is not None and self.features is not None)
        return inputs_ok and all(name in self.outputs for name in outputs)


class Recorder(Node):
    """Subscribes ``<ns>/image``, ``<ns>/ladon/features`` and the server outputs in ``<ns>/ladon/``."""

    def __init__(self, namespace: str = "", outputs: tuple[str, ...] = OUTPUTS, record_images: bool = True,
                 node_name: str = "ladon_recorder", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.outputs = outputs
        self.record_images = record_images
        self.frames: dict[tuple[int, int], RecordedFrame] = {}
        self.lock = threading.Lock()
        prefix = f"{namespace.rstrip('/')}/" if namespace else ""
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        if record_images:
            self.create_subscription(Image, f"{prefix}{topics.IMAGE}", lambda m: self._store("image", m), reliable)
        self.create_subscription(CompressedFeatures, f"{prefix}{topics.FEATURES}",
                                 lambda m: self._store("features", m), reliable)
        for name in outputs:
            topic, msg_type = OUTPUT_STREAMS[name]
            self.create_subscription(msg_type, f"{prefix}{topic}",
                                     lambda m, n=name: self._store(n, m), reliable)
        self.labels: dict[str, dict[str, str]] = {}
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        for task, topic in topics.OUTPUT_TOPICS.items():
            self.create_subscription(LabelInfo, f"{prefix}{topic}{topics.LABEL_INFO_SUFFIX}",
                                     lambda m, t=task: self._store_labels(t, m), latched)

    def _store_labels(self, task: str, msg: LabelInfo) -> None:
        with self.lock:
            self.labels[task] = class_names_from_label_info(msg)

    def class_name(self, task: str, class_id: str) -> str | None:
        """The name the task's latched LabelInfo gives ``class_id``; ``None`` if none arrived or it is unknown."""
        with self.lock:
            return self.labels.get(task, {}).get(class_id)

    def _store(self, kind: str, msg) -> None:
        now = time.time()
        with self.lock:
            frame = self.frames.setdefault(stamp_key(msg.header), RecordedFrame(stamp_key(msg.header)))
            frame.arrived_at[kind] = now
            if kind == "image":
                frame.image = msg
            elif kind == "features":
                frame.features = msg
            else:
                frame.outputs[kind] = msg

    def completed(self) -> list[RecordedFrame]:
        """Frames for which every expected output (and, when recording images, image and features) arrived."""
        with self.lock:
            return sorted((f for f in self.frames.values() if f.complete(self.outputs, self.record_images)),
                          key=lambda f: f.stamp)

"""ROS 2 nodes of the 416² scenario of ``ladon-bench-split`` (see :mod:`ladon_bench.scenario416`).

* ``scenario416_robot`` (``mode``): ``r50`` encodes each camera frame with the ResNet-50 Ladon encoder and
  publishes a ``CompressedFeatures`` with a synthetic payload (``bench/r50/features``); ``jpeg`` publishes the
  416² frame as JPEG (``bench/image/compressed``); ``local`` runs the MobileNetV3 trio at 416² and publishes the
  three outputs.
* ``scenario416_edge`` (``mode``): ``r50`` runs the ResNet-50 Ladon server; ``jpeg`` the ResNet-50 teacher per task.

Both publish the same outputs as ``ladon_server``, so the bench's driver measures them like every configuration.
Run as ``python -m ladon_bench.scenario416_nodes {robot|edge} --ros-args ...``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from ladon_msgs.msg import CompressedFeatures
from sensor_msgs.msg import CompressedImage, Image

from ladon.errors import LadonError
from ladon.image_io import list_images, read_image
from ladon.tasks import TASKS
from ladon_bench.nodes import JPEG_TOPIC, RELIABLE, _OutputMixin, jpeg_message
from ladon_bench.scenario416 import DEFAULT_SPREAD, PayloadSizeModel
from ladon_bench.scenario416_compute import LocalModels416, R50Edge, R50Robot, square_frame
from ladon_ros.conversions import compressed_image_to_rgb, image_msg_to_rgb, msg_to_packet, packet_to_msg
from ladon_ros.node_main import LadonNode, run_node
from ladon_ros.params import declare

R50_TOPIC = "bench/r50/features"
ROBOT_MODES = ("r50", "jpeg", "local")
EDGE_MODES = ("r50", "jpeg")


class Scenario416Robot(_OutputMixin, LadonNode):
    """Robot side of the 416² scenario (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("scenario416_robot", **kwargs)

    def _setup(self) -> None:
        self.mode = declare(self, "mode", "r50", f"one of {', '.join(ROBOT_MODES)}")
        beta = declare(self, "beta", 0.32, "rate weight whose logged size the synthetic payload takes (mode r50)")
        seed = declare(self, "seed", 0, "seed of the weights and of the payload sizes/bytes (mode r50)")
        size_task = declare(self, "size_task", "imagenet", "imagenet, coco or voc: whose logged size (mode r50)")
        spread = declare(self, "spread", DEFAULT_SPREAD, "uniform ± spread of the payload size (mode r50)")
        self.quality = declare(self, "quality", 50, "JPEG quality (mode jpeg)", min_value=1, max_value=100)
        torch.set_num_threads(declare(self, "torch_threads", 1, "torch intra-op threads", min_value=1,
                                      max_value=256))
        if self.mode not in ROBOT_MODES:
            raise LadonError(f"mode must be one of {ROBOT_MODES}, got {self.mode!r}")
        self.errors = 0
        if self.mode == "r50":
            try:
                sizes = PayloadSizeModel(float(beta), str(size_task), float(spread), int(seed))
            except ValueError as exc:
                raise LadonError(str(exc)) from None
            self.r50 = R50Robot(sizes, int(seed))
            self.features = self.create_publisher(CompressedFeatures, R50_TOPIC, RELIABLE)
        elif self.mode == "jpeg":
            self.jpeg = self.create_publisher(CompressedImage, JPEG_TOPIC, RELIABLE)
        else:
            self.local = LocalModels416()
            self._create_outputs()
        self.create_subscription(Image, "image", self._on_image, RELIABLE)
        self.get_logger().info(f"416² scenario robot ready: mode {self.mode}")

    def _on_image(self, msg: Image) -> None:
        try:
            rgb = image_msg_to_rgb(msg)
            if self.mode == "r50":
                t0 = time.perf_counter()
                packet = self.r50.encode(rgb)
                ms = (time.perf_counter() - t0) * 1e3
                self.features.publish(packet_to_msg(packet, msg.header, ms))
                self.get_logger().debug(f"real bitstream {self.r50.last_real_bytes} B (random weights), "
                                        f"synthetic payload {len(packet.data)} B")
            elif self.mode == "jpeg":
                self.jpeg.publish(jpeg_message(square_frame(rgb), msg.header, self.quality))
            else:
                self._publish(self.local.infer(rgb), msg.header)
        except (LadonError, ValueError) as exc:
            self._failed(exc)


class Scenario416Edge(_OutputMixin, LadonNode):
    """Edge side of the 416² scenario (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("scenario416_edge", **kwargs)

    def _setup(self) -> None:
        self.mode = declare(self, "mode", "r50", f"one of {', '.join(EDGE_MODES)}")
        beta = declare(self, "beta", 0.32, "rate weight of the model (mode r50)")
        seed = declare(self, "seed", 0, "seed of the weights (mode r50; the robot's)")
        folder = declare(self, "images", "", "frames encoded at start-up as the real packets to decode (mode r50)")
        torch.set_num_threads(declare(self, "torch_threads", 1, "torch intra-op threads", min_value=1,
                                      max_value=256))
        if self.mode not in EDGE_MODES:
            raise LadonError(f"mode must be one of {EDGE_MODES}, got {self.mode!r}")
        self._create_outputs()
        if self.mode == "r50":
            if not folder:
                raise LadonError("mode r50 needs the 'images' parameter (frames for the reference packets)")
            frames = [np.asarray(read_image(p)) for p in list_images(folder)]
            self.r50 = R50Edge(float(beta), frames, int(seed))
            self.create_subscription(CompressedFeatures, R50_TOPIC, self._on_features, RELIABLE)
        else:
            from ladon.model import LadonConfig
            from ladon_bench.workloads import PerTaskTeacher
            self.teacher = PerTaskTeacher(LadonConfig())
            self.create_subscription(CompressedImage, JPEG_TOPIC, self._on_image, RELIABLE)
        self.get_logger().info(f"416² scenario edge ready: mode {self.mode}")

    def _on_features(self, msg: CompressedFeatures) -> None:
        try:
            self._publish(self.r50.infer(msg_to_packet(msg)), msg.header)
        except (LadonError, ValueError) as exc:
            self._failed(exc)

    def _on_image(self, msg: CompressedImage) -> None:
        try:
            rgb = compressed_image_to_rgb(msg)
            for task in TASKS:  # three per-task models, one after the other
                self._publish(self.teacher.infer(rgb, task), msg.header, (task,))
        except LadonError as exc:
            self._failed(exc)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("robot", "edge"):
        print("usage: python -m ladon_bench.scenario416_nodes {robot|edge} [--ros-args ...]", file=sys.stderr)
        return 2
    role, rest = argv[0], argv[1:]
    factory = Scenario416Robot if role == "robot" else Scenario416Edge
    return run_node(factory, f"scenario416_{role}", [f"scenario416_{role}", *rest])


if __name__ == "__main__":
    sys.exit(main())

"""The ``ladon_bringup`` distribution: the ROS-free ``ladon`` library, the ``ladon_ros`` adapters, the node packages,
the ``ladon_bench`` benchmarks, and the launch/config/rviz files of the ROS 2 package.

The same file serves ``pip install -e .`` (the Makefile's venv) and colcon's ament_python build on a ROS 2 install.
"""

import re
from pathlib import Path

from setuptools import Extension, find_packages, setup

PACKAGE_NAME = "ladon_bringup"
VERSION = re.search(r'__version__ = "([^"]+)"', Path(__file__).with_name("ladon").joinpath("_version.py")
                    .read_text()).group(1)

setup(
    name=PACKAGE_NAME,
    version=VERSION,
    description="Ladon multi-task supervised compression for split computing (WACV 2025), for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ladon", "ladon.*", "ladon_ros", "ladon_ros.*", "ladon_encoder_node",
                                    "ladon_server_node", "ladon_bench", "ladon_bench.*", "ladon_robot"]),
    # The robot runtime's rANS encoder: plain C99 + the CPython API (no pybind11/cffi/Cython needed to build).
    # optional: without a C compiler the rest installs (e.g. a server); ladon_robot.rans then says how to build it.
    ext_modules=[Extension("ladon_robot._rans", ["ladon_robot/_rans.c"], optional=True)],
    package_data={"ladon": ["py.typed", "assets/images/*", "assets/shapes/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE_NAME]),
        ("share/" + PACKAGE_NAME, ["package.xml"]),
        ("share/" + PACKAGE_NAME + "/launch", sorted(str(p) for p in Path("launch").glob("*.launch.py"))),
        ("share/" + PACKAGE_NAME + "/config", sorted(str(p) for p in Path("config").glob("*.yaml"))
         + sorted(str(p) for p in Path("config").glob("*.xml"))),
        ("share/" + PACKAGE_NAME + "/rviz", ["rviz/split.rviz", "rviz/split.foxglove.json"]),
        # The bundled demo models, so that an installed package finds them (ladon.assets.models_dir).
        ("share/" + PACKAGE_NAME + "/models", sorted(str(p) for p in Path("models").glob("demo*.pt"))),
    ],
    # The core install is what the torch-free modules (ladon.packet/geometry/errors) and the robot runtime need;
    # torch, torchvision and compressai (encoder in torch, server, training, export) are the 'server' extra, so a
    # robot installs `.[robot]` without torch. `make setup` installs every extra in one resolve.
    install_requires=[
        "numpy<2",
        "opencv-python-headless",
    ],
    extras_require={
        # The torch side: LadonModel, the server node, training/evaluation, `ladon export-encoder`.
        "server": ["torch>=2.1", "torchvision>=0.16", "compressai==1.2.8"],
        # The robot runtime (ladon_robot): ONNX Runtime; the rANS coder is this package's C extension.
        "robot": ["onnxruntime>=1.16"],
        # `ladon export-encoder` (with 'server'): ONNX export and int8 quantisation.
        "export": ["onnx>=1.15", "onnxruntime>=1.16"],
        # The authors' implementation, used only as a test oracle (parity tests).
        "reference": ["sc2bench==0.1.1"],
        # ResNeSt-269e backbone (C=32).
        "resnest": ["timm>=0.9"],
        # Training, evaluation and the offline dataset generator.
        "train": ["pycocotools>=2.0.7", "matplotlib>=3.7", "tqdm>=4.60", "pyyaml>=6"],
        # The fleet server's Ray Serve backend (edge servers only; robots never need it).
        "fleet": ["ray[serve]>=2.40"],
        "dev": ["pytest", "hypothesis", "ruff", "lxml>=5", "rosbags>=0.10"],
        # Coverage-guided fuzzing (make fuzz); ladon_bench.fuzz runs without it, uncovered.
        "fuzz": ["atheris>=2.3"],
        # Recording features to rosbag2 MCAP bags and replaying them (ladon replay, ladon-record).
        "record": ["mcap>=1.2", "mcap-ros2-support>=0.5", "zstandard>=0.22", "lz4>=4", "pyyaml>=6"],
    },
    entry_points={"console_scripts": [
        "ladon = ladon.cli:main",
        "ladon_encoder = ladon_encoder_node.node:main",
        "ladon_server = ladon_server_node.node:main",
        "ladon_image_source = ladon_ros.image_source:main",
        "ladon_results_relay = ladon_ros.results_relay:main",
        "ladon-launch = ladon_ros.launcher:main",
        "ladon-bench-split = ladon_bench.runner:main",
        "ladon-bench-fleet = ladon_bench.fleet:main",
        "ladon-bench-adaptation = ladon_bench.adaptation:main",
        "ladon-record = ladon_ros.bag_record:main",
        "ladon-play = ladon_ros.bag_play:main",
    ]},
)

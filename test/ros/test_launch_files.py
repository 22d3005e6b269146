"""launch/{robot,edge,split}.launch.py: structure (always) and real runs through the real ``launch``/``launch_ros``.

``launch`` and ``launch_ros`` are not installable from PyPI (``pip install launch`` is an unrelated package), so
the real runs need their sources: set ``LADON_LAUNCH_SOURCES`` to folders holding the ``launch``, ``launch_ros``
and ``osrf_pycommon`` packages (checkouts of ros2/launch, ros2/launch_ros, osrf/osrf_pycommon; docs/ros.md says
how). The runs install the package the way colcon does into a temporary prefix (ament index marker,
``lib/ladon_bringup/<executables>``, ``share/ladon_bringup/{launch,config,models}``) and launch from there, as
``ros2 launch ladon_bringup <file>`` would; without the sources they are skipped.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ladon.assets import SHAPES_CLASSES
from ladon_ros import launcher

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
HARNESS = Path(__file__).with_name("launch_harness.py")
FILES = {"robot": LAUNCH / "robot.launch.py", "edge": LAUNCH / "edge.launch.py", "split": LAUNCH / "split.launch.py"}
LAUNCH_ONLY = {"robot": {"camera_tf"}, "edge": set(), "split": {"camera_tf"}}
"""Arguments only the launch files have (ladon-launch has no tf2_ros to run)."""
SOURCES = [Path(p) for p in os.environ.get("LADON_LAUNCH_SOURCES", "").split(os.pathsep) if p]
HAVE_LAUNCH = all(any((s / pkg / "__init__.py").is_file() for s in SOURCES)
                  for pkg in ("launch", "launch_ros", "osrf_pycommon"))
needs_launch = pytest.mark.skipif(not HAVE_LAUNCH, reason="set LADON_LAUNCH_SOURCES to the launch, launch_ros and "
                                  "osrf_pycommon sources (not installable from PyPI)")


# --------------------------------------------------------------------------------------------- structure
def _declared(path: Path) -> dict[str, ast.expr]:
    """DeclareLaunchArgument names -> default_value expressions of a launch file (read, not executed)."""
    out = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            name = node.args[0].value
            out[name] = next((k.value for k in node.keywords if k.arg == "default_value"), None)
    return out


def _declared_with_includes(pipeline: str) -> dict[str, ast.expr]:
    if pipeline == "split":
        return {**_declared(FILES["robot"]), **_declared(FILES["edge"])}
    return _declared(FILES[pipeline])


@pytest.mark.parametrize("pipeline", sorted(FILES))
def test_launch_files_declare_the_same_arguments_as_ladon_launch(pipeline):
    declared = _declared_with_includes(pipeline)
    expected = set(launcher.arguments_for(pipeline)) | LAUNCH_ONLY[pipeline]
    if pipeline == "split":
        expected.add("robots")  # from the included edge file; the split server serves its own namespace
    assert set(declared) == expected
    for name, arg in launcher.arguments_for(pipeline).items():
        default = declared[name]
        if isinstance(default, ast.Constant):  # model / params_file defaults are share/ paths in the launch files
            assert default.value == arg.default, name


def test_split_includes_robot_and_edge():
    text = FILES["split"].read_text()
    assert '"robot.launch.py", "edge.launch.py"' in text and "ThisLaunchFileDir" in text


@pytest.mark.parametrize("pipeline", ["robot", "edge"])
def test_every_node_shuts_the_launch_down_when_it_exits(pipeline):
    tree = ast.parse(FILES[pipeline].read_text())
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    ours = [n for n in nodes if any(k.arg == "package" and getattr(k.value, "id", "") == "PACKAGE"
                                    for k in n.keywords)]
    assert ours and all(any(k.arg == "on_exit" for k in n.keywords) for n in ours)


def test_setup_installs_every_launch_file_and_executable():
    setup = (REPO / "setup.py").read_text()
    assert 'Path("launch").glob("*.launch.py")' in setup
    scripts = set(re.findall(r'"(ladon_[a-z_]+) = ', setup))
    for path in FILES.values():
        for executable in re.findall(r'executable="([a-z_]+)"', path.read_text()):
            assert executable in scripts or executable == "static_transform_publisher", executable


# --------------------------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    """The package installed as colcon lays it out, with executables that run this checkout's code."""
    root = tmp_path_factory.mktemp("install")
    (root / "share/ament_index/resource_index/packages").mkdir(parents=True)
    (root / "share/ament_index/resource_index/packages/ladon_bringup").write_text("")
    share = root / "share/ladon_bringup"
    for folder in ("launch", "config"):
        shutil.copytree(REPO / folder, share / folder)
    (share / "models").mkdir()
    (share / "models/demo.pt").symlink_to(REPO / "models/demo.pt")
    lib = root / "lib/ladon_bringup"
    lib.mkdir(parents=True)
    for name, module in (("ladon_encoder", "ladon_encoder_node.node"), ("ladon_server", "ladon_server_node.node"),
                         ("ladon_image_source", "ladon_ros.image_source"),
                         ("ladon_results_relay", "ladon_ros.results_relay")):
        script = lib / name
        script.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; from {module} import main; "
                          f"sys.exit(main())' \"$@\"\n")
        script.chmod(0o755)
    return root


def _env(prefix: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    python_path = os.pathsep.join([str(REPO), *[p for p in [os.environ.get("PYTHONPATH")] if p]])
    env.update(AMENT_PREFIX_PATH=str(prefix), PYTHONPATH=python_path, PYTHONUNBUFFERED="1", **extra)
    return env


def _launch(prefix: Path, pipeline: str, *assignments: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HARNESS), str(prefix / "share/ladon_bringup/launch" /
                                                               f"{pipeline}.launch.py"), *assignments],
                            env=_env(prefix, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _children_environ(pid: int) -> list[dict[str, str]]:
    """Environment of every child process of ``pid`` (the nodes launch started)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                raw = Path(f"/proc/{child}/environ").read_bytes()
            except OSError:
                continue
            out.append(dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item))
    return out


def _stop(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"launch did not stop within {timeout} s:\n{output[-3000:]}")
    return proc.returncode, output


@needs_launch
def test_split_with_no_arguments_shows_learned_outputs(ros_context, prefix):
    """``ros2 launch ladon_bringup split.launch.py`` (only a namespace, and no static TF: tf2_ros is not installed
    here): the bundled demo model on the bundled shapes scenes; the Fast DDS profile from share/ is set."""
    from rclpy.executors import SingleThreadedExecutor

    from ladon_ros.recorder import Recorder

    recorder = Recorder(namespace="/launch_split", record_images=False, context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(recorder)
    proc = _launch(prefix, "split", "namespace:=/launch_split", "camera_tf:=false", "rate:=4.0")
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not recorder.completed() and proc.poll() is None:
            executor.spin_once(timeout_sec=0.2)
        environs = _children_environ(proc.pid) if proc.poll() is None else []
        frames = recorder.completed()
        assert frames, f"no complete frame; launch output:\n{_stop(proc)[1][-4000:]}"
        for _ in range(20):  # the latched LabelInfo of each task
            executor.spin_once(timeout_sec=0.1)
    finally:
        code, output = _stop(proc)
        executor.shutdown()
        recorder.destroy_node()
    assert code == 0, output[-4000:]
    profile = str(prefix / "share/ladon_bringup/config/fastdds_reliable.xml")  # link_profile:=reliable (default)
    assert environs and all(e.get("FASTDDS_DEFAULT_PROFILES_FILE") == profile for e in environs)
    assert tuple(recorder.labels["classification"].values()) == SHAPES_CLASSES
    frame = frames[0]
    top = frame.outputs["classification"].results[0]
    assert recorder.class_name("classification", top.class_id) in SHAPES_CLASSES and top.score > 0.5
    detections = frame.outputs["detections"].detections
    assert detections and all(recorder.class_name("detection", d.results[0].hypothesis.class_id) in SHAPES_CLASSES
                              for d in detections)


@needs_launch
def test_split_with_results_relay_relays_the_compact_downlink(prefix):
    """``split.launch.py results_relay:=true``: the relay starts next to the encoder and the server's compact
    ``ladon/results`` comes out under ``ladon/relayed/...`` with the latched class names (own DDS domain)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import CompressedImage
    from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

    from ladon_ros.conversions import class_names_from_label_info

    domain = 208
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    node = Node("relay_launch_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    got: dict[str, list] = {}
    for name, msg_type in (("classification", Classification), ("detections", Detection2DArray),
                           ("segmentation/compressed", CompressedImage)):
        got[name] = box = []
        node.create_subscription(msg_type, f"/launch_relay/ladon/relayed/{name}", box.append, 10)
    labels: list = []
    node.create_subscription(LabelInfo, "/launch_relay/ladon/relayed/classification/label_info", labels.append,
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    proc = _launch(prefix, "split", "namespace:=/launch_relay", "camera_tf:=false", "rate:=4.0", "results_relay:=true",
                   ROS_DOMAIN_ID=str(domain))
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and not (all(got.values()) and labels):
            executor.spin_once(timeout_sec=0.2)
        assert all(got.values()) and labels, f"nothing relayed; launch output:\n{_stop(proc)[1][-4000:]}"
        assert node.count_publishers("/launch_relay/ladon/results") == 1  # the server's
    finally:
        code, output = _stop(proc)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert code == 0, output[-4000:]
    assert "ladon_results_relay" in output
    names = class_names_from_label_info(labels[-1])
    assert tuple(names.values()) == SHAPES_CLASSES
    top = got["classification"][0].results[0]
    assert names[top.class_id] in SHAPES_CLASSES and top.score > 0.5
    assert got["segmentation/compressed"][0].format == "mono8; png compressed mono8"


@needs_launch
def test_a_node_that_dies_shuts_the_launch_down(prefix):
    """A bad model makes the encoder exit 1 (FATAL line, no traceback); launch stops the image source and ends."""
    proc = _launch(prefix, "robot", "namespace:=/launch_dies", "camera_tf:=false", "model:=/nonexistent/model.pt",
                   f"source:={REPO / 'ladon' / 'assets' / 'shapes'}")  # a folder: the source does not read the model
    try:
        output, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        _, output = _stop(proc)
        pytest.fail(f"launch kept running after the encoder died:\n{output[-3000:]}")
    assert "model file not found: /nonexistent/model.pt" in output
    assert "Traceback" not in output
    assert re.search(r"ladon_encoder-\d+\]: process has died .*exit code 1", output)
    assert "process[ladon_encoder-2] was required: shutting down launched system" in output, output[-3000:]
    assert re.search(r"ladon_image_source-1\]: process has finished cleanly|ladon_image_source-1\]: process has "
                     r"died", output), output[-3000:]  # stopped by the shutdown, not left running


@needs_launch
@pytest.mark.parametrize(("env", "expected"), [({}, 1), ({"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"}, 0),
                                               ({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, 0)])
def test_fastdds_profile_only_when_unset_and_fast_dds(prefix, env, expected):
    # The environment is changed after rclpy is imported: rcl refuses to load with another RMW_IMPLEMENTATION.
    code = ("import importlib.util, os, sys; import launch_harness; launch_harness._sources(); "
            f"spec = importlib.util.spec_from_file_location('robot_launch', {str(FILES['robot'])!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "from launch import LaunchContext; context = LaunchContext(); "
            "context.launch_configurations['link_profile'] = 'reliable'; "
            f"os.environ.update({env!r}); print(len(m._fastdds_profile(context)))")
    proc = subprocess.run([sys.executable, "-c", code], env={**_env(prefix),
                          "PYTHONPATH": f"{REPO}{os.pathsep}{HARNESS.parent}"}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(expected)

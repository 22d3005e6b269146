"""The robot side of Ladon: ``ros2 launch ladon_bringup robot.launch.py``.

Starts the encoder (camera ``image`` remapped to ``image_topic``, raw or ``<image_topic>/compressed`` by
``image_transport``) and, with ``use_source:=true``, the bundled image source as the camera (its images follow the
model's classes) plus a static transform ``map -> camera`` so rviz's fixed frame exists. With
``results_relay:=true`` it also starts ``ladon_results_relay``, the robot end of the compact results downlink
(``ladon/results`` re-expanded under ``ladon/relayed/...``). With no arguments it runs
the bundled demo model on the bundled shapes scenes. Sets the shipped Fast DDS profile for large images unless one
is set (or another RMW is chosen), and shuts the launch down when a node dies. Arguments mirror
``ladon-launch robot``::

    ros2 launch ladon_bringup robot.launch.py namespace:=/robot1 image_topic:=/camera/image_raw \\
        image_transport:=compressed use_source:=false model:=/models/ladon-r50-beta0.32.pt
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "ladon_bringup"
FAST_DDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
FASTDDS_XML = {"reliable": "fastdds_reliable.xml", "reliable_lowrate": "fastdds_reliable_lowrate.xml",
               "latency": "fastdds_shm.xml"}
"""Fast DDS XML of each link profile (ladon_ros.link_profiles.LINK_PROFILES)."""


def _fastdds_profile(context, *args, **kwargs):
    """The shipped Fast DDS profile of ``link_profile`` (reliable: fastdds_reliable.xml, 16 MB shared memory
    + a 20 ms heartbeat; latency: fastdds_shm.xml), only if the user set none and runs Fast DDS."""
    if os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.environ.get("RMW_IMPLEMENTATION", "") not in FAST_DDS_RMWS:
        return []
    return [SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                   PathJoinSubstitution([FindPackageShare(PACKAGE), "config", FASTDDS_XML.get(
                                       context.perform_substitution(LaunchConfiguration("link_profile")),
                                       "fastdds_reliable.xml")]))]


def _true(name: str) -> PythonExpression:
    return PythonExpression(["'", LaunchConfiguration(name), "'.lower() in ('true', '1', 'yes')"])


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the nodes, e.g. /robot1"),
        DeclareLaunchArgument("model", default_value=PathJoinSubstitution([share, "models", "demo.pt"]),
                              description="Ladon model file (full or encoder-only); default: the bundled demo model"),
        DeclareLaunchArgument("beta", default_value="0.0",
                              description="Expected rate weight of the model (0 = accept the file's)"),
        DeclareLaunchArgument("random_weights", default_value="false",
                              description="Allow random weights when no model is given (testing only)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="Configure and activate the lifecycle nodes at start-up"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "split.yaml"]),
                              description="Parameters of all nodes"),
        DeclareLaunchArgument("log_level", default_value="info", description="Log level of the nodes"),
        DeclareLaunchArgument("link_profile", default_value="reliable",
                              description="QoS of the robot-edge link: reliable (20 ms heartbeat), "
                                          "reliable_lowrate (500 ms heartbeat, links < 1 Mbit/s) or latency "
                                          "(best-effort, lost frames counted)"),
        DeclareLaunchArgument("image_topic", default_value="image", description="Camera topic (remapped 'image')"),
        DeclareLaunchArgument("image_transport", default_value="raw",
                              description="raw, or compressed (subscribes <image_topic>/compressed)"),
        DeclareLaunchArgument("encoder_device", default_value="cpu", description="torch device of the encoder"),
        DeclareLaunchArgument("bundle", default_value="",
                              description="Robot bundle of `ladon export-encoder`: the encoder runs ONNX Runtime "
                              "without torch ('' = the torch encoder of 'model')"),
        DeclareLaunchArgument("use_source", default_value="true",
                              description="Start ladon_image_source as the camera"),
        DeclareLaunchArgument("source", default_value="bundled",
                              description="Folder, video file or 'bundled' (the demo images that suit the model)"),
        DeclareLaunchArgument("rate", default_value="2.0", description="Image source rate (Hz)"),
        DeclareLaunchArgument("max_frames", default_value="0",
                              description="Image source stops after N frames (0 = loop)"),
        DeclareLaunchArgument("camera_tf", default_value="true",
                              description="With use_source: publish a static map -> camera transform for rviz"),
        DeclareLaunchArgument("results_relay", default_value="false",
                              description="Start ladon_results_relay: the server's compact ladon/results "
                                          "re-expanded on the robot under ladon/relayed/..."),
    ]
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file")
    ros_args = ["--log-level", LaunchConfiguration("log_level")]
    common = {"model": LaunchConfiguration("model"), "autostart": LaunchConfiguration("autostart")}
    remap = [("image", LaunchConfiguration("image_topic"))]
    shutdown = Shutdown(reason="a Ladon node exited")
    nodes = [
        Node(package=PACKAGE, executable="ladon_image_source", name="ladon_image_source", namespace=namespace,
             parameters=[params_file, common, {"source": LaunchConfiguration("source"),
                                               "rate_hz": LaunchConfiguration("rate"),
                                               "max_frames": LaunchConfiguration("max_frames")}],
             remappings=remap, ros_arguments=ros_args, on_exit=shutdown,
             condition=IfCondition(LaunchConfiguration("use_source"))),
        Node(package=PACKAGE, executable="ladon_encoder", name="ladon_encoder", namespace=namespace,
             parameters=[params_file, common, {"beta": LaunchConfiguration("beta"),
                                               "random_weights": LaunchConfiguration("random_weights"),
                                               "device": LaunchConfiguration("encoder_device"),
                                               "bundle": LaunchConfiguration("bundle"),
                                               "image_transport": LaunchConfiguration("image_transport"),
                                               "link_profile": LaunchConfiguration("link_profile")}],
             remappings=remap, ros_arguments=ros_args, on_exit=Shutdown(reason="a Ladon node exited")),
        Node(package=PACKAGE, executable="ladon_results_relay", name="ladon_results_relay", namespace=namespace,
             parameters=[params_file, {"autostart": LaunchConfiguration("autostart"),
                                       "link_profile": LaunchConfiguration("link_profile")}],
             ros_arguments=ros_args, on_exit=Shutdown(reason="a Ladon node exited"),
             condition=IfCondition(LaunchConfiguration("results_relay"))),
        Node(package="tf2_ros", executable="static_transform_publisher", name="ladon_camera_tf",
             namespace=namespace, arguments=["--frame-id", "map", "--child-frame-id", "camera"],
             condition=IfCondition(PythonExpression([_true("use_source"), " and ", _true("camera_tf")]))),
    ]
    return LaunchDescription([*args, OpaqueFunction(function=_fastdds_profile), *nodes])

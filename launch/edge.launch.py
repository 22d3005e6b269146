"""The edge side of Ladon: ``ros2 launch ladon_bringup edge.launch.py robots:="['/robot1', '/robot2']"``.

Starts the server for the robot namespaces in ``robots`` (``['']`` = its own namespace): it subscribes
``<robot>/ladon/features`` and publishes the results in each robot's namespace. ``overlay_background:=image``
draws the overlay on the camera frame (``<robot>/image``, raw or ``/compressed`` by ``image_transport``;
``image_topic`` remaps ``image`` in the server's own namespace). Sets the shipped Fast DDS profile unless one is
set, and shuts the launch down when the server dies. Arguments mirror ``ladon-launch edge``.
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "ladon_bringup"
FAST_DDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
FASTDDS_XML = {"reliable": "fastdds_reliable.xml", "reliable_lowrate": "fastdds_reliable_lowrate.xml",
               "latency": "fastdds_shm.xml"}
"""Fast DDS XML of each link profile (ladon_ros.link_profiles.LINK_PROFILES)."""
TASKS = ("classification", "detection", "segmentation")


def _fastdds_profile(context, *args, **kwargs):
    """The shipped Fast DDS profile of ``link_profile`` (reliable: fastdds_reliable.xml, 16 MB shared memory
    + a 20 ms heartbeat; latency: fastdds_shm.xml), only if the user set none and runs Fast DDS."""
    if os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.environ.get("RMW_IMPLEMENTATION", "") not in FAST_DDS_RMWS:
        return []
    return [SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                   PathJoinSubstitution([FindPackageShare(PACKAGE), "config", FASTDDS_XML.get(
                                       context.perform_substitution(LaunchConfiguration("link_profile")),
                                       "fastdds_reliable.xml")]))]


def _task_enabled(task: str) -> PythonExpression:
    return PythonExpression(["'", task, "' in [t.strip() for t in '", LaunchConfiguration("tasks"), "'.split(',')]"])


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the server"),
        DeclareLaunchArgument("model", default_value=PathJoinSubstitution([share, "models", "demo.pt"]),
                              description="Full Ladon model file; default: the bundled demo model"),
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
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="Camera topic of the overlay input (remapped 'image')"),
        DeclareLaunchArgument("image_transport", default_value="raw",
                              description="Overlay camera input: raw, or compressed (<image topic>/compressed)"),
        DeclareLaunchArgument("device", default_value="cpu", description="torch device of the server"),
        DeclareLaunchArgument("tasks", default_value=",".join(TASKS),
                              description="Comma-separated tasks the server runs"),
        DeclareLaunchArgument("robots", default_value="['']",
                              description="Robot namespaces to serve, a YAML list ('' = the server's namespace)"),
        DeclareLaunchArgument("overlay_background", default_value="mask",
                              description="Overlay drawn on the coloured 'mask' or the camera 'image'"),
    ]
    server = Node(
        package=PACKAGE, executable="ladon_server", name="ladon_server", namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), {
            "model": LaunchConfiguration("model"), "beta": LaunchConfiguration("beta"),
            "random_weights": LaunchConfiguration("random_weights"), "autostart": LaunchConfiguration("autostart"),
            "device": LaunchConfiguration("device"), "robots": LaunchConfiguration("robots"),
            "image_transport": LaunchConfiguration("image_transport"),
            "overlay.background": LaunchConfiguration("overlay_background"),
            "link_profile": LaunchConfiguration("link_profile"),
            **{f"tasks.{t}": _task_enabled(t) for t in TASKS}}],
        remappings=[("image", LaunchConfiguration("image_topic"))],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
        on_exit=Shutdown(reason="the Ladon server exited"))
    return LaunchDescription([*args, OpaqueFunction(function=_fastdds_profile), server])

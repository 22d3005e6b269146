"""Ladon split pipeline for a real ROS 2 install: ``ros2 launch ladon_bringup split.launch.py``.

Arguments mirror ``ladon-launch split`` (the runner used where ``ros2 launch`` is not installable):
namespace, model, beta, device, image_topic, tasks, use_source, source, params_file, random_weights.
Example::

    ros2 launch ladon_bringup split.launch.py namespace:=/robot1 model:=/models/ladon-r50-beta0.32.pt \\
        image_topic:=/camera/image_raw tasks:=detection,segmentation use_source:=false
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "ladon_bringup"


def _task_enabled(task: str) -> PythonExpression:
    return PythonExpression(["'", task, "' in '", LaunchConfiguration("tasks"), "'.split(',')"])


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="Robot namespace, e.g. /robot1"),
        DeclareLaunchArgument("model", default_value="", description="Ladon model file (server needs a full one)"),
        DeclareLaunchArgument("beta", default_value="0.0",
                              description="Expected rate weight of the model (0 = accept the file's)"),
        DeclareLaunchArgument("device", default_value="cpu", description="torch device of the server"),
        DeclareLaunchArgument("encoder_device", default_value="cpu", description="torch device of the encoder"),
        DeclareLaunchArgument("image_topic", default_value="image", description="Camera topic of the encoder"),
        DeclareLaunchArgument("tasks", default_value="classification,detection,segmentation",
                              description="Comma-separated tasks the server runs"),
        DeclareLaunchArgument("use_source", default_value="true",
                              description="Start ladon_image_source (bundled images) as the camera"),
        DeclareLaunchArgument("source", default_value="bundled", description="Folder, video file or 'bundled'"),
        DeclareLaunchArgument("random_weights", default_value="false",
                              description="Allow random weights when no model is given (testing only)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution(
            [FindPackageShare(PACKAGE), "config", "split.yaml"]), description="Parameters of all three nodes"),
    ]
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    common = {"model": LaunchConfiguration("model"), "random_weights": LaunchConfiguration("random_weights"),
              "beta": LaunchConfiguration("beta")}
    nodes = [
        Node(package=PACKAGE, executable="ladon_image_source", name="ladon_image_source", namespace=namespace,
             parameters=[params_file, {"source": LaunchConfiguration("source")}],
             remappings=[("image", LaunchConfiguration("image_topic"))],
             condition=IfCondition(LaunchConfiguration("use_source"))),
        Node(package=PACKAGE, executable="ladon_encoder", name="ladon_encoder", namespace=namespace,
             parameters=[params_file, common, {"device": LaunchConfiguration("encoder_device")}],
             remappings=[("image", LaunchConfiguration("image_topic"))]),
        Node(package=PACKAGE, executable="ladon_server", name="ladon_server", namespace=namespace,
             parameters=[params_file, common, {"device": LaunchConfiguration("device"),
                                               "tasks.classification": _task_enabled("classification"),
                                               "tasks.detection": _task_enabled("detection"),
                                               "tasks.segmentation": _task_enabled("segmentation")}]),
    ]
    return LaunchDescription([*args, *nodes])

"""The whole Ladon split pipeline on one machine: ``ros2 launch ladon_bringup split.launch.py``.

``robot.launch.py`` (image source, encoder, static camera transform) and ``edge.launch.py`` (the server for its
own namespace) in one namespace; every argument of both applies (``ros2 launch ... --show-args``). With no
arguments it shows learned outputs: the bundled demo model on the bundled shapes scenes. Example::

    ros2 launch ladon_bringup split.launch.py namespace:=/robot1 model:=/models/ladon-r50-beta0.32.pt \\
        image_topic:=/camera/image_raw image_transport:=compressed tasks:=detection,segmentation use_source:=false
"""

from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution, ThisLaunchFileDir

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    # Launch configurations are not scoped: the arguments given to this file reach both included files.
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(
            PathJoinSubstitution([ThisLaunchFileDir(), name]))) for name in ("robot.launch.py", "edge.launch.py")])

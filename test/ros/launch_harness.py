"""Runs a launch file the way ``ros2 launch ladon_bringup <file> name:=value ...`` does, with the real ``launch``
and ``launch_ros`` sources (not installable from PyPI) taken from ``$LADON_LAUNCH_SOURCES`` (``os.pathsep``
separated folders that hold the ``launch``, ``launch_ros`` and ``osrf_pycommon`` packages, e.g. checkouts of
ros2/launch, ros2/launch_ros and osrf/osrf_pycommon).

Usage: ``python launch_harness.py FILE [name:=value ...]``; exits with the launch service's return code. As in
``ros2launch.api.launch_a_launch_file``: a LaunchService with the arguments, including the file.

``composition_interfaces`` (imported by ``launch_ros.actions`` for composable nodes, which our launch files do not
use) has no PyPI wheel: when it cannot be imported, a stand-in module is registered so the import succeeds (loading
a composable node through it raises).
"""

from __future__ import annotations

import os
import sys
import types


def _sources() -> None:
    for folder in reversed([p for p in os.environ.get("LADON_LAUNCH_SOURCES", "").split(os.pathsep) if p]):
        sys.path.insert(0, folder)
    try:
        import composition_interfaces.srv  # noqa: F401
    except ImportError:
        package = types.ModuleType("composition_interfaces")
        package.__path__ = []
        package.srv = types.ModuleType("composition_interfaces.srv")

        class Request:  # named in launch_ros's annotations; building one means a composable node was launched
            def __init__(self, *args, **kwargs) -> None:
                raise RuntimeError("composition_interfaces is not installed: composable nodes cannot be loaded")

        package.srv.LoadNode = type("LoadNode", (), {"Request": Request})
        sys.modules["composition_interfaces"] = package
        sys.modules["composition_interfaces.srv"] = package.srv


def main(argv: list[str]) -> int:
    _sources()
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    from launch import LaunchDescription, LaunchService

    path, assignments = argv[0], argv[1:]
    arguments = [tuple(a.split(":=", 1)) for a in assignments]
    service = LaunchService(argv=assignments)
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=arguments)]))
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The split-computing benchmark over ROS 2 (`ladon bench-split`): nodes and runner."""

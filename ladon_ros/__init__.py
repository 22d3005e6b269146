"""ROS 2 adapters shared by the Ladon nodes: message conversions, parameters/QoS, diagnostics, bring-up."""

EXIT_CONFIG_ERROR = 1
"""Exit status of a node whose configuration is wrong (one FATAL line, no traceback); not worth a respawn.
Here, not in :mod:`.node_main`, so that the launcher can read it without importing rclpy."""

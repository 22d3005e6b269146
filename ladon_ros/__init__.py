"""ROS 2 adapters shared by the Ladon nodes: message conversions, parameters/QoS, diagnostics, bring-up."""

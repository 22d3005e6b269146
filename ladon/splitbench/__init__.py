"""The split-computing benchmark's ROS-free parts: the emulated link (:mod:`.link`), the baseline workloads
(:mod:`.workloads`) and the report (:mod:`.report`). The ROS 2 nodes and the runner are in
:mod:`ladon_ros.split_bench`."""

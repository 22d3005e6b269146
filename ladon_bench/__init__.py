"""Benchmarks of the Ladon pipeline that need more than the library: ``ladon-bench-split`` runs the real ROS 2
nodes over an emulated robot-edge link (:mod:`.link`: netns, veth, ``tc``, ``iptables``, cgroups) against
baseline workloads (:mod:`.workloads`, :mod:`.nodes`) and writes its report (:mod:`.report`).

Nothing imports this package: it may import ``ladon``, ``ladon_ros`` and the node packages.
"""

"""``python -m ladon_bench.repair_probe``: how long Fast DDS takes to repair a lost reliable sample, with and without
a Fast DDS XML profile, through real DDS over the emulated link (:class:`ladon_bench.link.LinkTestbed`).

It answers whether rmw_fastrtps applies the default ``<data_writer>``/``<data_reader>`` ``<times>`` of an XML file
(heartbeat period, NACK response delay) to endpoints whose ROS QoS is set in code. A publisher in the robot
namespace and a subscriber in the edge namespace (reliable, keep-last 5, set in code) match; then, per trial, every
packet into the edge is dropped (iptables) for ``--block-ms``, one sample is published inside that window, and the
time from publishing to delivery is measured. The first transmission is lost, so delivery waits for a repair: the
reader asks for it when the writer's next periodic heartbeat arrives (3 s by default in Fast DDS).

Needs root. Prints one JSON object: per-trial delivery delays in seconds for the XML profile and without it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from ladon.errors import LadonError
from ladon_bench.link import LinkSpec, LinkTestbed, _run

TOPIC = "lq_repair_probe"


def _node(role: str) -> int:
    """Child process: ``pub`` publishes a String per stdin line ``NAME [SIZE]`` once matched (``NAME`` padded to
    ``SIZE`` bytes); ``sub`` prints each arrival's ``NAME`` and time as JSON."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from ladon_ros.params import qos_profile

    rclpy.init()
    node = rclpy.create_node(f"repair_probe_{role}")
    qos = qos_profile("reliable", 5)
    try:
        if role == "sub":
            node.create_subscription(String, TOPIC, lambda msg: print(json.dumps(
                {"data": msg.data.partition(" ")[0], "t": time.monotonic()}), flush=True), qos)
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            executor.spin()
        else:
            publisher = node.create_publisher(String, TOPIC, qos)
            while publisher.get_subscription_count() == 0:
                time.sleep(0.05)
            time.sleep(0.5)  # let the reader's side of the match settle too
            print(json.dumps({"ready": True}), flush=True)
            for line in sys.stdin:
                name, _, size = line.strip().partition(" ")
                data = f"{name} ".ljust(int(size or 0), "x")
                publisher.publish(String(data=data))
                print(json.dumps({"sent": name, "t": time.monotonic()}), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def readline(proc: subprocess.Popen, timeout: float) -> dict:
    """The next JSON line of ``proc`` (non-JSON log lines are skipped)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            line = proc.stdout.readline()
            if not line:
                raise LadonError(f"probe process exited ({proc.poll()})")
            if line.startswith("{"):
                return json.loads(line)
    raise LadonError(f"no output from the probe process within {timeout:.0f} s")


def measure(tb: LinkTestbed, domain: int, xml: Path | None, trials: int, block_s: float) -> list[float]:
    """Delivery delays (s) of ``trials`` samples each published while the edge drops everything for ``block_s``."""
    pub, sub = start_pair(tb, domain, xml)
    rule = ["PREROUTING", "-i", tb.edge_dev, "-j", "DROP"]
    iptables = ["ip", "netns", "exec", tb.edge_ns, "iptables", "-t", "raw"]
    delays = []
    try:
        readline(pub, 60)
        for i in range(trials):
            _run([*iptables, "-I", *rule])
            pub.stdin.write(f"trial{i}\n")
            pub.stdin.flush()
            sent = readline(pub, 10)["t"]
            time.sleep(max(0.0, sent + block_s - time.monotonic()))
            _run([*iptables, "-D", *rule])
            got = readline(sub, 15)
            delays.append(got["t"] - sent)
            time.sleep(0.5)
    finally:
        _run([*iptables, "-D", *rule], check=False)
        stop(pub, sub)
    return delays


def start_pair(tb: LinkTestbed, domain: int, xml: Path | None) -> tuple[subprocess.Popen, subprocess.Popen]:
    """The probe's publisher (robot namespace; stdin: one ``NAME [SIZE]`` line per sample) and subscriber (edge
    namespace), over UDP only with the Fast DDS XML ``xml`` (endpoint settings; None = Fast DDS defaults)."""
    from ladon_bench.runner import node_env

    env = node_env(domain, False, xml)
    me = [sys.executable, "-m", "ladon_bench.repair_probe", "--role"]
    sub = subprocess.Popen(tb.netns_command("edge", [*me, "sub"]), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    pub = subprocess.Popen(tb.netns_command("robot", [*me, "pub"]), env=env, stdout=subprocess.PIPE,
                           stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    return pub, sub


def stop(*procs: subprocess.Popen) -> None:
    """Terminate the probe's child processes (killed after 5 s)."""
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ladon_bench.repair_probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    p.add_argument("--xml", default=None, help="Fast DDS XML to test (default: config/fastdds_reliable.xml)")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--block-ms", type=float, default=200.0)
    p.add_argument("--domain", type=int, default=217, help="ROS_DOMAIN_ID (0..232; the namespaces isolate it)")
    p.add_argument("--prefix", default="lrp-", help="name prefix of the namespaces and cgroups")
    p.add_argument("--subnet", type=int, default=217)
    args = p.parse_args(argv)
    if args.role:
        return _node(args.role)
    from ladon_bench.runner import udp_only_profiles
    from ladon_ros.launcher import config_dir

    source = Path(args.xml) if args.xml else config_dir() / "fastdds_reliable.xml"
    with LinkTestbed(prefix=args.prefix, subnet=args.subnet, robot_quota=None) as tb:
        tb.apply(LinkSpec())
        xml = udp_only_profiles(source, Path(f"/tmp/{args.prefix}repair_probe.xml"))
        result = {"xml": str(source), "block_s": args.block_ms / 1e3,
                  "with_xml_s": measure(tb, args.domain, xml, args.trials, args.block_ms / 1e3),
                  "without_xml_s": measure(tb, args.domain, None, args.trials, args.block_ms / 1e3)}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

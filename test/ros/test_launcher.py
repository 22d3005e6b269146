"""ladon-launch (ladon_ros.launcher), launch/split.launch.py and config/split.yaml against the nodes' parameters."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from rclpy.node import Node

from ladon_encoder_node.node import LadonEncoderNode
from ladon_ros import launcher
from ladon_ros.image_source import ImageSourceNode
from ladon_ros.results_relay import ResultsRelayNode
from ladon_server_node.node import LadonServerNode

REPO = Path(__file__).resolve().parents[2]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


def _dry_run(capsys, *args: str, pipeline: str = "split") -> list[list[str]]:
    assert launcher.main([pipeline, *args, "--dry-run"]) == 0
    return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def _params(argv: list[str]) -> dict[str, str]:
    """``-p name:=value`` items of a command line (later ones win, as in rcl)."""
    return dict(argv[i + 1].split(":=", 1) for i, a in enumerate(argv) if a == "-p")


def _remaps(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split(":=", 1) for i, a in enumerate(argv) if a == "-r")


# --------------------------------------------------------------------------------------------- dry run
def test_robot_launch_runs_the_encoder_from_a_bundle(capsys):
    (encoder,) = _dry_run(capsys, "bundle:=/opt/ladon/robot_bundle", "use_source:=false", pipeline="robot")
    assert Path(encoder[0]).name == "ladon_encoder" and _params(encoder)["bundle"] == "/opt/ladon/robot_bundle"
    (_, encoder) = _dry_run(capsys, pipeline="robot")
    assert "bundle" not in _params(encoder)  # the torch encoder of the model file by default


def test_dry_run_prints_three_node_commands(capsys):
    model = "/models/my model.pt"  # a space survives the printed command
    source, encoder, server = _dry_run(capsys, "--model", model, "--namespace", "/robot1", "--image-topic",
                                       "/camera/image_raw", "--tasks", "detection,segmentation", "--beta", "0.32",
                                       "--device", "cuda:0", "--rate", "5", "--max-frames", "4")
    assert [Path(c[0]).name for c in (source, encoder, server)] == ["ladon_image_source", "ladon_encoder",
                                                                     "ladon_server"]
    params_file = str(launcher.config_dir() / "split.yaml")
    for argv in (source, encoder, server):
        assert argv[1] == "--ros-args"
        assert argv[argv.index("--params-file") + 1] == params_file
        assert _remaps(argv)["__ns"] == "/robot1"
        assert argv[argv.index("--log-level") + 1] == "info"
        assert _params(argv)["autostart"] == "true"
    # the server's camera input (overlay.background: image) follows the same remap
    assert _remaps(source)["image"] == _remaps(encoder)["image"] == _remaps(server)["image"] == "/camera/image_raw"
    assert _params(source) == {"model": model, "source": "bundled", "rate_hz": "5.0", "max_frames": "4",
                               "loop": "false", "autostart": "true"}
    assert _params(encoder)["image_transport"] == _params(server)["image_transport"] == "raw"
    for argv in (encoder, server):
        p = _params(argv)
        assert (p["model"], p["random_weights"], p["beta"]) == (model, "false", "0.32")
    assert _params(encoder)["device"] == "cpu" and _params(server)["device"] == "cuda:0"
    p = _params(server)
    assert (p["tasks.classification"], p["tasks.detection"], p["tasks.segmentation"]) == ("false", "true", "true")


def test_use_source_false_drops_the_image_source(capsys):
    commands = _dry_run(capsys, "--random-weights", "--use-source", "false")
    assert [Path(c[0]).name for c in commands] == ["ladon_encoder", "ladon_server"]
    assert "model" not in _params(commands[0]) and _params(commands[0])["random_weights"] == "true"
    assert all("__ns" not in _remaps(c) for c in commands)


def test_extra_node_arguments_land_in_their_command(capsys):
    source, encoder, server = _dry_run(capsys, "--random-weights", "--encoder-arg=-p=x:=1",
                                       "--encoder-arg=-p=max_payload_bytes:=0", "--server-arg=-p=queue_size:=8",
                                       "--source-arg=-p=min_subscribers:=3")
    assert encoder[-4:] == ["-p", "x:=1", "-p", "max_payload_bytes:=0"]
    assert server[-2:] == ["-p", "queue_size:=8"] and source[-2:] == ["-p", "min_subscribers:=3"]
    assert "x" not in _params(server) and "queue_size" not in _params(encoder)


def test_params_file_can_be_replaced(capsys, tmp_path):
    custom = tmp_path / "mine.yaml"
    commands = _dry_run(capsys, "--random-weights", "--params-file", str(custom), "--log-level", "warn")
    assert all(c[c.index("--params-file") + 1] == str(custom) for c in commands)
    assert all(c[c.index("--log-level") + 1] == "warn" for c in commands)


def test_unknown_task_is_an_error():
    with pytest.raises(SystemExit, match=r"unknown task\(s\) \['tracking'\]"):
        launcher.main(["split", "--random-weights", "--tasks", "detection,tracking", "--dry-run"])


def test_no_model_means_the_bundled_demo_model(capsys):
    for argv in _dry_run(capsys):
        assert _params(argv)["model"] == str(REPO / "models" / "demo.pt")


def test_no_model_and_no_demo_model_exits_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LADON_MODELS_DIR", str(tmp_path))
    assert launcher.main(["split", "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "model:=FILE is required" in captured.err and captured.out == ""


def test_ros2_launch_style_arguments_override_flags(capsys):
    source, encoder, server = _dry_run(capsys, "--random-weights", "--image-topic", "/flag", "image_topic:=/cam/raw",
                                       "image_transport:=compressed", "namespace:=/r7", "beta:=1", "autostart:=false",
                                       "tasks:=detection")
    assert _remaps(encoder)["image"] == _remaps(server)["image"] == "/cam/raw"
    assert _params(encoder)["image_transport"] == _params(server)["image_transport"] == "compressed"
    assert all(_remaps(c)["__ns"] == "/r7" and _params(c)["autostart"] == "false" for c in (source, encoder, server))
    assert _params(encoder)["beta"] == _params(server)["beta"] == "1.0"
    assert _params(server)["tasks.detection"] == "true" and _params(server)["tasks.classification"] == "false"


def test_robot_and_edge_pipelines(capsys):
    robot = _dry_run(capsys, "--random-weights", "use_source:=false", pipeline="robot")
    assert [Path(c[0]).name for c in robot] == ["ladon_encoder"]
    (edge,) = _dry_run(capsys, "--random-weights", "robots:=['/robot1', '/robot2']", "device:=cuda:0",
                       "overlay_background:=image", pipeline="edge")
    assert Path(edge[0]).name == "ladon_server"
    p = _params(edge)
    assert (p["robots"], p["device"], p["overlay.background"]) == ("['/robot1', '/robot2']", "cuda:0", "image")


def test_results_relay_starts_next_to_the_encoder(capsys):
    """``results_relay:=true``: the relay in the robot's namespace with the params file and the link profile."""
    encoder, relay = _dry_run(capsys, "--random-weights", "use_source:=false", "results_relay:=true",
                              "namespace:=/robot1", "link_profile:=latency", pipeline="robot")
    assert Path(encoder[0]).name == "ladon_encoder"
    assert Path(relay[0]).name == "ladon_results_relay" and relay[1] == "--ros-args"
    assert relay[relay.index("--params-file") + 1] == str(launcher.config_dir() / "split.yaml")
    assert _remaps(relay)["__ns"] == "/robot1" and _params(relay)["link_profile"] == "latency"
    names = [Path(c[0]).name for c in _dry_run(capsys, "--random-weights", "results_relay:=true")]
    assert names == ["ladon_image_source", "ladon_encoder", "ladon_results_relay", "ladon_server"]


@pytest.mark.parametrize(("argv", "message"), [
    (["robot", "robots:=['/a']"], "unknown launch argument 'robots' for robot"),
    (["edge", "use_source:=false"], "unknown launch argument 'use_source' for edge"),
    (["split", "image_topic"], "expected name:=value"),
    (["split", "use_source:=maybe"], "use_source must be true or false"),
    (["edge", "results_relay:=true"], "unknown launch argument 'results_relay' for edge"),
    (["split", "rate:=fast"], "rate must be a float"),
])
def test_bad_launch_arguments_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        launcher.main([*argv, "--dry-run"])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_config_dir_finds_the_checkout_config():
    folder = launcher.config_dir()
    assert folder == REPO / "config"
    assert (folder / "split.yaml").is_file() and (folder / "fastdds_shm.xml").is_file()


def test_launch_env_sets_fastdds_profile_unless_already_set(monkeypatch):
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in launcher.launch_env({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    env = launcher.launch_env({"PATH": "/bin"})  # the default link profile, reliable: the short heartbeat
    assert env == {"PATH": "/bin", "FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_reliable.xml")}
    env = launcher.launch_env({"PATH": "/bin"}, profile="latency")
    assert env == {"PATH": "/bin", "FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_shm.xml")}
    assert launcher.launch_env({"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"})["FASTDDS_DEFAULT_PROFILES_FILE"] == \
        "/mine.xml"
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/from_env.xml")
    monkeypatch.setenv("LADON_TEST_MARKER", "1")
    env = launcher.launch_env()
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == "/from_env.xml" and env["LADON_TEST_MARKER"] == "1"


# --------------------------------------------------------------------------------------------- run
def test_run_stops_every_process_when_the_event_is_set():
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    start = time.monotonic()
    try:
        code = launcher.run([launcher.NodeCommand("a", SLEEPER), launcher.NodeCommand("b", SLEEPER)], stop=stop)
    finally:
        timer.cancel()
    assert code == 0
    assert time.monotonic() - start < 8.0


def test_run_returns_the_failing_exit_code_and_stops_the_rest(capsys):
    start = time.monotonic()
    code = launcher.run([launcher.NodeCommand("sleeper", SLEEPER),
                         launcher.NodeCommand("failing", [sys.executable, "-c", "import sys; sys.exit(3)"])])
    assert code == 3
    assert time.monotonic() - start < 8.0
    assert "failing exited with code 3; stopping the others" in capsys.readouterr().err


def test_run_returns_0_when_every_process_succeeds():
    ok = [sys.executable, "-c", "pass"]
    assert launcher.run([launcher.NodeCommand("a", ok), launcher.NodeCommand("b", ok)]) == 0


def test_run_stops_after_the_time_limit_and_passes_the_environment(tmp_path):
    out = tmp_path / "env.txt"
    writer = [sys.executable, "-c", f"import os, time; open({str(out)!r}, 'w').write(os.environ['LADON_X']); "
              "time.sleep(30)"]
    start = time.monotonic()
    assert launcher.run([launcher.NodeCommand("w", writer)], env={"LADON_X": "42"}, stop_after=1.5) == 0
    assert time.monotonic() - start < 8.0
    assert out.read_text() == "42"


def test_a_crashing_node_is_respawned_with_back_off_then_given_up(tmp_path, capsys):
    count = tmp_path / "starts"
    crasher = [sys.executable, "-c", f"open({str(count)!r}, 'a').write('x'); import sys; sys.exit(5)"]
    start = time.monotonic()
    code = launcher.run([launcher.NodeCommand("sleeper", SLEEPER), launcher.NodeCommand("crasher", crasher)],
                        respawn=2, respawn_delay_s=0.2)
    assert code == 5 and count.read_text() == "xxx"  # first start + 2 restarts
    assert time.monotonic() - start >= 0.2 + 0.4  # the delay doubles
    err = capsys.readouterr().err
    assert "restart 1/2 in 0.2 s" in err and "restart 2/2 in 0.4 s" in err and "after 2 restart(s)" in err


def test_a_configuration_error_is_not_respawned(tmp_path, capsys):
    count = tmp_path / "starts"
    bad_config = [sys.executable, "-c", f"open({str(count)!r}, 'a').write('x'); import sys; sys.exit(1)"]
    assert launcher.run([launcher.NodeCommand("bad", bad_config)], respawn=3, respawn_delay_s=0.1) == 1
    assert count.read_text() == "x" and "configuration error: not restarted" in capsys.readouterr().err


def test_a_respawned_node_that_recovers_keeps_the_launch_running(tmp_path):
    marker = tmp_path / "crashed_once"
    flaky = [sys.executable, "-c", f"import os, sys, time\nif not os.path.exists({str(marker)!r}):\n"
             f"    open({str(marker)!r}, 'w').close(); sys.exit(3)\ntime.sleep(30)"]
    assert launcher.run([launcher.NodeCommand("flaky", flaky)], respawn=1, respawn_delay_s=0.1, stop_after=2.0) == 0
    assert marker.exists()


def test_killing_the_runner_stops_its_nodes(tmp_path):
    pids = tmp_path / "pids"
    child = (f"import os, time; open({str(pids)!r}, 'a').write(str(os.getpid()) + '\\n'); time.sleep(60)")
    runner = (f"import sys; from ladon_ros import launcher; "
              f"launcher.run([launcher.NodeCommand('a', [sys.executable, '-c', {child!r}]), "
              f"launcher.NodeCommand('b', [sys.executable, '-c', {child!r}])])")
    proc = subprocess.Popen([sys.executable, "-c", runner])
    deadline = time.monotonic() + 60
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.kill()  # SIGKILL: the runner cannot clean up; the kernel tells the children
    proc.wait()
    deadline = time.monotonic() + 10
    for pid in map(int, pids.read_text().split()):
        while _alive(pid):
            assert time.monotonic() < deadline, f"node {pid} outlived its SIGKILLed runner"
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


# --------------------------------------------------------------------------------------------- split.yaml
def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.fixture(scope="module")
def split_yaml() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((REPO / "config" / "split.yaml").read_text())
    return {section.split("/")[-1]: _flatten(body["ros__parameters"]) for section, body in data.items()}


def test_split_yaml_has_one_section_per_node(split_yaml):
    assert set(split_yaml) == {"ladon_image_source", "ladon_encoder", "ladon_server", "ladon_results_relay"}
    data = yaml.safe_load((REPO / "config" / "split.yaml").read_text())
    assert all(section.startswith("/**/") for section in data)  # matches the nodes in any namespace


@pytest.fixture(scope="module")
def tiny_model_path(tiny_model_file) -> Path:
    return tiny_model_file


@pytest.mark.parametrize("node_class", [ImageSourceNode, LadonEncoderNode, LadonServerNode, ResultsRelayNode],
                         ids=["ladon_image_source", "ladon_encoder", "ladon_server", "ladon_results_relay"])
def test_split_yaml_sets_only_declared_parameters_and_they_apply(ros_context, split_yaml, tiny_model_path,
                                                                 node_class):
    """Each node started with the params file (namespaced, so the /** wildcard is exercised) declares every key
    the file sets for it, with the file's value and type."""
    node: Node = node_class(context=ros_context, namespace="/yaml_check", cli_args=[
        "--ros-args", "--params-file", str(REPO / "config" / "split.yaml"), "-p", f"model:={tiny_model_path}"])
    try:
        expected = split_yaml[node.get_name()]
        declared = set(node.list_parameters([], 0).names)
        assert set(expected) - declared == set(), f"{node.get_name()}: split.yaml sets undeclared parameters"
        for key, value in expected.items():
            if key == "model":
                continue
            got = node.get_parameter(key).value
            assert (list(got) if isinstance(value, list) else got) == value, key
            assert type(got) is type(value) or isinstance(value, list), key
    finally:
        node.destroy_node()

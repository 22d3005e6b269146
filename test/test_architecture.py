"""The dependency rule of the repository, read from the real imports (AST of every module), and the lean robot path.

    ladon            imports nothing of ours and nothing of ROS   (ROS-free runtime, train/eval/datasets)
    ladon_ros        imports ladon                                (adapters: conversions, params, topics, node base)
    nodes            import ladon_ros and ladon                   (ladon_encoder_node, ladon_server_node;
                                                                   the encoder node also ladon_robot)
    ladon_bench      imports any of the above                     (benchmarks; imported by nothing)
    ladon_robot      imports only torch-free ladon modules        (the robot runtime without torch; when present)

Function-level (lazy) imports count; imports under ``if TYPE_CHECKING:`` do not.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("ladon", "ladon_ros", "ladon_encoder_node", "ladon_server_node", "ladon_bench", "ladon_robot")
NODES = ("ladon_encoder_node", "ladon_server_node")
ROS_ROOTS = ("rclpy", "rosidl_runtime_py", "rosidl_parser", "builtin_interfaces", "rcl_interfaces", "launch",
             "launch_ros", "ament_index_python", "rosbag2_py", "message_filters", "cv_bridge")
ALLOWED: dict[str, set[str]] = {
    "ladon": {"ladon"},
    "ladon_ros": {"ladon", "ladon_ros"},
    "ladon_encoder_node": {"ladon", "ladon_ros", "ladon_encoder_node", "ladon_robot"},  # runtime: onnxruntime
    "ladon_server_node": {"ladon", "ladon_ros", "ladon_server_node"},
    "ladon_bench": {"ladon", "ladon_ros", "ladon_bench", "ladon_robot", *NODES},
    "ladon_robot": {"ladon", "ladon_robot"},
}
TORCH_FREE = ("ladon._version", "ladon.errors", "ladon.geometry", "ladon.packet", "ladon.tasks", "ladon.results",
              "ladon.model_set", "ladon.bundle_set",
              "ladon.features_message", "ladon.auth", "ladon.reassembly")
"""The ``ladon`` modules that load no torch: what the packet format and the torch-free robot runtime need."""


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str, path: Path) -> set[str]:
    """Absolute names of everything ``module`` imports (relative imports resolved), TYPE_CHECKING blocks excluded."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _root(name: str) -> str:
    return name.split(".")[0]


def _is_ros(name: str) -> bool:
    root = _root(name)
    return root in ROS_ROOTS or root.endswith("_msgs") or root.endswith("_srvs")


@pytest.mark.parametrize("package", [p for p in OURS if (ROOT / p).is_dir()])
def test_packages_import_only_what_the_rule_allows(package: str) -> None:
    wrong = []
    for module, path in _modules(package):
        for name in imports(module, path):
            if _root(name) in OURS and _root(name) not in ALLOWED[package]:
                wrong.append(f"{module} imports {name}")
            if package in ("ladon", "ladon_robot") and _is_ros(name):
                wrong.append(f"{module} imports ROS: {name}")
            if package == "ladon_robot" and _root(name) in ("torch", "torchvision", "compressai"):
                wrong.append(f"{module} imports {name}")
            if package == "ladon_robot" and _root(name) == "ladon" and name.count(".") >= 1 \
                    and not any(name == m or name.startswith(m + ".") for m in TORCH_FREE):
                wrong.append(f"{module} imports a torch module of ladon: {name}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_benchmarks() -> None:
    wrong = [f"{module} imports {name}" for package in OURS if package != "ladon_bench" and (ROOT / package).is_dir()
             for module, path in _modules(package) for name in imports(module, path) if _root(name) == "ladon_bench"]
    assert not wrong, "\n".join(wrong)


LADON_LAYERS = {"ladon.datasets": ("ladon.train", "ladon.evaluation"), "ladon.evaluation": ("ladon.train",)}
"""Layers inside ``ladon``: the data sets sit below training and evaluation; evaluation does not use training."""


@pytest.mark.parametrize("subpackage", sorted(LADON_LAYERS))
def test_layers_inside_ladon(subpackage: str) -> None:
    above = LADON_LAYERS[subpackage]
    wrong = [f"{module} imports {name}" for module, path in _modules(subpackage.replace(".", "/"))
             for name in sorted(imports(module, path)) if any(name == a or name.startswith(a + ".") for a in above)]
    assert not wrong, "\n".join(wrong)


def _ladon_graph() -> dict[str, set[str]]:
    modules = dict(_modules("ladon"))
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in imports(module, path):
            while name and name not in modules:  # `from .x import Name` -> ladon.x
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        # importing ladon.a.b runs ladon/__init__ and ladon/a/__init__ first
        graph[module] = targets
    return graph


def test_ladon_has_no_import_cycles() -> None:
    graph = _ladon_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target):], target])
            elif target not in state:
                dfs(target, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            dfs(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_rule_checker_sees_relative_lazy_and_type_checking_imports(tmp_path) -> None:
    path = tmp_path / "mod.py"
    path.write_text("from typing import TYPE_CHECKING\nfrom . import errors\nfrom ..x import y\n"
                    "def f():\n    import rclpy\nif TYPE_CHECKING:\n    import ladon_ros\n")
    found = imports("ladon.sub.mod", path)
    assert {"ladon.sub.errors", "ladon.x.y", "rclpy"} <= found and "ladon_ros" not in found


def _fresh_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_ladon_imports_without_ros_or_adapters() -> None:
    blocked = ["rclpy", "ladon_ros", "ladon_msgs", "vision_msgs", "sensor_msgs", "std_msgs", "diagnostic_msgs",
               "ladon_bench", *NODES]
    modules = [m for m, _ in _modules("ladon") if not m.endswith("__main__")]
    _fresh_python("import importlib, sys\n"
                  + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
                  + f"for m in {modules!r}:\n    importlib.import_module(m)\n")


def test_the_packet_format_and_sizes_load_no_torch() -> None:
    out = _fresh_python(f"import sys\nfor m in {list(TORCH_FREE)!r}:\n    __import__(m)\n"
                        "import ladon\nladon.Packet, ladon.Geometry, ladon.TASKS\n"
                        "print(sorted(n for n in ('torch', 'cv2', 'compressai') if n in sys.modules))")
    assert out.strip() == "[]"


def test_the_robot_encoder_loads_no_server_code() -> None:
    # torchvision itself is loaded: compressai's package __init__ imports its datasets/transforms, which import
    # torchvision (and so every torchvision.models module). The lean robot path without torch is ladon_robot.
    out = _fresh_python("import sys\nimport ladon.encoder\n"
                        "print(sorted(m for m in sys.modules if m in ('ladon.server', 'ladon.heads', 'ladon.model', "
                        "'ladon.backbones', 'ladon.checkpoints', 'ladon.visualize', 'cv2')))")
    assert out.strip() == "[]"

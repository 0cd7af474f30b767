"""The package's layers import only downward, without cycles, and config loads without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "eqcg"

# data -> cg -> graphs -> models -> simulation/training -> evaluation -> commands; a module may
# import its own part and any lower layer, never a higher one nor a sibling part of its own
# layer (the foundation's parts and the entry points of the top layer may use each other).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "units", "keys", "config", "runtime"),
    ("data",),
    ("cg", "systems", "metrics"),
    ("graphs",),
    ("models",),
    ("simulation", "training"),
    ("evaluation",),
    ("commands", "testing", "__main__"),
)
SHARED_LAYERS = (LAYERS[0], LAYERS[-1])


def _part(module: str) -> str:
    """``eqcg.models.simulator`` -> ``models``; ``eqcg.config`` -> ``config``."""
    return module.split(".")[1]


def _rank(part: str) -> int:
    for rank, parts in enumerate(LAYERS):
        if part in parts:
            return rank
    raise AssertionError(f"eqcg.{part} is in no layer of tests/test_layers.py: place it there")


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = PACKAGE) -> list[tuple[str, int, bool]]:
    """``(imported eqcg module, line, at module level)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target + "." + a.name for a in node.names]
            targets = [n for n in names if _is_module(n, root)] or [target]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for name in targets:
            if name.startswith("eqcg.") or name == "eqcg":
                found.append((name, node.lineno, id(node) in top_level))
    return found


def _is_module(name: str, root: Path) -> bool:
    relative = Path(*name.split("."))
    return (root.parent / relative).with_suffix(".py").exists() or (
        root.parent / relative / "__init__.py").exists()


def _modules(root: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if p != root / "__init__.py")


def upward_imports(root: Path = PACKAGE) -> list[str]:
    """Every import in the package at ``root`` that goes against :data:`LAYERS`."""
    upward = []
    for path in _modules(root):
        source = _module_name(path, root)
        where = path.relative_to(root.parent)
        for target, line, _ in _imports(path, root):
            if target == "eqcg":
                upward.append(f"{where}:{line} imports eqcg itself")
                continue
            own, other = _part(source), _part(target)
            if own == other:
                continue
            if _rank(other) > _rank(own) or (
                _rank(other) == _rank(own) and not any(own in layer for layer in SHARED_LAYERS)
            ):
                upward.append(f"{where}:{line}: eqcg.{own} (layer {_rank(own)}) imports "
                              f"{target} (layer {_rank(other)})")
    return upward


def test_every_import_points_down_the_layers():
    upward = upward_imports()
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules():
    graph = {_module_name(p): {t for t, _, top in _imports(p) if top} for p in _modules()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target in graph and target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_upward_and_sibling_imports(tmp_path):
    root = tmp_path / "eqcg"
    for module, text in {
        "data/reader.py": "from eqcg.models.simulator import Simulator\n",
        "models/simulator.py": "from eqcg import keys\nfrom eqcg.data import reader\n",
        "training/loop.py": "def f():\n    from eqcg.simulation.rollout import rollout\n",
        "simulation/rollout.py": "from ..models.simulator import Simulator\n",
        "keys.py": "",
    }.items():
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_text(text)
    (root / "data" / "__init__.py").write_text("")
    found = upward_imports(root)
    assert len(found) == 2, found
    assert found[0].startswith("eqcg/data/reader.py:1: eqcg.data (layer 1) imports "
                               "eqcg.models.simulator (layer 4)")
    assert found[1].startswith("eqcg/training/loop.py:2: eqcg.training (layer 5) imports "
                               "eqcg.simulation.rollout (layer 5)")


def test_config_validates_without_importing_torch(tmp_path):
    config = Path(__file__).resolve().parents[1] / "configs" / "polymer_equivariant.yaml"
    code = (
        "import sys\n"
        "from eqcg.config import load_config\n"
        f"config = load_config({str(config)!r}, ['model.latent_dim=8'])\n"
        "assert config.model.latent_dim == 8\n"
        "heavy = sorted(m for m in ('torch', 'e3nn', 'torch_geometric') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

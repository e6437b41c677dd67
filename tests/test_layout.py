"""Module layout: cwtnet's imports run one way, and the command line starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Function-level imports kept for import cost alone (each says so where it is); they still
# count as edges for the circle check below.
IMPORT_COST = {"cwtnet.config._check_loss_and_model_options imports cwtnet.losses"}


def _module(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _cwtnet_imports(node: ast.AST) -> list[str]:
    """Names of cwtnet modules an import statement brings in (``from cwtnet import x`` too)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "cwtnet"]
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cwtnet":
        return [node.module]
    return []


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    """Top-level cwtnet -> cwtnet edges, and every cwtnet import made inside a function."""
    edges: dict[str, set[str]] = {}
    hidden: list[str] = []
    for path in sorted((REPO / "cwtnet").rglob("*.py")):
        mod = _module(path)
        tree = ast.parse(path.read_text())
        edges[mod] = {m for stmt in tree.body for m in _cwtnet_imports(stmt)}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    for m in _cwtnet_imports(node):
                        edges[mod].add(m)
                        hidden.append(f"{mod}.{fn.name} imports {m}")
    return edges, hidden


def test_cwtnet_imports_are_top_level_and_acyclic() -> None:
    edges, hidden = _graph()
    assert set(hidden) <= IMPORT_COST, sorted(set(hidden) - IMPORT_COST)
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(mod: str, trail: list[str]) -> None:
        if state.get(mod) == 2:
            return
        assert state.get(mod) != 1, " -> ".join([*trail, mod])
        state[mod] = 1
        for dep in sorted(edges.get(mod, ())):
            # a package import runs its __init__ first: follow it, and the module itself
            visit(dep, [*trail, mod])
        state[mod] = 2

    for mod in sorted(edges):
        visit(mod, [])


def test_lower_modules_do_not_import_the_trainer_or_evaluation() -> None:
    edges, _ = _graph()
    for low in ("cwtnet.config", "cwtnet.checkpoint", "cwtnet.data", "cwtnet.runtime",
                "cwtnet.runlog", "cwtnet.infer", "cwtnet.model"):
        assert not edges[low] & {"cwtnet.train", "cwtnet.evaluate", "cwtnet.demo"}, low
    assert "cwtnet.train" not in edges["cwtnet.evaluate"]


def test_command_line_modules_import_without_torch() -> None:
    code = ("import sys, cli.train, cli.evaluate, cli.sr, cli.demo, cli.mlcamsr, cli.experiment, cli.utility; "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"

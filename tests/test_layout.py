"""The package's shape: one import name, layers that import only downwards, no import cycles, no
``sys.path`` edits outside the tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder in the checkout -> installed name
PACKAGES = {"faceocc": "faceocc", "ops": "faceocc.ops", "render": "faceocc.render",
            "dali_pipes": "faceocc.dali_pipes"}
# lower layers never import higher ones; the front door (faceocc/__init__) imports lazily from any
LAYERS = [
    ("faceocc.resources", "faceocc.recordio"),
    ("faceocc.datasets", "faceocc.ops", "faceocc.runtime"),
    ("faceocc.render",),
    ("faceocc.dali_pipes",),
    ("faceocc.arcface", "faceocc.functional", "faceocc.transforms"),
    ("faceocc.align", "faceocc.preview", "faceocc.demo", "faceocc.cli"),
]


def modules() -> dict[str, Path]:
    found = {}
    for folder, name in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if folder == "faceocc" and parts and parts[0] in PACKAGES:
                continue
            found[".".join([name, *parts])] = path
    return found


def imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """faceocc modules that ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def layer(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    return None


def test_only_faceocc_is_imported_by_the_product():
    for module, path in modules().items():
        tops = {name.split(".")[0] for name in imports(path, module, False)}
        assert not tops & {"ops", "render", "dali_pipes", "benchmarks", "tests"}, (module, tops)


def test_layers_import_only_downwards():
    mods = modules()
    for module, path in mods.items():
        own = layer(module)
        if own is None:
            assert module == "faceocc", f"{module} belongs to no layer"
            continue
        for name in imports(path, module, False):
            other = layer(name)
            if other is not None and name in mods:
                assert other <= own, f"{module} (layer {own}) imports {name} (layer {other})"


def test_no_import_cycles():
    mods = modules()
    graph = {m: {n for n in imports(p, m, False) if n in mods and n != m} for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_no_sys_path_edits_outside_the_tests():
    for folder in (*PACKAGES, "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "sys.path" not in path.read_text(), path


def test_the_layout_checks_can_fail(tmp_path):
    """The checks above see what they look for: an upward import and a cycle, planted."""
    upward = tmp_path / "x.py"
    upward.write_text("def f():\n    from faceocc.cli import main\n")
    assert "faceocc.cli" in imports(upward, "faceocc.ops.x", False)
    assert layer("faceocc.cli") > layer("faceocc.ops.x")
    rel = tmp_path / "__init__.py"
    rel.write_text("from .sampler import Sampler\nfrom ..recordio import RecordDataset\n")
    assert {"faceocc.ops.sampler", "faceocc.recordio"} <= imports(rel, "faceocc.ops", True)

"""The package's import structure: no import cycles, and the import-linter contracts of pyproject.toml."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the test extra)")

ROOT = Path(__file__).resolve().parents[1]


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(edges[w])))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_no_import_cycle_among_pkpd_modules():
    # function-level (lazy) imports count: grimp records every import statement
    g = grimp.build_graph("pkpd")
    edges = {m: sorted(g.find_modules_directly_imported_by(m)) for m in sorted(g.modules)}
    assert "pkpd.calibrate._store" in edges and "pkpd.design._optimise" in edges
    assert _cycles(edges) == []


def test_modalities_and_model_stay_below_calibrate_and_simulate():
    g = grimp.build_graph("pkpd")
    assert not g.chain_exists(importer="pkpd.modalities", imported="pkpd.calibrate")
    assert not g.chain_exists(importer="pkpd.model", imported="pkpd.simulate")
    assert not g.chain_exists(importer="pkpd.params", imported="pkpd.fit")


def test_import_linter_contracts_are_kept():
    exe = Path(sys.executable).parent / ("lint-imports.exe" if os.name == "nt" else "lint-imports")
    if not exe.exists():
        pytest.skip("lint-imports is not installed (pip install -e '.[test]')")
    run = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_no_function_in_the_package_is_longer_than_100_lines():
    import ast

    long = []
    for path in sorted((ROOT / "src" / "pkpd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 100:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 100 lines (split them into named steps): " + "; ".join(long)

"""The import graph of the project, checked against its layers, drawn as a picture.

    python scripts/import_graph.py                 # check; exit 1 and name each offending import if any
    python scripts/import_graph.py --draw docs/    # also write docs/import_graph.dot and (with Graphviz's
                                                   # `dot` installed: apt-get install graphviz) .png/.svg

Every `import` in swirl/, tasks/ and flows/ counts, including those inside functions (a lazy import is still a
dependency). Rules:
- `swirl` is layered (LAYERS, lowest first): a module may import its own layer or lower ones, never higher.
- No cycle between modules, nor between the units of the picture (a package, or a top-level module).
- `swirl` never imports Prefect, `tasks` or `flows`; `tasks` never imports `flows` (flows -> tasks -> swirl).
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("swirl", "tasks", "flows")

# swirl's layers, lowest first. A unit is a package (every module under it) or a top-level module.
LAYERS: tuple[tuple[str, ...], ...] = (
    # vocabulary: tables, protocol, sections; the machine (ports, memory)
    ("swirl", "swirl.sections", "swirl.tables", "swirl.protocol", "swirl.system"),
    ("swirl.store", "swirl.lease", "swirl.table_io"),  # the versioned store, its leases, its table readers
    ("swirl.tools", "swirl.engines", "swirl.data", "swirl.models"),  # components
    # episodes and their sub-trajectories (the steps table); where sharded stages run their shards
    ("swirl.rollout", "swirl.episodes", "swirl.subtrajectories", "swirl.viewer", "swirl.executors"),
    ("swirl.judging", "swirl.evaluation"),  # judging episodes and scoring policies
    ("swirl.training",),  # the trainer
    ("swirl.stages",),  # the versioned stages (one contract)
    ("swirl.config",),  # the run config: composes every subsystem's config
)
FORBIDDEN = {"swirl": ("prefect", "tasks", "flows"), "tasks": ("flows",)}


def modules() -> Iterator[tuple[str, str]]:
    """(module name, file path) of every Python file in the project packages."""
    for pkg in PACKAGES:
        for dirpath, _, names in os.walk(os.path.join(ROOT, pkg)):
            for n in sorted(names):
                if n.endswith(".py"):
                    path = os.path.join(dirpath, n)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    yield rel.removesuffix(".__init__"), path


def imports(name: str, path: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement in the file, relative imports resolved."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:  # `from pkg import module` imports the module when there is one
                yield (f"{base}.{a.name}" if f"{base}.{a.name}" in KNOWN else base), node.lineno


KNOWN: set[str] = set()


def unit_of(module: str) -> str:
    """The picture's unit of a module: the longest LAYERS entry (or package) that contains it."""
    units = [u for layer in LAYERS for u in layer]
    best = max((u for u in units if module == u or module.startswith(u + ".")), key=len, default=None)
    return best or ".".join(module.split(".")[:2] if module.startswith("swirl.") else module.split(".")[:1])


def layer_of(unit: str) -> int | None:
    return next((i for i, layer in enumerate(LAYERS) if unit in layer), None)


def graph() -> dict[str, dict[str, int]]:
    """module -> {imported project module: first line}."""
    files = dict(modules())
    KNOWN.clear()
    KNOWN.update(files)
    out: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        deps: dict[str, int] = {}
        for target, line in imports(name, path):
            top = target.split(".")[0]
            if top in PACKAGES or top == "prefect":
                while target not in KNOWN and "." in target and top != "prefect":
                    target = target.rpartition(".")[0]
                if target != name:
                    deps.setdefault(target, line)
        out[name] = deps
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def problems(g: dict[str, dict[str, int]]) -> list[str]:
    """Every broken rule, one line each, naming the file and line of the import."""
    out = []
    files = dict(modules())
    for mod, deps in sorted(g.items()):
        path = os.path.relpath(files[mod], ROOT) if mod in files else mod
        top = mod.split(".")[0]
        for target, line in sorted(deps.items()):
            if target.split(".")[0] in FORBIDDEN.get(top, ()):
                out.append(
                    f"{path}:{line}: {mod} imports {target}; {top} must not import {target.split('.')[0]}"
                )
                continue
            if top != "swirl" or not target.startswith("swirl"):
                continue
            a, b = layer_of(unit_of(mod)), layer_of(unit_of(target))
            if a is None or b is None:
                out.append(
                    f"{path}:{line}: {unit_of(mod if a is None else target)} is in no layer; add it to LAYERS"
                )
            elif b > a:
                out.append(
                    f"{path}:{line}: upward import: {mod} (layer {a}) imports {target} (layer {b}, "
                    f"{unit_of(target)})"
                )
    module_edges = {m: {t for t in d if t in KNOWN} for m, d in g.items()}
    for comp in cycles(module_edges):
        out.append(f"import cycle between modules: {' <-> '.join(comp)}")
    for comp in cycles(unit_edges(g)):
        out.append(f"import cycle between units: {' <-> '.join(comp)}")
    return out


def unit_edges(g: dict[str, dict[str, int]]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for mod, deps in g.items():
        for t in deps:
            if t in KNOWN and unit_of(t) != unit_of(mod):
                edges[unit_of(mod)].add(unit_of(t))
    return edges


def dot(g: dict[str, dict[str, int]]) -> str:
    """Graphviz source: one node per unit, ranked by layer (flows on top), edges weighted by import count."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for mod, deps in g.items():
        for t in deps:
            if t in KNOWN and unit_of(t) != unit_of(mod):
                counts[(unit_of(mod), unit_of(t))] += 1
    units = sorted({u for e in counts for u in e} | {unit_of(m) for m in g})
    lines = [
        "digraph imports {",
        '  rankdir=TB; node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [color="#555555", arrowsize=0.6];',
    ]
    palette = ["#f2f2f2", "#e3f2fd", "#e8f5e9", "#fff8e1", "#fce4ec", "#ede7f6", "#e0f7fa", "#fff3e0"]
    for i, layer in reversed(list(enumerate(LAYERS))):
        members = [u for u in units if u in layer]
        lines.append(f"  {{ rank=same; {' '.join(f'{chr(34)}{u}{chr(34)}' for u in members)} }}")
        for u in members:
            lines.append(f'  "{u}" [fillcolor="{palette[i % len(palette)]}", label="{u}\\nlayer {i}"];')
    for u in units:
        if layer_of(u) is None:
            lines.append(f'  "{u}" [fillcolor="#d7ccc8"];')
    for (a, b), n in sorted(counts.items()):
        lines.append(f'  "{a}" -> "{b}" [penwidth={min(0.6 + 0.25 * n, 3.5):.2f}, tooltip="{n} imports"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draw", metavar="FOLDER", help="write import_graph.dot (and .png/.svg with Graphviz)")
    args = ap.parse_args(argv)
    g = graph()
    if args.draw:
        os.makedirs(args.draw, exist_ok=True)
        base = os.path.join(args.draw, "import_graph")
        with open(base + ".dot", "w", encoding="utf-8") as f:
            f.write(dot(g))
        if shutil.which("dot"):
            for fmt in ("png", "svg"):
                subprocess.run(
                    ["dot", f"-T{fmt}", "-Gdpi=110", base + ".dot", "-o", f"{base}.{fmt}"], check=True
                )
            print(f"wrote {base}.dot, .png and .svg")
        else:
            print(f"wrote {base}.dot (install Graphviz, e.g. apt-get install graphviz, for the picture)")
    found = problems(g)
    for p in found:
        print(p)
    n = sum(len(d) for d in g.values())
    print(
        f"{len(g)} modules, {n} project imports: "
        + ("OK (layers hold, no cycle)" if not found else f"{len(found)} problem(s)")
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

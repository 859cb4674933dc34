"""No function in the project's packages (swirl/, tasks/, flows/) is longer than MAX_LINES lines, from its
`def` line to its last line (docstring and comments included); ruff's C901 keeps their complexity down."""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("swirl", "tasks", "flows")
MAX_LINES = 80
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def long_functions(root: str, packages: tuple[str, ...], max_lines: int) -> list[str]:
    """`file:line function (N lines)` for every function (or method) of the packages' .py files longer than
    `max_lines` lines."""
    found = []
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read(), filename=path)
                rel = os.path.relpath(path, root)
                functions = [n for n in ast.walk(tree) if isinstance(n, FUNCTIONS)]
                for node in sorted(functions, key=lambda n: n.lineno):
                    n = node.end_lineno - node.lineno + 1
                    if n > max_lines:
                        found.append(f"{rel}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_function_is_longer_than_the_limit():
    too_long = long_functions(ROOT, PACKAGES, MAX_LINES)
    assert not too_long, f"functions over {MAX_LINES} lines (split them):\n" + "\n".join(too_long)


def test_the_check_names_a_long_function(tmp_path):
    (tmp_path / "swirl").mkdir()
    body = "".join(f"        x{i} = {i}\n" for i in range(5))
    (tmp_path / "swirl" / "m.py").write_text(
        f"def short():\n    pass\n\n\nclass C:\n    async def long(self):\n{body}"
    )
    assert long_functions(str(tmp_path), ("swirl",), 5) == ["swirl/m.py:6 long (6 lines)"]

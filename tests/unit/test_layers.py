"""The import graph keeps its layers (scripts/import_graph.py): checked on the tree, and the checker itself
is checked on a small tree with an upward import, a cycle and a Prefect import."""

from __future__ import annotations

import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "scripts", "import_graph.py")


@pytest.fixture()
def import_graph(monkeypatch):
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_project_keeps_its_layers_and_has_no_cycle(import_graph):
    assert import_graph.problems(import_graph.graph()) == []


def test_the_checker_finds_upward_imports_cycles_and_prefect(import_graph, tmp_path, monkeypatch):
    files = {
        "swirl/__init__.py": "",
        "swirl/config.py": "from swirl.engines import x\n",
        "swirl/engines/__init__.py": "",
        "swirl/engines/x.py": "def f():\n    from swirl.config import RunConfig\n",  # upward, lazy
        "swirl/tools/__init__.py": "",
        "swirl/tools/a.py": "import swirl.tools.b\nimport prefect\n",
        "swirl/tools/b.py": "from swirl.tools import a\n",
        "tasks/__init__.py": "",
        "flows/__init__.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(import_graph, "ROOT", str(tmp_path))
    found = "\n".join(import_graph.problems(import_graph.graph()))
    assert (
        "swirl/engines/x.py:2: upward import: swirl.engines.x (layer 2) imports swirl.config (layer 7"
        in found
    )
    assert "swirl/tools/a.py:2: swirl.tools.a imports prefect" in found
    assert "import cycle between modules: swirl.tools.a <-> swirl.tools.b" in found
    assert "import cycle between units: swirl.config <-> swirl.engines" in found

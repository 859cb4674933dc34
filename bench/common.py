"""What the benchmark scripts share. They run as `python bench/NAME.py` and put the repository root on
sys.path first, so that `from bench.common import ...` finds this module."""

from __future__ import annotations

import json
import os
from typing import Any


def write_result(result: Any, path: str, markdown: str | None = None) -> None:
    """Writes `result` as indented JSON to `path` (making its folder), `markdown` (when given) beside it as
    PATH.md, and prints `wrote PATH`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    if markdown is not None:
        with open(os.path.splitext(path)[0] + ".md", "w") as f:
            f.write(markdown)
    print(f"wrote {path}")

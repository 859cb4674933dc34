"""Evaluation reports: a Markdown report and a policy × dataset heatmap from evaluated cells.

A `Cell` is one policy evaluated on one dataset: rule-graded accuracy, LLM-judge accuracy when a judge is
configured, the paired comparison with the base policy on the same questions, and episode statistics.

- `markdown_report`: one row per cell with intervals, the gain over base and McNemar's p, then a cross-task
  table (policies × datasets, like the SWiRL paper's) and a short note on how to read it.
- `cross_task_matrix`: the numbers behind the cross-task table.
- `heatmap_png`: the cross-task table as a heatmap (matplotlib, Agg canvas, no pyplot global state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from swirl.evaluation.metrics import PairedComparison, Proportion, holm_adjusted

BASE = "base"
DASH = "—"


@dataclass(frozen=True)
class Cell:
    """One (policy, dataset) evaluation."""

    policy: str  # label, e.g. "base", "trained", or a user-given name
    trained_on: str  # what the policy was trained on, e.g. "gsm8k+hotpotqa"; "" for the base model
    dataset: str
    rule: Proportion  # rule-graded accuracy
    judge: Proportion | None  # LLM-judge accuracy (None when no judge is configured)
    vs_base: PairedComparison | None  # paired comparison with the base policy (None for base itself)
    episode: Mapping[str, float]  # episode_stats(...)

    @property
    def primary(self) -> Proportion:
        """The headline accuracy: the judge's when there is one, else the rule's."""
        return self.judge if self.judge is not None else self.rule

    @property
    def metric(self) -> str:
        return "judge" if self.judge is not None else "rule"


# --- formatting helpers -------------------------------------------------------------------------------------


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _num(x: float | None, fmt: str = ".3f") -> str:
    return DASH if _missing(x) else format(x, fmt)


def _pct(rel: float | None) -> str:
    return DASH if _missing(rel) else f"{100 * rel:+.1f}%"


def _interval(p: Proportion) -> str:
    return f"{_num(p.rate)} [{_num(p.low)}, {_num(p.high)}]"


def _gain(c: PairedComparison | None) -> str:
    if c is None:
        return DASH
    text = f"{c.diff:+.3f}"
    return text if c.relative_gain is None else f"{text} ({_pct(c.relative_gain)})"


def _gain_interval(c: PairedComparison | None) -> str:
    return DASH if c is None else f"[{c.diff_low:+.2f}, {c.diff_high:+.2f}]"


def _p_value(c: PairedComparison | None) -> str:
    return DASH if c is None else f"{c.mcnemar_p:.3g}"


def row_label(cell: Cell) -> str:
    """`policy (trained on X)`, or just the policy name when it was not trained (the base model)."""
    return f"{cell.policy} (trained on {cell.trained_on})" if cell.trained_on else cell.policy


def _is_base(cell: Cell) -> bool:
    return cell.policy == BASE


# --- Markdown -----------------------------------------------------------------------------------------------

_COLUMNS = [
    "policy",
    "trained on",
    "dataset",
    "n",
    "accuracy [95% CI]",
    "rule",
    "judge",
    "gain vs base",
    "gain 95% CI",
    "McNemar p",
    "Holm p",
    "actions/episode",
    "invalid rate",
    "no answer",
]

_HOW_TO_READ = """\
## How to read this

- *accuracy* is the judge's verdict when an LLM judge is configured, else the rule-based grade (metric in
  parentheses); its interval is a 95% Wilson score interval; *n* is the number of sampled questions.
- *gain vs base* is the policy's accuracy minus the base model's on the same questions (relative gain in
  parentheses); its 95% interval is a paired bootstrap over questions.
- *McNemar p* is McNemar's exact test: among the questions where the two policies disagree, does one side win
  more often than a coin flip would? p < 0.05 (with a gain interval that excludes 0) means the difference is
  unlikely to be sampling noise; a larger p means these questions cannot tell the two policies apart.
- *Holm p* corrects McNemar's p for the number of comparisons in this table (Holm's step-down method): with
  many rows, some p < 0.05 arise by chance; a Holm p < 0.05 holds for the whole table at once.
"""


def _table_row(cell: Cell, holm: float | None) -> list[str]:
    ep = cell.episode
    return [
        cell.policy,
        cell.trained_on or DASH,
        cell.dataset,
        str(cell.primary.n),
        f"{_interval(cell.primary)} ({cell.metric})",
        _num(cell.rule.rate),
        DASH if cell.judge is None else _num(cell.judge.rate),
        _gain(cell.vs_base),
        _gain_interval(cell.vs_base),
        _p_value(cell.vs_base),
        DASH if holm is None else f"{holm:.3g}",
        _num(ep.get("actions_per_episode"), ".2f"),
        _num(ep.get("invalid_action_rate")),
        _num(ep.get("no_answer_rate")),
    ]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _sorted_cells(cells: Sequence[Cell]) -> list[Cell]:
    """By dataset, then policy with the base policy first."""
    return sorted(cells, key=lambda c: (c.dataset, not _is_base(c), c.policy, c.trained_on))


def markdown_report(cells: Sequence[Cell], title: str) -> str:
    """The evaluation report: per-cell table, cross-task table and a reading guide."""
    lines = [f"# {title}", "", "## Accuracy per policy and dataset", ""]
    ordered = _sorted_cells(cells)
    compared = [c for c in ordered if c.vs_base is not None]
    holm = dict(zip(map(id, compared), holm_adjusted([c.vs_base.mcnemar_p for c in compared]), strict=True))
    lines += _markdown_table(_COLUMNS, [_table_row(c, holm.get(id(c))) for c in ordered])
    lines += ["", "## Cross-task table", ""]
    rows, cols, values, gains = cross_task_matrix(cells)
    body = [
        [label] + [_cross_cell(v, g) for v, g in zip(vals, gs, strict=True)]
        for label, vals, gs in zip(rows, values, gains, strict=True)
    ]
    lines += _markdown_table(["policy"] + cols, body)
    lines += ["", _HOW_TO_READ]
    return "\n".join(lines)


def _cross_cell(value: float | None, rel_gain: float | None) -> str:
    if value is None:
        return DASH
    return _num(value) if rel_gain is None else f"{_num(value)} ({_pct(rel_gain)})"


# --- cross-task matrix --------------------------------------------------------------------------------------


def _row_labels(cells: Sequence[Cell]) -> list[str]:
    """Base rows first, then the others in order of first appearance."""
    ordered = [c for c in cells if _is_base(c)] + [c for c in cells if not _is_base(c)]
    return list(dict.fromkeys(row_label(c) for c in ordered))


def cross_task_matrix(
    cells: Sequence[Cell],
) -> tuple[list[str], list[str], list[list[float | None]], list[list[float | None]]]:
    """(row labels, datasets, primary accuracy [row][col] or None, relative gain vs base or None)."""
    rows = _row_labels(cells)
    cols = sorted({c.dataset for c in cells})
    values: list[list[float | None]] = [[None] * len(cols) for _ in rows]
    gains: list[list[float | None]] = [[None] * len(cols) for _ in rows]
    seen: set[tuple[str, str]] = set()
    for cell in cells:
        key = (row_label(cell), cell.dataset)
        if key in seen:
            raise ValueError(f"two cells for policy {key[0]!r} on dataset {key[1]!r}")
        seen.add(key)
        i, j = rows.index(key[0]), cols.index(cell.dataset)
        rate = cell.primary.rate
        values[i][j] = None if _missing(rate) else rate
        gains[i][j] = cell.vs_base.relative_gain if cell.vs_base is not None else None
    return rows, cols, values, gains


# --- heatmap ------------------------------------------------------------------------------------------------


def _annotation(cell: Cell | None) -> str:
    if cell is None or _missing(cell.primary.rate):
        return DASH
    p = cell.primary
    second = [f"[{p.low:.2f}, {p.high:.2f}]"]
    if cell.vs_base is not None and cell.vs_base.relative_gain is not None:
        second.insert(0, _pct(cell.vs_base.relative_gain))
    return f"{p.rate:.3f}\n" + " ".join(second)


def _text_colour(rgba: Sequence[float]) -> str:
    """Black on light cells, white on dark ones (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def heatmap_png(cells: Sequence[Cell], path: str, title: str) -> None:
    """Write the cross-task table as a heatmap PNG: rows = policies, columns = datasets, colour = accuracy."""
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols, values, _ = cross_task_matrix(cells)
    by_key = {(row_label(c), c.dataset): c for c in cells}
    data = np.ma.masked_invalid(
        np.array([[np.nan if v is None else v for v in r] for r in values], dtype=float)
    )
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d0d0d0")

    label_width = 0.075 * max((len(r) for r in rows), default=4)
    fig = Figure(figsize=(1.2 + label_width + 1.9 * len(cols), 1.3 + 0.75 * len(rows)), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(data, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, label="accuracy", fraction=0.05, pad=0.03)
    ax.set_xticks(range(len(cols)), labels=cols)
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    ax.set_title(title, pad=12)
    ax.set_xlabel("each cell: accuracy, then gain relative to base and the 95% Wilson interval", fontsize=8)
    for i, label in enumerate(rows):
        for j, dataset in enumerate(cols):
            value = values[i][j]
            colour = "black" if value is None else _text_colour(cmap(value))
            text = _annotation(by_key.get((label, dataset)))
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9, linespacing=1.4)
    fig.tight_layout()
    fig.savefig(path, dpi=120)

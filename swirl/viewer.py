"""Readable transcripts of trajectories: Markdown (the generate stage's artifact) and rich (the terminal)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swirl.protocol import parse_action

_ROLE_STYLE = {"user": "cyan", "assistant": "green", "system": "magenta"}


def _steps(row: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(role, label, content) per message; assistant messages are labelled with their action kind."""
    out = []
    for i, m in enumerate(row["messages"]):
        if m["role"] == "assistant":
            label = (
                f"action {len([1 for x in row['messages'][:i] if x['role'] == 'assistant']) + 1}: "
                f"{parse_action(m['content']).kind}"
            )
        elif i == 0:
            label = "prompt"
        else:
            label = "observation"
        out.append((m["role"], label, m["content"]))
    return out


def to_markdown(rows: Sequence[Mapping[str, Any]], title: str = "trajectories") -> str:
    lines = [f"# {title}", ""]
    for r in rows:
        lines += [
            f"## {r['trajectory_id']}",
            "",
            (
                f"stop: **{r['stop_reason']}**, final answer: `{r.get('final_answer') or '-'}`, "
                f"tokens: {len(r.get('token_ids') or [])}"
            ),
            "",
        ]
        for role, label, content in _steps(r):
            body = content.replace("```", "ʼʼʼ")
            lines += [f"**{role}** ({label})", "", "```text", body, "```", ""]
    return "\n".join(lines)


def print_rich(rows: Sequence[Mapping[str, Any]], console: Any = None, max_chars: int = 1200) -> None:
    from rich.console import Console, Group
    from rich.panel import Panel
    from rich.text import Text

    console = console or Console()
    for r in rows:
        parts = []
        for role, label, content in _steps(r):
            shown = (
                content if len(content) <= max_chars else content[:max_chars] + f" … [{len(content)} chars]"
            )
            t = Text()
            t.append(f"{role} · {label}\n", style=f"bold {_ROLE_STYLE.get(role, 'white')}")
            t.append(shown)
            parts.append(t)
        sub = (
            f"stop: {r['stop_reason']} · answer: {r.get('final_answer') or '-'} · tokens: "
            f"{len(r.get('token_ids') or [])}"
        )
        console.print(Panel(Group(*parts), title=str(r["trajectory_id"]), subtitle=sub, expand=True))

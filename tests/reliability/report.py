"""docs/RELIABILITY.md, written by the suites themselves.

Each scenario hands `write_section` what it injected, how many requests, the outcome and the
invariants it asserted; when `STRATUS_RELIABILITY_DIR` is set (by `make reliability`), the section
is saved there as JSON, and `python -m tests.reliability.report DIR OUT` joins the sections into
the report. A section is only written after the scenario's assertions passed.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Section:
    order: int
    title: str
    how: str
    injected: dict[str, Any]
    outcome: str
    invariants: list[str]
    tenants: dict[str, tuple[int, int]] = field(default_factory=dict)  # tenant → (received, billed)
    requests: int | None = None


def write_section(section: Section) -> None:
    directory = os.environ.get("STRATUS_RELIABILITY_DIR")
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() else "-" for c in section.title.lower())[:60]
    payload = {**asdict(section), "written": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"}
    (path / f"{section.order:02d}-{name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def render(directory: Path) -> str:
    sections = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]
    out = [
        "# Reliability report (generated)",
        "",
        "Written by `make reliability` from what each suite asserted and counted; do not edit by hand.",
        "Every row below is a scenario whose test passed; a failing scenario writes nothing.",
        "",
        "| scenario | requests | what was injected or attempted | invariants held |",
        "| --- | ---: | --- | ---: |",
    ]
    for s in sections:
        injected = ", ".join(f"{k} ×{v}" for k, v in s["injected"].items())
        held = len(s["invariants"])
        out.append(f"| {s['title']} | {s.get('requests') or '—'} | {injected} | {held} of {held} |")
    for s in sections:
        out += ["", f"## {s['title']}", "", s["how"], "", f"Outcome: {s['outcome']}", ""]
        out += ["| injected / attempted | times |", "| --- | ---: |"]
        out += [f"| {k} | {v} |" for k, v in s["injected"].items()]
        out += ["", "Invariants (each asserted by the test):", ""]
        out += [f"- {i}" for i in s["invariants"]]
        if s.get("tenants"):
            out += ["", "| tenant | tokens received by clients | tokens billed |", "| --- | ---: | ---: |"]
            out += [f"| {t} | {r} | {b} |" for t, (r, b) in s["tenants"].items()]
        out += ["", f"_Run {s['written']}._"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.write_text(render(source), encoding="utf-8")
    sys.stdout.write(f"{target}: {len(list(source.glob('*.json')))} scenarios\n")

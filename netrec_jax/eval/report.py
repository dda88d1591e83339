"""Result tables as Markdown, CSV and JSON (comparisons, sweeps): one writer for all."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def write_table(stem: Path, rows: list[dict[str, Any]]) -> None:
  """rows as Markdown (.md), CSV (.csv) and JSON (.json). The Markdown leaves out a column
  that is "n/a" in every row (a rating comparison's ranking columns); CSV and JSON keep all."""
  stem.parent.mkdir(parents=True, exist_ok=True)
  columns = list(dict.fromkeys(k for r in rows for k in r))
  shown = [c for c in columns if any(r.get(c, "n/a") != "n/a" for r in rows)] or columns
  cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
  lines += ["| " + " | ".join(cell(r.get(c, "")) for c in shown) + " |" for r in rows]
  stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
  with open(stem.with_suffix(".csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
  stem.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")

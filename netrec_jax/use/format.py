"""The use modes' output: JSON, or readable tables on the console."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np



# ---------------------------------------------------------------------------- formatting
def to_json(result: dict[str, Any]) -> str:
  return json.dumps(result, indent=2, default=_json_default)


def _json_default(x):
  if isinstance(x, (np.integer, np.floating)):
    return x.item()
  if isinstance(x, Path):
    return str(x)
  raise TypeError(f"not JSON serializable: {type(x)}")


def _table(rows: list[dict[str, Any]], key: str) -> list[str]:
  if not rows:
    return ["  (no candidates)"]
  width = max(len(r["title"]) for r in rows)
  width = min(max(width, 5), 60)
  out = [f"  {'rank':>4}  {'movie_id':>8}  {'title':<{width}}  {'year':>4}  {key:>8}"]
  for r in rows:
    out.append(f"  {r['rank']:>4}  {r['movie_id']:>8}  {r['title'][:width]:<{width}}  "
               f"{r['year'] or '':>4}  {r[key]:>8.3f}")
  return out


def format_table(result: dict[str, Any]) -> str:
  """A readable text rendering of a recommend or similar result."""
  lines = [(f"model {result['model']} ({result['checkpoint']} checkpoint of "
           f"{result['restored_from']}), split {result['split']} (protocol "
           f"{result['protocol']}); scores: {result['score']}"),
           f"candidates: {result['candidates']}"]
  for entry in result.get("users", []):
    lines += ["", (f"user {entry['user_id']} ({entry['n_training_ratings']} training ratings, "
              "excluded):")]
    if "note" in entry:
      lines.append(f"  note: {entry['note']}")
    lines += _table(entry["recommendations"], "score")
  if "new_user" in result:
    new = result["new_user"]
    given = ", ".join(f"{g['title']} ({g['movie_id']}): {g['stars']:g}" for g in new["given"])
    lines += ["", f"new user who rated {given}", f"  method: {new['method']}"]
    if "note" in new:
      lines.append(f"  note: {new['note']}")
    lines += _table(new["recommendations"], "score")
  if "similar" in result:
    lines.append(f"space: {result['space']}")
    for entry in result["similar"]:
      movie = entry["movie"]
      lines += ["", f"movies similar to {movie['title']} ({movie['movie_id']}):"]
      lines += _table(entry["neighbours"], "cosine")
  return "\n".join(lines)

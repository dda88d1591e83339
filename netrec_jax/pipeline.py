"""What launch.py runs: each mode is one function of (config, workdir), importable and testable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from absl import logging

from netrec_jax.data import datasets


def prepare(config: Any, workdir: str | os.PathLike, rebuild: bool = False) -> dict[str, Any]:
  """Builds (or reuses) the store, makes the split, writes data_summary.json and EDA plots."""
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  store = datasets.open_or_build(config.data, rebuild=rebuild)
  split = datasets.make_split(store, config.split)
  summary = datasets.describe(store, split)
  if config.eda:
    from netrec_jax.analysis import eda  # matplotlib only when plots are wanted
    files = eda.write_eda(store, workdir / "eda", top_k=config.eda_top_k)
    summary["eda"] = {name: str(path) for name, path in files.items()}
  tmp = workdir / ".data_summary.json.tmp"
  tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, workdir / "data_summary.json")
  print(format_summary(summary))
  logging.info("wrote %s", workdir / "data_summary.json")
  return summary


def format_summary(summary: dict[str, Any]) -> str:
  """The console view of a prepared dataset."""
  s = summary["store"]
  lines = [
      f"store     {s['name']} at {s['path']}",
      f"          {s['n_ratings']:,} ratings, {s['n_users']:,} users, {s['n_items']:,} items, "
      f"density {s['density']:.4%}",
      f"          ratings {s['rating_range'][0]:g}..{s['rating_range'][1]:g} "
      f"(scale {s['rating_scale']}), dates {s['date_range']}",
      f"          filters {s['filters']}, bad lines skipped {s['bad_lines']:,}",
      f"          fingerprint {s['fingerprint']}",
  ]
  if "split" in summary:
    sp = summary["split"]
    sizes, cold = sp["sizes"], sp["cold_start"]
    lines += [
        f"split     {sp['name']} (protocol {sp['protocol']}): train {sizes['train']:,}, "
        f"valid {sizes['valid']:,}, test {sizes['test']:,}, unused {sizes['unused']:,}",
        f"          cold-start test ratings: {cold['cold_any']:,} of {cold['n_test']:,} "
        f"({cold['cold_share']:.2%}; user unseen {cold['cold_user']:,}, item unseen "
        f"{cold['cold_item']:,})",
    ]
  if "eda" in summary:
    lines.append(f"eda       {Path(summary['eda']['summary']).parent}/ "
                 f"({', '.join(sorted(Path(p).name for p in summary['eda'].values()))})")
  return "\n".join(lines)

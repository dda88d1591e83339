"""What launch.py runs: each mode is one function of (config, workdir), importable and testable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from absl import logging

from netrec_jax.data import datasets
from netrec_jax.data.store import atomic_write_text
from netrec_jax.eval import report


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
  atomic_write_text(workdir / "data_summary.json",
                    json.dumps(summary, indent=2, sort_keys=True) + "\n")
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
      *[f"          odd lines: {n:,} {reason}" for reason, n in s.get("odd_lines", {}).items()],
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


def check(config: Any, mode: str = "train") -> None:
  """Refuses, before any work, a config field that the run would not read (naming it), and
  applies mesh.cpu_devices for a library caller (after launch.py applied it: a check that
  the backend has that count)."""
  from netrec_jax import sharding
  from netrec_jax.train import family
  if mode == "compare" or config.compare.after_train:
    from netrec_jax import compare as compare_lib
    family.check_fields(config, compare_lib.model_names(config))
  else:
    family.check_fields(config)
  sharding.set_cpu_devices(config.mesh.cpu_devices)


def train(config: Any, workdir: str | os.PathLike) -> dict[str, Any]:
  """Prepares the data (summary, EDA), trains, evaluates; prints metrics with their protocol."""
  from netrec_jax.train import loop
  check(config)
  prepare(config, workdir)
  result = loop.train_and_evaluate(config, workdir)
  print(format_metrics(result))
  if config.compare.after_train:
    from netrec_jax import compare as compare_lib
    compare_lib.compare(config, Path(workdir) / "comparison",
                        runs={config.model.name: workdir})
    print((Path(workdir) / "comparison" / "comparison.md").read_text())
  return result


def evaluate(config: Any, restore_from: str | os.PathLike, workdir: str | os.PathLike
             ) -> dict[str, Any]:
  """Restores a run's best checkpoint and evaluates it on the same split."""
  from netrec_jax.train import loop
  check(config)
  result = loop.evaluate_checkpoint(config, restore_from, workdir)
  print(format_metrics(result))
  return result


def compare(config: Any, workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """Every configured model and baseline on one split; prints the comparison table."""
  from netrec_jax import compare as compare_lib
  check(config, "compare")
  prepare(config, workdir)
  if config.compare.folds or config.compare.seeds:
    results = compare_lib.compare_repeats(config, workdir)
    table = "comparison_folds.md" if config.compare.folds else "comparison_seeds.md"
    print((Path(workdir) / table).read_text())
    return results
  results = compare_lib.compare(config, workdir)
  print((Path(workdir) / "comparison.md").read_text())
  return results


def tune(config: Any, workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """Every model of the comparison tuned with the same budget on validation, then compared
  once on test (netrec_jax/tune.py); prints the comparison table."""
  from netrec_jax import tune as tune_lib
  check(config, "compare")
  prepare(config, workdir)
  results = tune_lib.tune(config, workdir)
  print((Path(workdir) / "comparison.md").read_text())
  return results


def format_metrics(result: dict[str, Any]) -> str:
  def fmt(part: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in part.items())
  return "\n".join([
      f"model     {result['model']}, {result['checkpoint']} checkpoint at "
      f"step {result.get('checkpoint_step')} (epoch {result.get('checkpoint_epoch')})",
      f"data      {result['store']} [{result['store_fingerprint']}], split {result['split']}, "
      f"protocol {result['protocol']}; predictions {result['predictions']}",
      f"valid     {fmt(result['valid'])}",
      f"test      {fmt(result['test'])}",
  ])


def parse_sweep(spec: str) -> list[tuple[str, list[str]]]:
  """'optimizer.lr=1e-3,3e-3;model.embed_dim=32,64' -> [(field, [values]), ...]."""
  axes = []
  for part in filter(None, (p.strip() for p in spec.split(";"))):
    if "=" not in part:
      raise ValueError(f"sweep axis {part!r} must look like FIELD=V1,V2")
    field, values = part.split("=", 1)
    field, values = field.strip(), [v.strip() for v in values.split(",") if v.strip()]
    if not field or not values:  # an empty axis would run nothing and report an empty table
      raise ValueError(f"sweep axis {part!r} needs a field and at least one value "
                       "(FIELD=V1,V2)")
    axes.append((field, values))
  if not axes:
    raise ValueError(f"sweep {spec!r} has no axes; e.g. 'optimizer.sparse_lr=0.02,0.05'")
  return axes


def sweep(config: Any, workdir: str | os.PathLike, spec: str) -> list[dict[str, Any]]:
  """Trains every combination of the sweep grid into WORKDIR/<name>; one summary table."""
  import copy
  import itertools

  from netrec_jax import configs
  workdir = Path(workdir)
  axes = parse_sweep(spec)
  rows = []
  for values in itertools.product(*(v for _, v in axes)):
    run_config = copy.deepcopy(config)
    for (field, _), value in zip(axes, values):
      configs.set_field(run_config, field, value, what=f"sweep axis {field!r}")
    name = "_".join(f"{field.split('.')[-1]}={value}" for (field, _), value in zip(axes, values))
    logging.info("sweep run %s", name)
    result = train(run_config, workdir / name)
    rows.append({"run": name, **{f: v for (f, _), v in zip(axes, values)},
                 **{f"valid_{k}": v for k, v in result["valid"].items() if _is_metric(k, v)},
                 **{f"test_{k}": v for k, v in result["test"].items() if _is_metric(k, v)},
                 "best_epoch": result.get("best_epoch"), "protocol": result["protocol"]})
  report.write_table(workdir / "sweep_summary", rows)
  print((workdir / "sweep_summary.md").read_text())
  return rows


def _is_metric(key: str, value: Any) -> bool:
  """Metric values for summary tables (not counts, flags or ranges)."""
  return isinstance(value, float) and not isinstance(value, bool)

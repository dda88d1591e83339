"""The comparison: every configured model on one split, through one evaluator, one table.

config.compare.models lists entries:
  - a model name (netrec_jax/train/family.py): the comparison's own model (config.model.name)
    trains with the comparison's settings; any other trains with its family's defaults;
  - an experiment name (experiments/NAME.py): that experiment's tuned settings;
  - a baseline (surprise_svd, ..., implicit_als, jax_als): fitted on the same training rows;
and compare.external adds predictions or rankings written by any other tool (CSV or Parquet,
original ids: netrec_jax/baselines/external.py), scored by the same evaluator.
Every JAX entry trains through the one loop into WORKDIR/models/ENTRY (or is restored from
there) on the comparison's data, split, mesh and evaluation settings. ENTRY@LABEL is a variant
whose fields compare.model_overrides sets ("autorec@user:autoencoder.side=user"). All are
evaluated by evaluator.evaluate on the same test rows; the table names split and protocol.
"""

from __future__ import annotations

import copy
import json
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from netrec_jax import configs
from netrec_jax.data import datasets
from netrec_jax.eval import evaluator, leakage, report

# Baselines and their settings. "tuned" values were chosen on ML-100K validation rows.
BASELINES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "surprise_svd": ("surprise", "SVD", {"random_state": 0}),  # Surprise defaults
    "surprise_svd_tuned": ("surprise", "SVD", {"n_factors": 50, "n_epochs": 40, "lr_all": 0.007,
                                               "reg_all": 0.06, "random_state": 0}),
    "surprise_svdpp": ("surprise", "SVDpp", {"random_state": 0, "cache_ratings": True}),
    "surprise_baseline": ("surprise", "BaselineOnly", {}),
    "surprise_knn": ("surprise", "KNNWithMeans", {}),
    "implicit_als": ("implicit", "als", {"factors": 64, "iterations": 15,
                                         "regularization": 0.05, "alpha": 2.0}),
    "implicit_bpr": ("implicit", "bpr", {"factors": 64, "iterations": 100,
                                         "learning_rate": 0.05, "regularization": 0.01}),
    # reg chosen on ml100k_u1 validation rows (32 factors): 0.1 -> 0.933, 0.2 -> 0.956,
    # 0.3 -> 1.004. Factors and iterations as implicit_als, so the ALS rows compare equally.
    "jax_als": ("jax", "als", {"factors": 64, "reg": 0.1, "iterations": 15}),
    # implicit_als's model in JAX: the same settings and implicit 0.7's confidence alpha * r.
    "jax_ials": ("jax", "ials", {"factors": 64, "iterations": 15, "regularization": 0.05,
                                 "alpha": 2.0, "confidence": "linear"}),
}


def fit_baseline(name: str, store, train_rows, params: dict[str, Any] | None = None,
                 seed: int = 0):
  """Baseline `name` fitted on train_rows, with its BASELINES settings updated by `params`;
  `seed` is its random state (Surprise's random_state where it has one)."""
  library, algorithm, defaults = BASELINES[name]
  params = {**defaults, **(params or {})}
  if library != "surprise":
    params["seed"] = seed
  elif "random_state" in params:
    params["random_state"] = seed
  if library == "jax":
    from netrec_jax.baselines.jax_als import JaxALS, JaxIALS
    cls = JaxIALS if algorithm == "ials" else JaxALS
    return cls(name=name, **params).fit(store, train_rows)
  if library == "surprise":
    from netrec_jax.baselines.surprise_models import SurpriseRecommender
    return SurpriseRecommender(algorithm, params, name=name).fit(store, train_rows)
  from netrec_jax.baselines.implicit_models import ImplicitRecommender
  return ImplicitRecommender(algorithm, name=name, **params).fit(store, train_rows)


def model_overrides(spec: str) -> dict[str, list[tuple[str, str]]]:
  """'hybrid:model.dropout=0.2,model.use_features=true;neumf:...' -> {name: [(field, value)]}."""
  out: dict[str, list[tuple[str, str]]] = {}
  for part in filter(None, (p.strip() for p in spec.split(";"))):
    name, _, assignments = part.partition(":")
    for assignment in filter(None, (a.strip() for a in assignments.split(","))):
      field, eq, value = assignment.partition("=")
      if not eq:
        raise ValueError(f"compare.model_overrides: {assignment!r} must look like FIELD=VALUE")
      out.setdefault(name.strip(), []).append((field.strip(), value.strip()))
  return out


SHARED_SECTIONS = ("data", "split", "mesh", "eval")


def entry_config(entry: str, config, fields: dict[str, Any] | None = None):
  """The config an entry trains with, on the comparison's data, split, mesh and evaluation;
  `fields` (dotted name -> value, e.g. a tuned trial's) are set last."""
  from netrec_jax.train import family
  base = entry.split("@")[0]
  if base == config.model.name:
    run_config = copy.deepcopy(config)
  elif base in family.FAMILIES:
    run_config = configs.base_config()
    run_config.model.name = base
  else:
    run_config = configs.load_experiment(base)
  with run_config.unlocked():
    for section in SHARED_SECTIONS:
      run_config[section] = copy.deepcopy(config[section])
    run_config.seed = config.seed
    run_config.name = f"{config.name}_{entry}"
    run_config.eda = False
    run_config.compare = configs.base_config().compare
    run_config.tune = configs.base_config().tune
  overrides = model_overrides(config.compare.model_overrides)
  for field, value in overrides.get(base, []) + (overrides.get(entry, []) if entry != base
                                                 else []):
    configs.set_field(run_config, field, value, what=f"compare.model_overrides {entry!r}")
  for field, value in (fields or {}).items():
    configs.set_field(run_config, field, value, what=f"tuned setting of {entry!r}")
  return run_config


def is_jax_entry(entry: str) -> bool:
  from netrec_jax.train import family
  base = entry.split("@")[0]
  return base in family.FAMILIES or (base not in BASELINES and configs.is_experiment(base))


def model_names(config) -> tuple[str, ...]:
  """The model names that the comparison's own config trains (its fields must be read)."""
  entries = [m.strip().split("@")[0] for m in config.compare.models.split(",") if m.strip()]
  return tuple(e for e in entries if e == config.model.name)


def _jax_model(entry: str, config, workdir: Path, run_dir: Path | None = None,
               fields: dict[str, Any] | None = None):
  """Trains `entry` into WORKDIR/models/ENTRY (or restores run_dir), behind the evaluator."""
  from netrec_jax.train import loop
  run_config = entry_config(entry, config, fields)
  run_dir = run_dir or workdir / "models" / entry
  if not (run_dir / "final_metrics.json").is_file():
    loop.train_and_evaluate(run_config, run_dir)
  recommender = loop.load_recommender(run_dir, run_config)
  recommender.name = entry
  recommender.train_seconds = json.loads((run_dir / "final_metrics.json").read_text()).get(
      "train_seconds")
  return recommender


def compare(config: Any, workdir: str | os.PathLike,
            runs: dict[str, str | os.PathLike] | None = None,
            tuned: dict[str, dict[str, Any]] | None = None,
            note: str = "") -> list[dict[str, Any]]:
  """Fits or restores each model of config.compare.models and evaluates all on one split.

  runs: JAX model name -> workdir of an existing training run to restore instead of training.
  tuned: entry -> its tuned settings (config fields for ours, keyword arguments for a
  baseline), from the tune mode; note: a line for the report's header (how they were tuned).
  """
  runs = {k: Path(v) for k, v in (runs or {}).items()}
  tuned = tuned or {}
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  from netrec_jax.train import family
  config = family.resolve(copy.deepcopy(config))  # the evaluation settings of its model
  data = evaluator.prepare(store, split, relevance_threshold=evaluator.relevance(config.eval))
  # Once per split, before any model fits: a failed check stops the comparison.
  audit = leakage.audit(store, split, eval_cfg=config.eval, eval_data=data,
                        raise_on_failure=False)
  leakage.write(audit, workdir)
  if not audit["passed"]:
    raise leakage.LeakageError(audit["message"])
  ks = tuple(config.eval.ks)
  from netrec_jax.baselines.external import ExternalPredictions, parse_entries
  external = dict(parse_entries(config.compare.external))
  results, rating_models, rating_names = [], [], []
  for name in [m.strip() for m in config.compare.models.split(",") if m.strip()] + list(external):
    logging.info("compare: %s", name)
    tracemalloc.start()
    t0 = time.time()
    try:
      if name in external:
        model = ExternalPredictions(external[name], name).fit(store, data.train_rows)
      elif name in BASELINES:
        model = fit_baseline(name, store, data.train_rows, tuned.get(name), config.seed)
      elif is_jax_entry(name):
        model = _jax_model(name, config, workdir, runs.get(name), tuned.get(name))
      else:
        raise ValueError(f"unknown entry {name!r} in compare.models; expected a model "
                         f"({', '.join(sorted(family.FAMILIES))}), an experiment name or a "
                         f"baseline ({', '.join(BASELINES)})")
    except MemoryError as e:  # baselines that cannot run at this size say so in the table
      tracemalloc.stop()
      results.append({"model": name, "protocol": split.protocol, "skipped": str(e)})
      continue
    result = _scored(model, data, config, t0)
    results.append(result)
    if result["rating"].get("applicable", True) and name not in external:
      rating_models.append(model)
      rating_names.append(name)
  blend = None
  if config.compare.blend:
    blend_result, blend = _blend(config, store, split, data, rating_models, workdir)
    results.append(blend_result)
  if config.compare.refit:
    results.extend(_refit(config, store, split, rating_names, blend, workdir, runs, tuned))
    note = (note + "\n\n" if note else "") + REFIT_NOTE
  significance(results, ks, seed=config.seed, baseline=config.compare.baseline)
  write_per_user(results, workdir / "per_user")
  write_report(results, workdir, store, split, ks, note, audit)
  _plot_predictions(results, data, workdir / "predicted_vs_true.png")
  _plot_error_by_activity(results, data, workdir / "error_by_user_activity.png")
  _plot_training_curves(workdir / "models", workdir / "training_curves.png")
  for r in results:
    r.pop("_predictions", None)
    r.pop("_per_user", None)
  return results


def _scored(model, data, config, t0: float) -> dict[str, Any]:
  """evaluator.evaluate of a fitted model (tracemalloc started at t0) with its fit figures."""
  # A restored JAX run reports the training time recorded by its own run.
  fit_seconds = getattr(model, "train_seconds", None) or time.time() - t0
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  result = evaluator.evaluate(model, data, ks=tuple(config.eval.ks),
                              ranking=evaluator.ranks(model, data.store, data.split,
                                                      config.eval),
                              user_batch=config.eval.user_batch, ranker=config.eval.ranker,
                              sampled_negatives=config.eval.sampled_negatives,
                              sampler=config.eval.negative_sampler,
                              keep_predictions=True, per_user=True)
  result.update(fit_seconds=fit_seconds, peak_traced_mb=peak / 2**20)
  return result


REFIT = " (refit)"
REFIT_NOTE = (
    "Refit (compare.refit, the Netflix Prize recipe): each `NAME (refit)` row is that model "
    "fitted again on train + validation rows (split NAME_refit; our models for the number of "
    "epochs their first run chose on validation, early stopping off; baselines fitted once "
    "more), scored on the same test rows. `blend (refit)` applies the blend's weights, fitted "
    "on the first runs' validation predictions, to the refitted models' predictions, with "
    "log supports counted on train + validation. The rows without (refit) learned from "
    "train only.")


def refit_config(config):
  """config on the refit split: its validation rows counted as training (split.merge_valid)."""
  out = copy.deepcopy(config)
  with out.unlocked():
    out.split.merge_valid = True
    out.name = f"{config.name}_refit"
  return out


def refit_epochs(run_dir: Path) -> int:
  """Epochs a refit of run_dir trains: its best epoch + 1 (final_metrics.json's best_epoch,
  else the epoch of its best checkpoint). GLocal-K's count includes its pre-training epochs,
  as its epoch counter does."""
  best = json.loads((run_dir / "final_metrics.json").read_text()).get("best_epoch")
  if best is None:
    from netrec_jax.train import loop
    best = loop.run_meta(run_dir, "best")[0]["epoch"]
  return int(best) + 1


def _refit(config, store, split, names: list[str], blend, workdir: Path,
           runs: dict[str, Path], tuned: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
  """The rating models `names` refitted on train + validation and scored on the same test
  rows; with `blend`, its validation-fitted weights applied to them (REFIT_NOTE)."""
  from netrec_jax.train import family
  if len(split.rows("valid")) == 0 or not names:
    raise ValueError("compare.refit needs validation rows and rating models (split "
                     f"{split.name} has {len(split.rows('valid')):,}; {len(names)} rating "
                     "models)")
  config = refit_config(config)
  refit_split = datasets.make_split(store, config.split)
  if not np.array_equal(refit_split.rows("test"), split.rows("test")):
    raise ValueError(f"split {refit_split.name} does not keep the test rows of {split.name}")
  data = evaluator.prepare(store, refit_split,
                           relevance_threshold=evaluator.relevance(config.eval))
  leakage.audit(store, refit_split, eval_cfg=config.eval, eval_data=data)  # raises on a leak
  results, models = [], []
  for name in names:
    logging.info("compare: %s%s", name, REFIT)
    tracemalloc.start()
    t0 = time.time()
    if name in BASELINES:
      model = fit_baseline(name, store, data.train_rows, tuned.get(name), config.seed)
    else:
      fields = dict(tuned.get(name) or {})
      if family.family(entry_config(name, config, fields).model.name).trains:
        first = runs.get(name) or workdir / "models" / name
        fields.update({"train.epochs": refit_epochs(first), "train.early_stopping_patience": 0})
      model = _jax_model(name, config, workdir, workdir / "refit" / name, fields)
    model.name = name + REFIT
    results.append(_scored(model, data, config, t0))
    models.append(model)
  if blend is not None:
    tracemalloc.start()
    t0 = time.time()
    refitted = blend.refitted(models, data.train_rows, refit_split.name)
    results.append(_scored(refitted, data, config, t0))
    (workdir / "blend_weights.json").write_text(json.dumps(
        {**blend.weights(), "refit": refitted.refit_of}, indent=2) + "\n")
  return results


def _listed(spec: str) -> list[str]:
  return [part.strip() for part in str(spec).split(",") if part.strip()]


def _blend(config, store, split, data, models, workdir: Path) -> tuple[dict[str, Any], Any]:
  """The ridge blend of the rating models, fitted on validation rows, evaluated on test;
  its result and the blend."""
  from netrec_jax.baselines.blend import BlendRecommender
  valid = split.rows("valid")
  if not models or len(valid) == 0:
    raise ValueError("compare.blend needs rating models and validation rows (split "
                     f"{split.name} has {len(valid):,}; {len(models)} rating models)")
  tracemalloc.start()
  t0 = time.time()
  blend = BlendRecommender(models, store, data.train_rows).fit(
      np.take(store.user, valid), np.take(store.item, valid), store.stars(valid))
  fit_seconds = time.time() - t0
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  blend.save(workdir / "blend_weights.json")
  result = evaluator.evaluate(blend, data, ks=tuple(config.eval.ks),
                              ranking=evaluator.ranks(blend, store, split, config.eval),
                              user_batch=config.eval.user_batch, keep_predictions=True,
                              per_user=True)
  result.update(fit_seconds=fit_seconds, peak_traced_mb=peak / 2**20)
  return result, blend


def compare_repeats(config: Any, workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """compare() on each fold of compare.folds and each seed of compare.seeds (all pairs),
  then mean and spread per model: comparison_folds.{md,csv,json} (folds) or
  comparison_seeds (seeds only). With the five official ML-100K folds this is protocol
  ml100k_5fold. A seed sets config.seed: our models' initialisation, dropout, negatives and
  batch order, and the baselines' random state; the split stays the same (split.seed).
  """
  workdir = Path(workdir)
  folds, seeds = _listed(config.compare.folds), [int(s) for s in _listed(config.compare.seeds)]
  per_run, protocols = {}, set()
  for fold in folds or [None]:
    for seed in seeds or [None]:
      run_config = copy.deepcopy(config)
      with run_config.unlocked():
        if fold is not None:
          run_config.split.fold = fold
        if seed is not None:
          run_config.seed = seed
      name = "_".join(part for part in (fold and f"fold_{fold}",
                                        seed is not None and f"seed_{seed}") if part)
      results = compare(run_config, workdir / name)
      protocols.update(r["protocol"] for r in results if "protocol" in r)
      per_run[name] = [_row(r, tuple(config.eval.ks)) for r in results]
  if not folds:
    protocol = ", ".join(sorted(protocols))
  elif sorted(folds) == ["u1", "u2", "u3", "u4", "u5"]:
    protocol = "ml100k_5fold"
  else:
    protocol = "ml100k_" + ("_".join(folds) if len(folds) == 1 else "folds_" + "_".join(folds))
  summary = fold_summary(per_run, list(per_run), protocol)
  for row in summary:
    row.update(folds=len(folds) or 1, seeds=len(seeds) or 1)
  report.write_table(workdir / ("comparison_folds" if folds else "comparison_seeds"), summary)
  return summary


def fold_summary(per_fold: dict[str, list[dict[str, Any]]], folds: list[str], protocol: str
                 ) -> list[dict[str, Any]]:
  """Mean and spread over runs (folds, seeds) of each model's metrics (same model order).

  A metric is averaged only where every run has a number for it; per-run p-values are not
  averaged (a mean of p-values is no test), and neither are the per-run intervals.
  """
  from netrec_jax.eval import statistics
  summary = []
  for k, first in enumerate(per_fold[folds[0]]):
    runs = [per_fold[f][k] for f in folds]
    kept = [key for key in first
            if not key.endswith(("_p_vs_best", "_ci95")) and key != "peak_traced_mb"
            and all(isinstance(run.get(key), float) for run in runs)]
    spread = statistics.summarise_seeds([{key: run[key] for key in kept} for run in runs])
    row = {"model": first["model"], "protocol": protocol, "runs": len(folds)}
    for key, stats in spread.items():
      if key.endswith("_s"):
        row[f"{key}_mean"] = stats["mean"]
      else:
        row[f"{key}_mean"], row[f"{key}_std"] = stats["mean"], stats["std"]
    summary.append(row)
  return summary


def _row(result: dict[str, Any], ks: tuple[int, ...]) -> dict[str, Any]:
  row = {"model": result["model"]}
  if "skipped" in result:
    row["note"] = result["skipped"]
    return row
  rating = result["rating"]
  row["rmse"] = rating.get("rmse", "n/a")
  row["mae"] = rating.get("mae", "n/a")
  row["rmse_warm"] = result.get("rating_warm", {}).get("rmse", "n/a")
  ranking = result.get("ranking", {})
  for k in ks:
    row[f"recall@{k}"] = ranking.get(f"recall@{k}", "n/a")
    row[f"ndcg@{k}"] = ranking.get(f"ndcg@{k}", "n/a")
  row["precision@10"] = ranking.get("precision@10", "n/a")
  row["hit_rate@10"] = ranking.get("hit_rate@10", "n/a")
  row["mrr"] = ranking.get("mrr", "n/a")
  if "sampled" in result:
    row[f"sampled_hr@10 ({result['sampled']['protocol']})"] = result["sampled"].get("hr@10")
    row["sampled_ndcg@10"] = result["sampled"].get("ndcg@10")
  row["coverage@10"] = ranking.get("coverage@10", "n/a")
  row["popularity@10"] = ranking.get("popularity@10", "n/a")
  for metric, s in result.get("significance", {}).items():
    row[f"{metric}_ci95"] = f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]"
    row[f"{metric}_p_vs_best"] = ("best" if s["is_best"] else s["p_vs_best_holm"])
  row["fit_s"] = result["fit_seconds"]
  row["predict_s"] = result["predict_seconds"]
  row["rank_s"] = result.get("ranking_seconds", "n/a")
  row["peak_traced_mb"] = result["peak_traced_mb"]
  if not rating.get("rmse"):
    row["note"] = rating.get("reason", "")
  return row


def _tested_metrics(ks: tuple[int, ...]) -> tuple[str, ...]:
  """The metrics that get intervals and paired tests in every comparison table."""
  return ("rmse", "mae", *(f"{m}@{k}" for k in ks for m in ("recall", "ndcg")), "mrr")


def significance(results: list[dict[str, Any]], ks: tuple[int, ...], seed: int = 0,
                 n_resamples: int = 1000, baseline: str = "") -> None:
  """Per-user paired bootstrap 95% intervals and sign-flip tests against the best model of
  each metric (Holm-corrected over the table's models), into result["significance"]; with
  `baseline` (a model of the table) each model is also tested against it (its own Holm family).

  Users are resampled, the same draws for every model (paired); RMSE and MAE resample each
  user's summed errors and counts, so they stay rating-weighted.
  """
  from netrec_jax.eval import statistics
  per_user: dict[str, dict[str, Any]] = {}
  users: dict[str, dict[str, Any]] = {}
  for r in results:
    values = r.get("_per_user", {})
    rating, ranking = values.get("rating"), values.get("ranking")
    for metric in _tested_metrics(ks):
      if metric in ("rmse", "mae") and rating is not None:
        column = "sse" if metric == "rmse" else "sae"
        per_user.setdefault(metric, {})[r["model"]] = statistics.ratio_values(
            rating[column], rating["n"])
        users.setdefault(metric, {})[r["model"]] = rating["users"]
      elif ranking is not None and metric in ranking:
        per_user.setdefault(metric, {})[r["model"]] = ranking[metric]
        users.setdefault(metric, {})[r["model"]] = ranking["users"]
  tested = {m: t for m, t in per_user.items() if len(t) >= 2}
  if not tested:
    return
  names = {r["model"] for r in results}
  if baseline and baseline not in names:
    raise ValueError(f"compare.baseline {baseline!r} is not a model of this comparison "
                     f"({', '.join(sorted(names))})")
  # Metrics the baseline has a figure for are also tested against it; the others against
  # the best only (a ranking-only baseline has no RMSE).
  with_base = {m: t for m, t in tested.items() if baseline and baseline in t}
  table = {}
  for group, base in ((with_base, baseline or None),
                      ({m: t for m, t in tested.items() if m not in with_base}, None)):
    if group:
      table.update(statistics.compare_metrics(
          group, users={m: users[m] for m in group}, n_resamples=n_resamples,
          n_permutations=n_resamples, seed=seed, baseline=base))
  for r in results:
    r["significance"] = {m: rows[r["model"]] for m, rows in table.items() if r["model"] in rows}


def write_per_user(results: list[dict[str, Any]], folder: Path) -> None:
  """Each model's per-user values as Parquet (user = the store's dense user index)."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  folder.mkdir(parents=True, exist_ok=True)
  for r in results:
    for part, values in r.get("_per_user", {}).items():
      columns = {k: pa.array(np.asarray(v)) for k, v in values.items()}
      name = r["model"].replace("/", "_")
      pq.write_table(pa.table(columns), folder / f"{name}.{part}.parquet")


def _significance_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
  rows = []
  for r in results:
    for metric, s in r.get("significance", {}).items():
      rows.append({"metric": metric, "model": r["model"], "estimate": s["estimate"],
                   "ci95": f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]",
                   "p_vs_best_holm": "" if s["is_best"] else s["p_vs_best_holm"],
                   "verdict": ("best" if s["is_best"] else "tied with best"
                               if s["tied_with_best"] else "worse than best"),
                   **({"p_vs_baseline_holm": "" if np.isnan(s["p_vs_baseline_holm"]) else
                       s["p_vs_baseline_holm"],
                       "vs_baseline": ("better" if s["better_than_baseline"] else "tied"
                                       if s["tied_with_baseline"] else "worse")}
                      if "p_vs_baseline_holm" in s else {}),
                   "n_users": s["n_users"]})
  return sorted(rows, key=lambda x: (x["metric"], x["verdict"] != "best", x["model"]))


def write_report(results: list[dict[str, Any]], workdir: Path, store, split,
                 ks: tuple[int, ...], note: str = "",
                 audit: dict[str, Any] | None = None) -> None:
  """comparison.{md,csv,json} and bar plots, the split and protocol named on top."""
  rows = [_row(r, ks) for r in results]
  report.write_table(workdir / "comparison", rows)
  relevance = next((r["ranking"]["relevance"] for r in results if "ranking" in r), "")
  header = (f"# Comparison on {store.name} [{store.fingerprint}]\n\n"
            f"Split `{split.name}`, protocol **{split.protocol}**: train "
            f"{split.info['sizes']['train']:,}, valid {split.info['sizes']['valid']:,}, test "
            f"{split.info['sizes']['test']:,} ratings; cold test ratings "
            f"{split.info['cold_start']['cold_any']:,}. Rating metrics clip predictions to "
            f"{list(store.rating_range)}; ranking over the full catalog minus each user's "
            f"training items, relevant = {relevance}. Peak memory is what tracemalloc saw "
            "(Python and numpy allocations during fit).\n\n" + _audit_lines(audit, results)
            + (f"{note}\n\n" if note else ""))
  md = workdir / "comparison.md"
  text = header + md.read_text()
  sig = _significance_rows(results)
  if sig:
    report.write_table(workdir / "significance", sig)
    text += ("\n## Intervals and tests\n\nPer-user paired bootstrap 95% intervals (1,000 "
             "resamples of the test users, the same for every model); p: paired sign-flip "
             "test of each model against the metric's best, Holm-corrected over the models. "
             "**best** and every model *tied with best* (p >= 0.05) are marked; per-user "
             "values are in per_user/*.parquet.\n\n")
    text += (workdir / "significance.md").read_text().replace("| best |", "| **best** |")
  md.write_text(text)
  serializable = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
  (workdir / "comparison.json").write_text(json.dumps(serializable, indent=2, default=float)
                                           + "\n")
  _plot_bars(rows, results, workdir / "comparison.png", f"{store.name}, {split.protocol}")


def _audit_lines(audit: dict[str, Any] | None, results: list[dict[str, Any]]) -> str:
  """The header's leakage-audit and fixed-negatives lines."""
  text = ""
  if audit:
    applied = [c for c in audit["checks"] if c["applicable"]]
    text += (f"Leakage audit: **{'passed' if audit['passed'] else 'FAILED'}**, "
             f"{sum(c['passed'] for c in applied)} of {len(applied)} applicable checks "
             f"({', '.join(c['name'] for c in applied)}); split fingerprint "
             f"`{audit['split_fingerprint']}`; leakage_audit.json.\n\n")
  sampled = next((r["sampled"] for r in results if "negatives_sha256" in r.get("sampled", {})),
                 None)
  if sampled:
    text += (f"Sampled protocol {sampled['protocol']}: every model ranks against the same "
             f"fixed negatives ({sampled['negatives_users']:,} users), sha256 "
             f"`{sampled['negatives_sha256']}`.\n\n")
  return text


def _plot_bars(rows: list[dict[str, Any]], results: list[dict[str, Any]], path: Path,
               title: str) -> None:
  """RMSE and the first NDCG@K of the table per model, with the bootstrap 95% intervals."""
  from matplotlib.figure import Figure
  ndcg = next((key for key in (rows[0] if rows else {}) if key.startswith("ndcg@")
               and any(isinstance(r.get(key), float) for r in rows)), "ndcg@10")
  significance = {r["model"]: r.get("significance", {}) for r in results}
  fig = Figure(figsize=(11, 4), layout="constrained")
  axes = fig.subplots(1, 2)
  for ax, metric in zip(axes, ("rmse", ndcg)):
    pairs = [(r["model"], r[metric]) for r in rows if isinstance(r.get(metric), float)]
    if not pairs:
      ax.set_visible(False)
      continue
    names, values = zip(*pairs)
    intervals = [significance.get(n, {}).get(metric) for n in names]
    error = np.array([[v - s["ci_low"], s["ci_high"] - v] if s else [0.0, 0.0]
                      for v, s in zip(values, intervals)]).T
    ax.barh(names, values, xerr=error, capsize=3, color="#4c72b0", ecolor="#333333")
    for y, v in enumerate(values):
      ax.text(v, y, f" {v:.4f}", va="bottom", fontsize=8)
    ax.set_xlabel(metric + (" (lower is better)" if metric == "rmse" else " (higher is better)")
                  + ", bootstrap 95% interval")
    ax.invert_yaxis()
  fig.suptitle(title)
  fig.savefig(path, dpi=110)


ACTIVITY_BUCKETS = (1, 21, 51, 101, 201, 501)  # training ratings per user: [1,20], [21,50], ...


def _plot_predictions(results, data, path: Path) -> None:
  """Predicted vs true rating (hexbin) for each rating model."""
  from matplotlib.figure import Figure
  rated = [r for r in results if "_predictions" in r]
  if not rated:
    return
  truth = data.store.stars(data.test_rows)
  cols = min(4, len(rated))
  rows = -(-len(rated) // cols)
  fig = Figure(figsize=(3.6 * cols, 3.2 * rows), layout="constrained")
  axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
  jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(truth))  # separates the stars
  for ax, r in zip(axes, rated):
    ax.hexbin(truth + jitter, r["_predictions"], gridsize=30, bins="log", cmap="viridis")
    ax.plot(data.store.rating_range, data.store.rating_range, "r--", lw=1)
    ax.set_title(f"{r['model']} (RMSE {r['rating']['rmse']:.3f})", fontsize=9)
    ax.set_xlabel("true rating (jittered)")
    ax.set_ylabel("predicted")
  for ax in axes[len(rated):]:
    ax.set_visible(False)
  fig.savefig(path, dpi=100)


def _plot_error_by_activity(results, data, path: Path) -> None:
  """Test RMSE per bucket of the user's training activity: light vs heavy users."""
  from matplotlib.figure import Figure
  rated = [r for r in results if "_predictions" in r]
  if not rated:
    return
  activity = np.diff(data.train_matrix.indptr)[np.take(data.store.user, data.test_rows)]
  bucket = np.searchsorted(ACTIVITY_BUCKETS, activity, side="right") - 1
  labels = [f"{lo}-{hi - 1}" for lo, hi in zip(ACTIVITY_BUCKETS, ACTIVITY_BUCKETS[1:])]
  labels = ["0"] + labels + [f"{ACTIVITY_BUCKETS[-1]}+"]
  bucket = bucket + 1  # 0 = users with no training ratings
  truth = data.store.stars(data.test_rows).astype(np.float64)
  fig = Figure(figsize=(9, 4), layout="constrained")
  ax = fig.subplots()
  width = 0.8 / len(rated)
  present = [b for b in range(len(labels)) if (bucket == b).any()]
  for k, r in enumerate(rated):
    err = (r["_predictions"] - truth) ** 2
    rmse = [np.sqrt(err[bucket == b].mean()) for b in present]
    ax.bar(np.arange(len(present)) + k * width, rmse, width, label=r["model"])
  ax.set_xticks(np.arange(len(present)) + 0.4 - width / 2,
                [f"{labels[b]}\n(n={int((bucket == b).sum())})" for b in present])
  ax.set_xlabel("user's training ratings")
  ax.set_ylabel("test RMSE")
  ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
  fig.savefig(path, dpi=110)


def _plot_training_curves(models_dir: Path, path: Path) -> None:
  """Validation metric per epoch of each JAX model trained for the comparison."""
  from matplotlib.figure import Figure
  logs = sorted(models_dir.glob("*/metrics.jsonl")) if models_dir.is_dir() else []
  if not logs:
    return
  fig = Figure(figsize=(7, 4), layout="constrained")
  ax = fig.subplots()
  for log in logs:
    records = [json.loads(line) for line in log.read_text().splitlines() if line]
    key = "valid_rmse" if "valid_rmse" in records[0] else "train_loss"
    ax.plot([r["epoch"] + 1 for r in records], [r.get(key) for r in records], marker="o",
            label=f"{log.parent.name} ({key})")
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation RMSE")
  ax.legend(fontsize=8)
  fig.savefig(path, dpi=110)

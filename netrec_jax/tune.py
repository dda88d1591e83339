"""The tune mode: the same trial budget for every model of a comparison, on validation only.

  python launch.py --experiment=compare_quickstart --mode=tune --workdir=DIR

Each entry of compare.models gets its own Optuna study: a TPE sampler seeded by config.seed,
tune.trials trials of which the first tune.startup_trials are random. A trial fits on the
split's training rows and is scored on its validation rows by the figure that picks the
entry's best checkpoint: its family's validation metric for ours (RMSE for rating models,
recall@K / ndcg@K for rankers, ndcg@100 under strong generalization), and the same rule for
baselines (RMSE when they predict ratings, else recall@20; ndcg@100 under strong
generalization). The test rows are never evaluated while tuning: a trial's final metrics hold
its validation part only. Our trials report every validation to a median pruner
(tune.prune), which stops a trial whose figure falls below the median of earlier trials at
the same epoch, never before tune.prune_warmup_epochs epochs (a slow learning rate starts
behind); baselines fit in one go and are not pruned.

Written: DIR/tune/ENTRY/trials.{md,csv,json} (every trial: state, figure, settings, seconds)
and ENTRY/trial_N (our trials' runs), DIR/tune/best.json. Then the comparison runs once into
DIR: each of our entries restored from its best trial's run (the model trained with the best
settings), each baseline refitted with its best settings, all evaluated on test; the header
of comparison.md says how many trials each had. Search spaces: Family.SEARCH_SPACE
(netrec_jax/train/family.py) for ours, BASELINE_SPACES below for the baselines; an entry with
nothing to tune (surprise_baseline) is fitted once and the table says so.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

from absl import logging

from netrec_jax import compare as compare_lib
from netrec_jax.data import datasets
from netrec_jax.data.splits import STRONG_PROTOCOL
from netrec_jax.eval import evaluator, report
from netrec_jax.progress import Progress

_SVD = {"n_factors": ("int_log", 10, 200), "n_epochs": ("int", 10, 60),
        "lr_all": ("log", 1e-3, 3e-2), "reg_all": ("log", 1e-3, 0.3)}
_IALS = {"factors": ("int_log", 16, 256), "regularization": ("log", 1e-3, 10.0),
         "alpha": ("log", 0.1, 50.0), "iterations": ("int", 5, 50)}
# Keyword arguments of each baseline (compare.BASELINES) and their ranges.
BASELINE_SPACES: dict[str, dict[str, tuple]] = {
    "surprise_svd": _SVD, "surprise_svd_tuned": _SVD,
    "surprise_svdpp": {"n_factors": ("int_log", 5, 100), "n_epochs": ("int", 10, 40),
                       "lr_all": ("log", 1e-3, 3e-2), "reg_all": ("log", 1e-3, 0.3)},
    "implicit_als": _IALS, "jax_ials": _IALS,
    "implicit_bpr": {"factors": ("int_log", 16, 256), "learning_rate": ("log", 1e-3, 0.1),
                     "regularization": ("log", 1e-4, 0.1), "iterations": ("int", 50, 300)},
    "jax_als": {"factors": ("int_log", 8, 128), "reg": ("log", 0.01, 1.0),
                "iterations": ("int", 5, 30)},
}


# Errors that fail one trial (its settings diverged) without stopping the study.
FAILED_TRIAL = (FloatingPointError,)


def suggest(trial, name: str, spec: tuple) -> Any:
  """One value of `name` from its spec (see Family.SEARCH_SPACE)."""
  kind = spec[0]
  if kind == "log":
    return trial.suggest_float(name, spec[1], spec[2], log=True)
  if kind == "float":
    return trial.suggest_float(name, spec[1], spec[2])
  if kind == "int":
    return trial.suggest_int(name, spec[1], spec[2])
  if kind == "int_log":
    return trial.suggest_int(name, spec[1], spec[2], log=True)
  if kind == "choice":
    return trial.suggest_categorical(name, list(spec[1]))
  raise ValueError(f"search space of {name!r}: unknown kind {kind!r}")


def search_space(entry: str, config) -> dict[str, tuple]:
  """What the tune mode searches for `entry` (an empty dict: nothing to tune)."""
  from netrec_jax.train import family
  base = entry.split("@")[0]
  if base in compare_lib.BASELINES:
    return BASELINE_SPACES.get(base, {})
  model = compare_lib.entry_config(entry, config).model.name
  return family.family(model).SEARCH_SPACE.get(model, {})


def _selection_metric(split, predicts_ratings: bool, ks: tuple[int, ...]) -> str:
  """The validation figure a model without its own (a baseline, a closed form) is tuned on."""
  if split.protocol == STRONG_PROTOCOL:
    return evaluator.STRONG_VALID_METRIC
  if predicts_ratings:
    return "rmse"
  return f"recall@{20 if 20 in ks else max(ks)}"


def _score(metric: str, value: float) -> float:
  """What the study maximises: the figure, negated where lower is better."""
  return -value if metric in evaluator.RATING_METRICS else value


class _Objective:
  """One entry's trials: fit with the trial's settings, score on the validation rows."""

  def __init__(self, entry: str, config, space: dict[str, tuple], folder: Path, store, split,
               valid_data):
    self.entry, self.config, self.space, self.folder = entry, config, space, folder
    self.store, self.split, self.valid_data = store, split, valid_data
    self.base = entry.split("@")[0]
    self.rows: list[dict[str, Any]] = []

  def __call__(self, trial) -> float:
    import optuna
    params = {name: suggest(trial, name, spec) for name, spec in self.space.items()}
    t0 = time.time()
    row: dict[str, Any] = {"trial": trial.number}
    self._last_report: dict[str, Any] = {}
    try:
      if self.base in compare_lib.BASELINES:
        metric, value = self._baseline(params)
      else:
        metric, value = self._ours(trial, params)
      row.update(state="complete", metric=metric, value=value)
    except optuna.TrialPruned:
      row.update(state="pruned", **self._last_report)  # the figure it was pruned at
      raise
    except FAILED_TRIAL as e:  # a diverged trial is a result of its settings: the study goes on
      row.update(state="failed", error=str(e).splitlines()[0])
      raise
    finally:
      row.update({**params, "seconds": round(time.time() - t0, 2)})
      self.rows.append(row)
    trial.set_user_attr("metric", metric)
    return _score(metric, value)

  def _baseline(self, params: dict[str, Any]) -> tuple[str, float]:
    model = compare_lib.fit_baseline(self.base, self.store, self.split.rows("train"), params,
                                     self.config.seed)
    metric = _selection_metric(self.split, getattr(model, "rating_note", "") == "",
                               tuple(self.config.eval.ks))
    valid = evaluator.validation_metrics(model, self.valid_data, metric, self.config.eval)
    if metric not in valid:
      raise ValueError(f"tune: {self.entry} gives no validation {metric} on {self.split.name}")
    return metric, float(valid[metric])

  def _ours(self, trial, params: dict[str, Any]) -> tuple[str, float]:
    import optuna
    from netrec_jax.train import loop
    run_config = compare_lib.entry_config(self.entry, self.config, params)
    prune = bool(self.config.tune.prune)

    def on_validation(epoch: int, metric: str, value: float | None, lower: bool) -> bool:
      if value is None:
        return False
      self._last_report = {"metric": metric, "value": value, "epochs": epoch + 1}
      trial.report(-value if lower else value, epoch)
      return prune and trial.should_prune()

    final = loop.train_and_evaluate(run_config, self.folder / f"trial_{trial.number}",
                                    on_validation=on_validation, parts=("valid",))
    metric = final.get("best_by") or _selection_metric(
        self.split, "rmse" in final["valid"], tuple(self.config.eval.ks))
    if final.get("stopped_by_caller"):
      raise optuna.TrialPruned(metric)
    if metric not in final["valid"]:
      raise ValueError(f"tune: {self.entry} gives no validation {metric} on {self.split.name}")
    return metric, float(final["valid"][metric])


def tune(config: Any, workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """Tunes every entry of config.compare.models on validation, then compares them on test."""
  import optuna
  from netrec_jax.train import family
  if config.compare.folds or config.compare.seeds:
    raise ValueError("tune runs on one split and seed; compare.folds or compare.seeds is set: "
                     "tune one (--config.compare.folds='' --config.compare.seeds='')")
  workdir = Path(workdir)
  folder = workdir / "tune"
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  if split is None or len(split.rows("valid")) == 0:
    raise ValueError(f"tune needs validation rows: split {getattr(split, 'name', None)} has "
                     "none (set split.valid_fraction > 0)")
  config = family.resolve(copy.deepcopy(config))
  valid_data = evaluator.part_data(store, split, "valid", config.eval)
  entries = [m.strip() for m in config.compare.models.split(",") if m.strip()]
  n_trials, startup = int(config.tune.trials), int(config.tune.startup_trials)
  spaces = {entry: search_space(entry, config) for entry in entries}
  budget = {entry: n_trials if spaces[entry] else 1 for entry in entries}
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  progress = Progress("tune", sum(budget.values()), "trials", every_s=0.0)
  done, best, runs, summary = 0, {}, {}, []
  for entry in entries:
    objective = _Objective(entry, config, spaces[entry], folder / entry, store, split,
                           valid_data)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=int(config.seed), n_startup_trials=startup),
        pruner=(optuna.pruners.MedianPruner(
            n_startup_trials=startup, n_warmup_steps=int(config.tune.prune_warmup_epochs))
                if config.tune.prune else optuna.pruners.NopPruner()))
    for _ in range(budget[entry]):
      study.optimize(objective, n_trials=1, catch=FAILED_TRIAL)
      done += 1
      progress(done)
    report.write_table(folder / entry / "trials", objective.rows)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
      raise ValueError(f"tune: no trial of {entry} completed (see {folder / entry})")
    chosen = study.best_trial
    best[entry] = dict(chosen.params)
    if entry.split("@")[0] not in compare_lib.BASELINES:
      runs[entry] = folder / entry / f"trial_{chosen.number}"
    metric = chosen.user_attrs["metric"]
    value = -chosen.value if metric in evaluator.RATING_METRICS else chosen.value
    summary.append({"model": entry, "trials": len(study.trials),
                    "pruned": sum(t.state == optuna.trial.TrialState.PRUNED
                                  for t in study.trials),
                    "best_trial": chosen.number, "valid_metric": metric, "valid_value": value,
                    "settings": json.dumps(best[entry], sort_keys=True) if best[entry]
                    else "nothing to tune (fitted once)"})
    logging.info("tune %s: best trial %d, valid %s %.4f, %s", entry, chosen.number, metric,
                 value, best[entry])
  report.write_table(folder / "best", summary)
  untuned = [e for e in entries if not spaces[e]]
  note = (f"**Tuned on the validation rows only**: {n_trials} trials per model (Optuna TPE, "
          f"seed {config.seed}, {startup} random first"
          f"{', median pruning of our models per validation' if config.tune.prune else ''}), "
          "the best trial's settings then evaluated once on test; every trial is in "
          "tune/ENTRY/trials.md, the chosen settings in tune/best.md."
          + (f" Nothing to tune (fitted once): {', '.join(untuned)}." if untuned else ""))
  results = compare_lib.compare(config, workdir, runs=runs, tuned=best, note=note)
  for r in results:
    r["tuning"] = f"{budget[r['model']]} trials" if spaces.get(r["model"]) else "none"
  return results


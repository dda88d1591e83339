"""What every epoch-based family trainer shares: resume, early stopping, latest/best checkpoints,
and opening a run's checkpoint for restore (rows.py, graph.py, sequence.py, youtube.py).

The pair-model trainer (trainer.py) predates this and keeps its own step-based variant.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from netrec_jax import configs
from netrec_jax.data.store import atomic_write_text
from netrec_jax.progress import quiet_library_logs
from netrec_jax.train import checkpoint as ckpt_lib

# check(meta, config, where) -> None, raising CheckpointError for a family-specific mismatch.
Check = Callable[[dict[str, Any], Any, Path], None]


def serialize_steps() -> bool:
  """XLA's CPU collectives can deadlock when several multi-device steps are in flight."""
  return jax.devices()[0].platform == "cpu" and jax.device_count() > 1


def abstract_tree(init: Callable, sharding) -> Any:
  """Shapes and dtypes of init()'s tree placed with `sharding`: the target to restore into."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
                      jax.eval_shape(init))


class EpochCheckpoints:
  """WORKDIR/checkpoints/{latest,best} of one run, with resume and early stopping.

  `best` is chosen on a validation `metric` (lower_is_better for RMSE, not for NDCG); the
  early-stopping state travels in the checkpoint's meta, so a resumed run stops where the
  uninterrupted one would have.
  """

  def __init__(self, workdir: str | os.PathLike, config, store, split, *, metric: str,
               lower_is_better: bool, extra_meta: dict[str, Any] | None = None,
               check: Check | None = None):
    self.workdir, self.config, self.store, self.split = Path(workdir), config, store, split
    self.metric, self.lower_is_better = metric, lower_is_better
    self.extra_meta, self.check = dict(extra_meta or {}), check
    self.checkpoints = ckpt_lib.Checkpoints(workdir)
    self.first_epoch, self.best = 0, None
    self.patience_left = config.train.early_stopping_patience
    self.serialize = serialize_steps()

  def resume(self, abstract) -> Any | None:
    """The latest checkpoint's tree (and the loop state from its meta), or None: start fresh.

    Starting fresh also removes a stale metrics.jsonl.
    """
    if not (self.config.train.resume and self.checkpoints.has("latest")):
      (self.workdir / "metrics.jsonl").unlink(missing_ok=True)
      return None
    where = self.checkpoints.root / "latest"
    meta = self.checkpoints.read_meta("latest")
    ckpt_lib.check_compatible(meta, self.config.to_dict(), self.store.fingerprint, where)
    if self.check is not None:
      self.check(meta, self.config, where)
    tree, meta = self.checkpoints.restore("latest", abstract)
    self.first_epoch = int(meta["epoch"]) + 1
    self.best = tuple(meta["best"]) if meta.get("best") else None
    self.patience_left = meta.get("patience_left", self.patience_left)
    logging.info("resuming %s after epoch %d", self.workdir, self.first_epoch)
    return tree

  def stop_early(self) -> bool:
    return self.config.train.early_stopping_patience > 0 and self.patience_left <= 0

  def save(self, which: str, epoch: int, tree, value: float | None,
           step: int | None = None) -> None:
    meta = {"config": self.config.to_dict(), "epoch": epoch,
            "step": epoch if step is None else step,
            f"valid_{self.metric}": value, "store_fingerprint": self.store.fingerprint,
            "split": self.split.name, "protocol": self.split.protocol, "best": self.best,
            "patience_left": self.patience_left, **self.extra_meta}
    self.checkpoints.save(which, epoch, tree, meta)
    if self.serialize:
      self.checkpoints.wait()

  def end_epoch(self, epoch: int, tree, value: float | None, step: int | None = None) -> bool:
    """Saves `latest` (and `best` when `value` improved on it); True when it improved.

    step: the optimizer step to record (default: the epoch)."""
    min_delta = self.config.train.min_delta
    improved = value is not None and (self.best is None or (
        value < self.best[1] - min_delta if self.lower_is_better
        else value > self.best[1] + min_delta))
    if improved:
      self.best = (epoch, value)
      self.patience_left = self.config.train.early_stopping_patience
      self.save("best", epoch, tree, value, step)
    elif value is not None:
      self.patience_left -= 1
    self.save("latest", epoch, tree, value, step)
    return improved

  @property
  def best_epoch(self) -> int | None:
    return self.best[0] if self.best else None

  def close(self) -> None:
    self.checkpoints.close()


def open_run(workdir: str | os.PathLike, config=None, which: str = "best",
             check: Check | None = None
             ) -> tuple[ckpt_lib.Checkpoints, str, dict[str, Any], ml_collections.ConfigDict]:
  """(checkpoints, which, meta, saved config) of a finished or interrupted run.

  Falls back from `best` to `latest`. With `config`, the checkpoint must fit it (store
  fingerprint, model and family sections, plus `check`), and the saved config takes config's
  data and mesh sections: where the store is now and how to run may differ, the model may not.
  """
  checkpoints = ckpt_lib.Checkpoints(workdir)
  if not checkpoints.has(which):
    which = "latest"
  meta = checkpoints.read_meta(which)
  if meta is None:
    checkpoints.close()
    raise ckpt_lib.CheckpointError(f"{workdir}: no checkpoints found under {checkpoints.root}")
  saved = configs.from_checkpoint(meta["config"])
  if config is not None:
    from netrec_jax.data import datasets
    store = datasets.open_or_build(config.data)
    where = checkpoints.root / which
    ckpt_lib.check_compatible(meta, config.to_dict(), store.fingerprint, where)
    if check is not None:
      check(meta, config, where)
    with saved.unlocked():
      saved.data = config.data
      saved.mesh = config.mesh
  return checkpoints, which, meta, saved


def read_log(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The run's metrics.jsonl records (none when it has not logged yet)."""
  path = Path(workdir) / "metrics.jsonl"
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line]


def write_final_metrics(workdir: str | os.PathLike, load_recommender: Callable, *,
                        rate_keys: tuple[str, ...] = (), **facts: Any) -> dict[str, Any]:
  """WORKDIR/final_metrics.json: the best checkpoint restored and evaluated exactly as
  --mode=eval would, plus facts about the run and the median of each per-epoch rate."""
  final = load_recommender(workdir).evaluate_splits()
  log = read_log(workdir)
  final.update(facts)
  final.update({k: float(np.median([r[k] for r in log])) if log else None for k in rate_keys})
  if jax.process_index() == 0:
    atomic_write_text(Path(workdir) / "final_metrics.json", json.dumps(final, indent=2) + "\n")
  return final


def evaluate_checkpoint(load_recommender: Callable, config, restore_from: str | os.PathLike,
                        workdir: str | os.PathLike, which: str = "best") -> dict[str, Any]:
  """Restores a run, evaluates it on config's split, writes WORKDIR/final_metrics.json."""
  quiet_library_logs()
  result = load_recommender(restore_from, config, which).evaluate_splits()
  result["restored_from"] = str(restore_from)
  Path(workdir).mkdir(parents=True, exist_ok=True)
  atomic_write_text(Path(workdir) / "final_metrics.json", json.dumps(result, indent=2) + "\n")
  return result

"""The one training loop: train_and_evaluate, load_recommender and evaluate_checkpoint for
every model family (netrec_jax/train/family.py says what a family supplies).

Order of work, as flax's examples and big_vision do it:
  Resolve     the config for its model (unread fields refused, model defaults filled)
  Set up      the family's data, mesh, model and step
  Resume      WORKDIR/checkpoints/latest if present (then train.resume), else from scratch
  Epochs      host batches prefetched and placed per process (or the family's own epoch),
              a windowed NaN check, progress with ETA
  Validate    every train.eval_every epochs through the evaluator; best checkpoint, early
              stopping and reduce-on-plateau (none of them before the family's
              Setup.select_from_epoch, a warm-up phase); metrics.jsonl lines written with the
              checkpoint that covers them, so a resumed run never repeats a line
  Final       the best checkpoint restored exactly as --mode=eval does, and evaluated by
              evaluator.evaluate_run -> final_metrics.json
"""

from __future__ import annotations

import copy
import json
import os
import time
import types
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from netrec_jax import sharding as sharding_lib
from netrec_jax import configs
from netrec_jax.data import datasets
from netrec_jax.data import splits as splits_lib
from netrec_jax.data.store import atomic_write_text
from netrec_jax.eval import evaluator, leakage
from netrec_jax.progress import Progress, quiet_library_logs
from netrec_jax.train import checkpoint as ckpt_lib
from netrec_jax.train import family as family_lib
from netrec_jax.train import input_pipeline
from netrec_jax.train.epoch_log import EpochLog, read_log
from netrec_jax.train.family import Family, Setup


# What a family that trains nothing (content) saves instead of checkpoints: what rebuilds it.
SAVED_MODEL = "saved_model.json"


class NonFiniteLossError(FloatingPointError):
  pass


def serialize_steps() -> bool:
  """XLA's CPU runtime can deadlock when consecutive multi-device programs with collectives
  are in flight at once on few cores (seen: 4 fake devices on 2 cores): on CPU we wait for
  each step; accelerators keep asynchronous dispatch."""
  return jax.devices()[0].platform == "cpu" and jax.device_count() > 1


def tree_field(tree: Any, name: str) -> Any:
  """tree.step / tree["step"]: the pair model's TrainState and the optax families' dicts."""
  return tree[name] if isinstance(tree, dict) else getattr(tree, name)


def _with_lr_scale(tree: Any, value: float) -> Any:
  scale = jax.numpy.asarray(value, jax.numpy.float32)
  scale = jax.device_put(scale, tree_field(tree, "lr_scale").sharding)
  return dict(tree, lr_scale=scale) if isinstance(tree, dict) else tree.replace(lr_scale=scale)


def check_finite(values: list | np.ndarray, first_step: int, epoch: int) -> np.ndarray:
  """Host copies of the step losses; raises naming the first step whose loss is not finite."""
  values = np.asarray(jax.device_get(values), np.float64).reshape(-1)
  bad = np.flatnonzero(~np.isfinite(values))
  if len(bad):
    raise NonFiniteLossError(
        f"loss became {values[bad[0]]} at step {first_step + int(bad[0])} (epoch {epoch}); "
        "stopped before writing a checkpoint. Lower the learning rates, add clipping "
        "(optimizer.clip_norm) or check the data.")
  return values


# ----------------------------------------------------------------------------- one epoch
def host_epoch(fam: Family, setup: Setup, step_fn, tree: Any, epoch: int, key0: jax.Array
               ) -> tuple[Any, dict[str, float]]:
  """Host batches, prefetched and placed (each process its slice), through the jitted step."""
  config = setup.config
  sharding = sharding_lib.batch_sharding(setup.mesh)
  host = fam.batches(setup, epoch)
  total = len(host) if hasattr(host, "__len__") else setup.steps_per_epoch
  placed = input_pipeline.prefetch(
      (sharding_lib.put_batch(b, sharding) for b in host), config.train.prefetch)
  serialize = serialize_steps()
  window = max(1, int(config.train.check_every_steps))
  progress = Progress(f"epoch {epoch + 1}/{config.train.epochs}", total, "steps",
                      every_s=config.train.log_every_s)
  first_step = int(tree_field(tree, "step"))
  losses, norms = [], []
  for k, batch in enumerate(placed):
    key = jax.random.fold_in(key0, first_step + k)
    tree, metrics = step_fn(tree, batch, key)
    if serialize:
      jax.block_until_ready(metrics["loss"])
    losses.append(metrics["loss"])
    norms.append(metrics["grad_norm"])
    if (k + 1) % window == 0:
      check_finite(losses[-window:], first_step + k + 1 - window, epoch)
    progress(k + 1, max(total, k + 1))
  values = check_finite(losses, first_step, epoch)
  return tree, {"train_loss": float(values.mean()) if len(values) else float("nan"),
                "grad_norm": float(np.mean(jax.device_get(norms))) if norms else 0.0,
                "steps": len(values)}


# ------------------------------------------------------------------------------- training
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                       on_validation: Callable[[int, str, float | None, bool], bool] | None = None,
                       parts: tuple[str, ...] = ("valid", "test")) -> dict[str, Any]:
  """Trains config's model into WORKDIR (resuming from its latest checkpoint); final metrics.

  on_validation(epoch, metric, value, lower_is_better), called after each validation, stops
  training when it returns True (the tune mode prunes a hopeless trial so); `parts` are the
  split parts the final metrics evaluate (the tune mode's trials never touch "test").
  """
  quiet_library_logs()
  config = family_lib.resolve(copy.deepcopy(config))
  fam = family_lib.family(config.model.name)
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  t_start = time.time()
  if not fam.trains:
    leakage.audit_run(config, workdir)  # before the fit; blocks on a leak
    if jax.process_index() == 0:
      _write_json(workdir / SAVED_MODEL, fam.fit(config, workdir, RUNS))
    return _write_final(workdir, load_recommender(workdir), parts,
                        train_seconds=time.time() - t_start)

  # ---- Set up data, mesh and model.
  setup = fam.setup(config)
  if (setup.split.protocol == splits_lib.STRONG_PROTOCOL
      and setup.valid_metric in evaluator.RATING_METRICS):
    # Held-out users have no training ratings to predict from: best is picked by the ranking
    # figure of the validation users' fold-in, as Liang et al. pick it.
    setup.valid_metric, setup.lower_is_better = evaluator.STRONG_VALID_METRIC, False
  cfg = config.train
  logging.info("%s (%s family): %s, split %s (protocol %s), %d training %s; mesh %s",
               config.model.name, fam.name, setup.store.name, setup.split.name,
               setup.split.protocol, setup.n_examples, setup.unit, dict(setup.mesh.shape))
  valid_data = evaluator.part_data(setup.store, setup.split, "valid", config.eval)
  leakage.audit_run(config, workdir, setup, valid_data)  # before training; blocks on a leak

  # ---- Resume from latest, or start from scratch.
  checkpoints = ckpt_lib.Checkpoints(workdir)
  loop = {"best": None, "patience_left": cfg.early_stopping_patience, "since_improvement": 0}
  first_epoch = 0
  if cfg.resume and checkpoints.has("latest"):
    meta = checkpoints.read_meta("latest")
    check_compatible(meta, config, fam, setup.store.fingerprint, checkpoints.root / "latest")
    tree, meta = checkpoints.restore("latest", fam.abstract(setup))
    first_epoch, loop = int(meta["epoch"]) + 1, dict(meta["loop"])
    epoch_log = EpochLog(workdir, int(meta["epoch"]), cfg.tensorboard)
    logging.info("resumed %s after epoch %d (step %d)", workdir, first_epoch,
                 int(tree_field(tree, "step")))
  else:
    epoch_log = EpochLog(workdir, None, cfg.tensorboard)
    tree = fam.init(setup)

  # ---- Epochs.
  runner = fam.epoch_runner(setup)
  step_fn = None if runner else fam.make_step(setup)
  key0 = jax.random.PRNGKey(config.seed)
  serialize = serialize_steps()
  overall = Progress(f"{config.model.name} training", max(cfg.epochs - first_epoch, 1), "epochs",
                     every_s=0.0)
  pending, trained_seconds, epochs_here, stopped_by_caller = [], 0.0, 0, False
  n_ratings = len(setup.split.rows("train"))
  for epoch in range(first_epoch, cfg.epochs):
    if cfg.early_stopping_patience > 0 and loop["patience_left"] <= 0:
      logging.info("early stopping: no validation %s improvement in %d validations",
                   setup.valid_metric, cfg.early_stopping_patience)
      break
    t0 = time.time()
    if runner:
      first_step = int(tree_field(tree, "step"))
      tree, losses, _ = runner(tree, epoch)
      values = check_finite(losses, first_step, epoch)
      stats = {"train_loss": float(values.mean()), "grad_norm": None, "steps": len(values)}
    else:
      tree, stats = host_epoch(fam, setup, step_fn, tree, epoch, key0)
    jax.block_until_ready(tree_field(tree, "step"))
    seconds = time.time() - t0
    trained_seconds += seconds
    epochs_here += 1
    record = {"epoch": epoch, "step": int(tree_field(tree, "step")), **stats,
              "lr_scale": float(tree_field(tree, "lr_scale")), "epoch_seconds": seconds,
              f"{setup.unit}_per_s": setup.n_examples / seconds,
              "ratings_per_s": n_ratings / seconds, "time": time.time()}
    pending.append(record)
    overall(epoch - first_epoch + 1)
    last = epoch + 1 == cfg.epochs
    if (epoch + 1) % cfg.eval_every and not last:
      logging.info("epoch %d/%d: train loss %.4f, %.0f %s/s", epoch + 1, cfg.epochs,
                   stats["train_loss"], setup.n_examples / seconds, setup.unit)
      continue

    # ---- Validate: best, early stopping, plateau; then checkpoints and the log.
    recommender = fam.recommender(setup, tree, "training", {"epoch": epoch,
                                                            "step": record["step"]})
    valid = evaluator.validation_metrics(recommender, valid_data, setup.valid_metric,
                                         config.eval)
    value = valid.get(setup.valid_metric)
    record.update({f"valid_{k}": v for k, v in valid.items()})
    warmup = epoch < setup.select_from_epoch  # validated and logged, never best
    improved = value is not None and not warmup and (
        loop["best"] is None or loop["best"][0] < setup.select_from_epoch or (
            value < loop["best"][1] - cfg.min_delta if setup.lower_is_better
            else value > loop["best"][1] + cfg.min_delta))
    if improved:
      loop.update(best=[epoch, value], patience_left=cfg.early_stopping_patience,
                  since_improvement=0)
    elif value is not None and not warmup:
      loop["patience_left"] -= 1
      loop["since_improvement"] += 1
      patience = config.optimizer.plateau_patience
      if patience > 0 and loop["since_improvement"] % patience == 0:
        tree = _with_lr_scale(tree, float(tree_field(tree, "lr_scale"))
                              * config.optimizer.plateau_factor)
    meta = _meta(config, setup, epoch, record["step"], value, loop)
    if improved or value is None:
      checkpoints.save("best", epoch, tree, meta)
    checkpoints.save("latest", epoch, tree, meta)
    if serialize:
      checkpoints.wait()
    epoch_log.write(pending)
    pending = []
    logging.info("epoch %d/%d: train loss %.4f, valid %s %s, %.1fs, %.0f %s/s", epoch + 1,
                 cfg.epochs, stats["train_loss"], setup.valid_metric,
                 "n/a" if value is None else f"{value:.4f}", seconds,
                 setup.n_examples / seconds, setup.unit)
    if on_validation and on_validation(epoch, setup.valid_metric, value, setup.lower_is_better):
      logging.info("stopped after epoch %d by the caller (a pruned tuning trial)", epoch + 1)
      stopped_by_caller = True
      break
  checkpoints.close()
  epoch_log.close()

  # ---- Final: the best checkpoint, restored as --mode=eval restores it.
  log = read_log(workdir)
  rates = {k: float(np.median([r[k] for r in log])) for k in
           (f"{setup.unit}_per_s", "ratings_per_s") if log and k in log[0]}
  return _write_final(workdir, load_recommender(workdir), parts,
                      train_seconds=time.time() - t_start, trained_seconds=trained_seconds,
                      epochs_run=(log[-1]["epoch"] + 1) if log else 0,
                      epochs_this_run=epochs_here,
                      best_epoch=loop["best"][0] if loop["best"] else None,
                      best_by=setup.valid_metric, stopped_by_caller=stopped_by_caller, **rates)


def _meta(config, setup: Setup, epoch: int, step: int, value: float | None,
          loop: dict[str, Any]) -> dict[str, Any]:
  return {"config": config.to_dict(), "epoch": epoch, "step": step,
          "valid_metric": setup.valid_metric, "valid_value": value,
          "store_fingerprint": setup.store.fingerprint, "store_name": setup.store.name,
          "split": setup.split.name, "protocol": setup.split.protocol,
          "split_fingerprint": setup.split.info.get("fingerprint"), "loop": loop,
          "jax_version": jax.__version__, "devices": jax.device_count(), **setup.extra_meta}


def _write_final(workdir: Path, recommender, parts: tuple[str, ...] = ("valid", "test"),
                 **facts: Any) -> dict[str, Any]:
  final = evaluator.evaluate_run(recommender, parts=parts)
  final.update(facts)
  if jax.process_index() == 0:
    _write_json(workdir / "final_metrics.json", final)
  return final


def _write_json(path: Path, obj: Any) -> None:
  def default(x):
    if isinstance(x, (np.floating, np.integer)):
      return x.item()
    raise TypeError(f"not JSON serializable: {type(x)}")
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=default) + "\n")


# -------------------------------------------------------------------------------- restore
def check_compatible(meta: dict[str, Any], config, fam: Family, fingerprint: str,
                     where: str | os.PathLike) -> None:
  """Raises CheckpointError naming what differs when a checkpoint cannot serve `config`."""
  if meta.get("store_fingerprint") != fingerprint:
    raise ckpt_lib.CheckpointError(
        f"{where}: checkpoint was trained on a store with fingerprint "
        f"{meta.get('store_fingerprint')}, but this config's store has {fingerprint} "
        "(different data, filters or source files)")
  saved = configs.flatten(meta.get("config", {}))
  now = configs.flatten(config)
  keys = ("model.name",) + fam.architecture_keys  # fields, or sections (every field in it)
  problems = [f"{k}: checkpoint {saved[k]!r}, config {now.get(k)!r}" for k in sorted(saved)
              if any(k == key or k.startswith(key + ".") for key in keys)
              and saved[k] != now.get(k)]
  if problems:
    raise ckpt_lib.CheckpointError(f"{where}: checkpoint config is incompatible: "
                                   + "; ".join(problems))


def run_meta(workdir: str | os.PathLike, which: str = "best") -> tuple[dict[str, Any], str]:
  """The saved meta (config, epoch, data) of a run's `which` checkpoint, else its latest.

  A model that trains nothing (content) keeps its meta in WORKDIR/saved_model.json."""
  saved = Path(workdir) / SAVED_MODEL
  if saved.is_file():
    return json.loads(saved.read_text()), "saved"
  checkpoints = ckpt_lib.Checkpoints(workdir)
  try:
    meta = None
    if checkpoints.has(which) or checkpoints.has("latest"):
      # A damaged checkpoint (bad checksum, unreadable meta) gives way to the other series
      # when that one verifies; otherwise the error names the file.
      which = checkpoints.choose(which)
      meta = checkpoints.read_meta(which)
  finally:
    checkpoints.close()
  if meta is None:
    raise ckpt_lib.CheckpointError(f"{workdir}: no checkpoints found under "
                                   f"{Path(workdir).resolve() / 'checkpoints'}")
  return meta, which


def load_recommender(workdir: str | os.PathLike, config: ml_collections.ConfigDict | None = None,
                     which: str = "best"):
  """The best (or latest) state of a run, behind the evaluator's Recommender interface.

  With `config`, the run must fit it (same store fingerprint, same architecture); its data,
  mesh, evaluation and batch sizes for evaluation are taken from `config` (where the store
  is now and how to run may differ; the model may not).
  """
  quiet_library_logs()
  meta, which = run_meta(workdir, which)
  saved = configs.from_checkpoint(meta["config"])
  fam = family_lib.family(saved.model.name)
  if config is not None:
    config = family_lib.resolve(copy.deepcopy(config))
    store = datasets.open_or_build(config.data)
    check_compatible(meta, config, fam, store.fingerprint, Path(workdir) / which)
    with saved.unlocked():
      saved.data, saved.mesh, saved.eval = config.data, config.mesh, config.eval
      saved.train.eval_batch_size = config.train.eval_batch_size
  if not fam.trains:
    return fam.load(workdir, saved, meta, RUNS)
  setup = fam.setup(saved, meta)
  if setup.store.fingerprint != meta["store_fingerprint"]:
    raise ckpt_lib.CheckpointError(
        f"{workdir}: checkpoint was trained on store {meta['store_fingerprint']}, but its "
        f"config now builds {setup.store.fingerprint}")
  checkpoints = ckpt_lib.Checkpoints(workdir)
  try:  # restore checks checksums and finite values; a damaged `which` gives way
    tree, meta, which = checkpoints.restore_verified(which, fam.abstract(setup))
  finally:
    checkpoints.close()
  return fam.recommender(setup, tree, which, meta)


def evaluate_checkpoint(config: ml_collections.ConfigDict, restore_from: str | os.PathLike,
                        workdir: str | os.PathLike, which: str = "best") -> dict[str, Any]:
  """Restores a run, evaluates it on config's split, writes WORKDIR/final_metrics.json."""
  recommender = load_recommender(restore_from, config, which)
  Path(workdir).mkdir(parents=True, exist_ok=True)
  return _write_final(Path(workdir), recommender, restored_from=str(restore_from))


# How a family that builds on other runs (the content hybrid's CF model) trains and opens
# them: handed to it, so no family imports the loop.
RUNS = types.SimpleNamespace(train=train_and_evaluate, load=load_recommender)

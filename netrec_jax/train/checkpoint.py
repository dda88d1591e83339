"""Orbax checkpoints: `latest` (for resuming) and `best` (by validation metric, for evaluation).

Each checkpoint holds the full TrainState (tables, optimizer slots, params, optax state, step)
and a JSON record of the config, epoch, metrics and the data it was trained on (store and split
fingerprints). Orbax writes into a temporary folder and renames, so a crash never leaves a
checkpoint that restores half. Restoring checks the data and the model config first and says
exactly what differs, instead of failing deep inside a shape mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from netrec_jax.train.state import TrainState

# Config sections that change the shapes or meaning of the saved state (each family's own
# section too: graph, sequence, youtube, content).
COMPATIBILITY_KEYS = ("task", "model", "optimizer.sparse", "graph", "sequence", "youtube",
                      "content")


class CheckpointError(ValueError):
  pass


class Checkpoints:
  """The two checkpoint series of one run, under WORKDIR/checkpoints/{latest,best}."""

  def __init__(self, workdir: str | Path, keep_latest: int = 1):
    root = Path(workdir).resolve() / "checkpoints"
    self.root = root
    # Both series save at the same steps: distinct barrier prefixes keep their multi-process
    # barriers apart (with one shared prefix two processes wait on each other's keys).
    options = lambda keep, name: ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True,
        multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name))
    self.latest = ocp.CheckpointManager(root / "latest", options=options(keep_latest, "latest"))
    self.best = ocp.CheckpointManager(root / "best", options=options(1, "best"))

  def save(self, which: str, step: int, state: TrainState, meta: dict[str, Any]) -> None:
    manager = self.latest if which == "latest" else self.best
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)), force=True)

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.wait()
    self.latest.close()
    self.best.close()

  def has(self, which: str) -> bool:
    return (self.latest if which == "latest" else self.best).latest_step() is not None

  def read_meta(self, which: str) -> dict[str, Any] | None:
    manager = self.latest if which == "latest" else self.best
    step = manager.latest_step()
    if step is None:
      return None
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def restore(self, which: str, abstract: TrainState) -> tuple[TrainState, dict[str, Any]]:
    manager = self.latest if which == "latest" else self.best
    step = manager.latest_step()
    if step is None:
      raise CheckpointError(f"{self.root / which}: no checkpoint to restore")
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]


def _get(tree: dict[str, Any], dotted: str) -> Any:
  for part in dotted.split("."):
    tree = tree.get(part, {}) if isinstance(tree, dict) else {}
  return tree


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
  """Differences checkpoint (a) vs config (b). A field the checkpoint's config does not have
  was added to netrec_jax after it was saved; it cannot have shaped that state, so it is not
  a difference (old checkpoints stay usable as the config grows)."""
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(a):
      out += _diff(a.get(k), b.get(k), f"{prefix}.{k}")
    return out
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    a, b = list(a), list(b)
  return [] if a == b else [f"{prefix}: checkpoint {a!r}, config {b!r}"]


def check_compatible(meta: dict[str, Any], config: dict[str, Any], store_fingerprint: str,
                     where: str | Path) -> None:
  """Raises CheckpointError naming the difference if the checkpoint cannot serve this config."""
  if meta.get("store_fingerprint") != store_fingerprint:
    raise CheckpointError(
        f"{where}: checkpoint was trained on a store with fingerprint "
        f"{meta.get('store_fingerprint')}, but this config's store has {store_fingerprint} "
        "(different data, filters or source files)")
  problems = []
  for key in COMPATIBILITY_KEYS:
    problems += _diff(_get(meta.get("config", {}), key), _get(config, key), key)
  if problems:
    raise CheckpointError(f"{where}: checkpoint config is incompatible: " + "; ".join(problems))

"""Orbax checkpoints: `latest` (for resuming) and `best` (by validation metric, for evaluation).

Each checkpoint holds the full TrainState (tables, optimizer slots, params, optax state, step)
and a JSON record of the config, epoch, metrics and the data it was trained on (store and split
fingerprints). Orbax writes into a temporary folder and renames, so a crash never leaves a
checkpoint that restores half. Before restoring, loop.check_compatible checks the data and the
family's architecture fields and says exactly what differs, instead of failing deep inside a
shape mismatch.

Orbax does not notice bytes that change after the save (a bad disk, a careless copy): it then
restores NaN or 1e38 parameters without complaint. So every checkpoint gets a `checksums.json`
(crc32 and size of each file, written once orbax has finished), which restore and read_meta
check first; any mismatch, missing or unreadable file is one CheckpointError naming the
checkpoint and the file. Restored parameters must also be finite.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from netrec_jax.train.state import TrainState

CHECKSUM_FILE = "checksums.json"
CHECKSUM_FORMAT = 1
_READ_BYTES = 16 << 20

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
    self._unsealed: dict[str, int] = {}  # saves whose checksums are not written yet
    self._verified: dict[tuple[str, int], str] = {}  # (which, step) -> "sealed" | "unsealed"
    self._lock = threading.Lock()

  def _manager(self, which: str) -> ocp.CheckpointManager:
    if which not in ("latest", "best"):
      raise ValueError(f"checkpoint series must be 'latest' or 'best', got {which!r}")
    return self.latest if which == "latest" else self.best

  def step_dir(self, which: str, step: int) -> Path:
    return self.root / which / str(step)

  def save(self, which: str, step: int, state: TrainState, meta: dict[str, Any]) -> None:
    manager = self._manager(which)
    # Orbax waits for this series' previous save before starting the next one anyway; its
    # files are final then, so that is when its checksums are written.
    manager.wait_until_finished()
    self._seal(which)
    other = "best" if which == "latest" else "latest"
    if not self._manager(other).is_saving_in_progress():
      self._seal(other)
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)), force=True)
    with self._lock:
      self._unsealed[which] = int(step)
      self._verified.pop((which, int(step)), None)

  def wait(self) -> None:
    """Blocks until both series are written, then writes their checksums."""
    self.latest.wait_until_finished()
    self.best.wait_until_finished()
    self._seal("latest")
    self._seal("best")

  def close(self) -> None:
    self.wait()
    self.latest.close()
    self.best.close()

  def has(self, which: str) -> bool:
    return self._manager(which).latest_step() is not None

  def _seal(self, which: str) -> None:
    """checksums.json for the finished save of `which` (process 0 only; atomic rename)."""
    with self._lock:
      step = self._unsealed.pop(which, None)
    if step is None or jax.process_index() != 0:
      return
    folder = self.step_dir(which, step)
    if not folder.is_dir():  # replaced by a later save of the same series, or removed
      return
    record = {"format": CHECKSUM_FORMAT, "algorithm": "crc32", "step": step,
              "files": {rel: {"bytes": size, "crc32": crc}
                        for rel, (size, crc) in _checksums(folder).items()}}
    tmp = folder / f".{CHECKSUM_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / CHECKSUM_FILE)

  def verify(self, which: str) -> tuple[int, str]:
    """(step, "sealed" | "unsealed") of the newest `which` checkpoint; raises CheckpointError
    naming the file when a checksum differs or a file is missing or unreadable.

    "unsealed": the checkpoint has no checksums.json (written by an older netrec_jax, or the
    run stopped between orbax's commit and the checksums); it is accepted with a warning.
    """
    with self._lock:
      pending = which in self._unsealed
    if pending:  # our own save: finish it and write its checksums before checking them
      self._manager(which).wait_until_finished()
      self._seal(which)
    step = self._manager(which).latest_step()
    if step is None:
      raise CheckpointError(f"{self.root / which}: no checkpoint to restore")
    with self._lock:
      known = self._verified.get((which, step))
    if known is None:
      known = verify_step_dir(self.step_dir(which, step))
      with self._lock:
        self._verified[(which, step)] = known
    return step, known

  def read_meta(self, which: str) -> dict[str, Any] | None:
    manager = self._manager(which)
    step = manager.latest_step()
    if step is None:
      return None
    self.verify(which)
    where = self.step_dir(which, step)
    try:
      return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # noqa: BLE001 - any orbax or tensorstore failure, in one line
      raise CheckpointError(f"{where}: cannot read the checkpoint's meta ({_first_line(e)})"
                            ) from None

  def restore(self, which: str, abstract: TrainState) -> tuple[TrainState, dict[str, Any]]:
    manager = self._manager(which)
    step = manager.latest_step()
    if step is None:
      raise CheckpointError(f"{self.root / which}: no checkpoint to restore")
    self.verify(which)
    where = self.step_dir(which, step)
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 - any orbax or tensorstore failure, in one line
      raise CheckpointError(f"{where}: cannot restore ({_first_line(e)})") from None
    check_finite_tree(restored["state"], where)
    return restored["state"], restored["meta"]

  def choose(self, which: str) -> str:
    """`which` if its newest checkpoint verifies (checksums and meta), else the other series
    if that one does; CheckpointError naming both problems otherwise."""
    other = "latest" if which == "best" else "best"
    if not self.has(which):
      which, other = other, which
    try:
      self.read_meta(which)
      return which
    except CheckpointError as e:
      first = e
    if not self.has(other):
      raise first
    try:
      self.read_meta(other)
    except CheckpointError as e:
      raise CheckpointError(f"{first}; the {other} checkpoint is unusable too: {e}") from None
    logging.warning("%s; using the %s checkpoint instead", first, other)
    return other

  def restore_verified(self, which: str, abstract: TrainState
                       ) -> tuple[TrainState, dict[str, Any], str]:
    """(tree, meta, which used): `which`, or the other series when `which` is damaged (bad
    checksum, unreadable, non-finite) and the other one restores cleanly."""
    other = "latest" if which == "best" else "best"
    if not self.has(which):
      which, other = other, which
    try:
      return (*self.restore(which, abstract), which)
    except CheckpointError as e:
      first = e
    if not self.has(other):
      raise first
    try:
      tree, meta = self.restore(other, abstract)
    except CheckpointError as e:
      raise CheckpointError(f"{first}; the {other} checkpoint is unusable too: {e}") from None
    logging.warning("%s; restored the %s checkpoint instead", first, other)
    return tree, meta, other


def _checksums(folder: Path) -> dict[str, tuple[int, str]]:
  """{path relative to folder: (bytes, crc32 hex)} of every file under folder."""
  out = {}
  for path in sorted(p for p in folder.rglob("*") if p.is_file()):
    rel = path.relative_to(folder).as_posix()
    if rel == CHECKSUM_FILE or rel.startswith(f".{CHECKSUM_FILE}."):
      continue
    out[rel] = _file_crc(path)
  return out


def _file_crc(path: Path) -> tuple[int, str]:
  crc, size = 0, 0
  with open(path, "rb") as f:
    while block := f.read(_READ_BYTES):
      crc = zlib.crc32(block, crc)
      size += len(block)
  return size, f"{crc:08x}"


def verify_step_dir(folder: str | os.PathLike) -> str:
  """Checks one checkpoint folder against its checksums.json: "sealed" when every file
  matches, "unsealed" (with a warning) when there is no checksums.json; CheckpointError
  naming the checkpoint and the file otherwise."""
  folder = Path(folder)
  record_path = folder / CHECKSUM_FILE
  if not record_path.is_file():
    logging.warning("%s: no %s (saved by an older netrec_jax or interrupted before its "
                    "checksums were written); its integrity cannot be checked", folder,
                    CHECKSUM_FILE)
    return "unsealed"
  try:
    record = json.loads(record_path.read_text())
    files = record["files"]
    if record.get("algorithm") != "crc32":
      raise ValueError(f"unknown algorithm {record.get('algorithm')!r}")
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"{folder}: {CHECKSUM_FILE} is unreadable ({_first_line(e)}); the "
                          "checkpoint cannot be verified") from None
  for rel, expected in sorted(files.items()):
    path = folder / rel
    if not path.is_file():
      raise CheckpointError(f"{folder}: file {rel} is missing (the checkpoint is damaged)")
    try:
      if path.stat().st_size != expected["bytes"]:
        raise CheckpointError(f"{folder}: file {rel} has {path.stat().st_size} bytes, "
                              f"{expected['bytes']} were saved (the checkpoint is damaged)")
      _, crc = _file_crc(path)
    except OSError as e:
      raise CheckpointError(f"{folder}: file {rel} is unreadable ({e.strerror or e})"
                            ) from None
    if crc != expected["crc32"]:
      raise CheckpointError(f"{folder}: file {rel} does not match its checksum (crc32 {crc}, "
                            f"saved {expected['crc32']}): the checkpoint is damaged")
  return "sealed"


def check_finite_tree(tree: Any, where: str | os.PathLike) -> None:
  """Raises CheckpointError naming the first floating leaf with NaN or inf values.

  No evaluation or service runs on such parameters (they give NaN metrics or absurd scores).
  """
  leaves = [(jax.tree_util.keystr(path), x)
            for path, x in jax.tree_util.tree_leaves_with_path(tree)
            if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact) and x.size]
  if not leaves:
    return
  counts = np.asarray(jax.device_get(_non_finite_counts([x for _, x in leaves])))
  for (name, x), bad in zip(leaves, counts):
    if bad:
      raise CheckpointError(f"{where}: leaf {name} has {int(bad)} non-finite values of "
                            f"{x.size} (NaN or inf): the checkpoint cannot be used")


@jax.jit
def _non_finite_counts(leaves: list[Any]) -> jax.Array:
  return jnp.stack([jnp.sum(~jnp.isfinite(x), dtype=jnp.int32) for x in leaves])


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0] if text else ''}"[:300]

"""A run's per-epoch log: WORKDIR/metrics.jsonl and, with train.tensorboard, TensorBoard events.

Records are written together with the checkpoint that covers them, so a resumed run first
cuts metrics.jsonl back to the epoch it resumes after (no epoch appears twice) and opens its
event writer with purge_step at the next epoch (TensorBoard then drops the later events of
the interrupted run). Events go to WORKDIR/tensorboard through tensorboardX, which needs no
TensorFlow: `tensorboard --logdir WORKDIR/tensorboard`. Scalars are every numeric field of a
record (train_loss, grad_norm, lr_scale, rates, valid_*), at step = epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax

from netrec_jax.data.store import atomic_write_text

LOG = "metrics.jsonl"
TENSORBOARD = "tensorboard"


def read_log(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The run's metrics.jsonl records (none when it has not logged yet)."""
  path = Path(workdir) / LOG
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line]


class EpochLog:
  """Appends epoch records to metrics.jsonl (and TensorBoard); only process 0 writes."""

  def __init__(self, workdir: Path, resumed_after: int | None, tensorboard: bool):
    self.path = Path(workdir) / LOG
    self.writes = jax.process_index() == 0
    self._events = None
    if not self.writes:
      return
    if resumed_after is None:
      self.path.unlink(missing_ok=True)
    elif self.path.is_file():
      kept = [r for r in read_log(workdir) if r["epoch"] <= resumed_after]
      atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
    if tensorboard:
      from tensorboardX import SummaryWriter
      self._events = SummaryWriter(str(Path(workdir) / TENSORBOARD), flush_secs=30,
                                   purge_step=None if resumed_after is None
                                   else resumed_after + 1)

  def write(self, records: list[dict[str, Any]]) -> None:
    if not self.writes or not records:
      return
    with open(self.path, "a") as f:
      f.writelines(json.dumps(r) + "\n" for r in records)
    if self._events is not None:
      for r in records:
        for key, value in r.items():
          if key not in ("epoch", "time") and isinstance(value, (int, float)) and not (
              isinstance(value, bool)):
            # TensorBoard tags allow no "@": recall@20 -> recall_at_20 (tensorboardX would
            # rename it itself, with a log line per tag).
            self._events.add_scalar(key.replace("@", "_at_"), value, r["epoch"],
                                    walltime=r.get("time"))
      self._events.flush()

  def close(self) -> None:
    if self._events is not None:
      self._events.close()

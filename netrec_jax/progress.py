"""Progress lines with rate and ETA for long work (ingest, generation, training)."""

from __future__ import annotations

import time

from absl import logging


class Progress:
  """Logs `done/total`, rate and ETA at most every `every_s` seconds (and at the end)."""

  def __init__(self, what: str, total: float, unit: str = "items", every_s: float = 5.0):
    self.what, self.total, self.unit, self.every_s = what, float(total), unit, every_s
    self.started = time.time()
    self._last = 0.0

  def __call__(self, done: float, total: float | None = None) -> None:
    if total is not None:
      self.total = float(total)
    now = time.time()
    finished = done >= self.total
    if not finished and now - self._last < self.every_s:
      return
    self._last = now
    elapsed = max(now - self.started, 1e-9)
    rate = done / elapsed
    eta = (self.total - done) / rate if rate > 0 and not finished else 0.0
    logging.info("%s: %s/%s %s (%.0f%%), %s %s/s, elapsed %s, ETA %s", self.what,
                 _short(done), _short(self.total), self.unit, 100 * done / max(self.total, 1),
                 _short(rate), self.unit, _clock(elapsed), _clock(eta))


def _short(x: float) -> str:
  for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if abs(x) >= size:
      return f"{x / size:.2f}{unit}"
  return f"{x:.0f}" if abs(x) >= 10 or x == int(x) else f"{x:.2g}"  # 0.031 trials/s, not 0


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _DropChattyLibraries:
  """Drops INFO/DEBUG records logged through absl by orbax (dozens of lines per save)."""

  def filter(self, record) -> bool:
    return record.levelno >= 30 or "/orbax/" not in record.pathname


def quiet_library_logs() -> None:
  """Keeps our progress lines readable: library INFO chatter off, warnings still shown."""
  import logging as std_logging
  absl_logger = std_logging.getLogger("absl")
  if not any(isinstance(f, _DropChattyLibraries) for f in absl_logger.filters):
    absl_logger.addFilter(_DropChattyLibraries())

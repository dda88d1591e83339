"""One error type for bad input, so users see the file, line and problem."""

from __future__ import annotations

import os


class DataError(ValueError):
  """Bad input data or an unusable store, with where and what in the message."""

  def __init__(self, path: str | os.PathLike | None, problem: str, line: int | None = None):
    self.path = None if path is None else os.fspath(path)
    self.line = line
    self.problem = problem
    where = self.path or "<data>"
    if line is not None:
      where = f"{where}:{line}"
    super().__init__(f"{where}: {problem}")

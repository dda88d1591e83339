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


class DuplicateRating(DataError):
  """A (user, item) pair rated twice: ambiguous data, fatal in every mode."""

  def __init__(self, path: str | os.PathLike | None, user: int, item: int,
               line: int | None = None, first_at: str | None = None):
    self.user, self.item = user, item
    problem = f"duplicate rating: user {user} rated item {item} more than once"
    if first_at:
      problem += f" (first at {first_at})"
    super().__init__(path, problem, line=line)

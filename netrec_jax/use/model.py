"""Opening a trained run for use: the catalog, the restored model, ids and request parsing."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netrec_jax.data.splits import TRAIN, Split
from netrec_jax.data.store import RatingStore

DEFAULT_N = 10
MAX_N = 1000  # the largest top-N / neighbour list one call returns


class UseError(ValueError):
  """Bad input to a use mode (unknown ids, malformed pairs, a model lacking a capability)."""


class UnknownIdError(UseError):
  """A user or movie id that is not in the store (never rated, or removed by its filters)."""


@dataclasses.dataclass
class Catalog:
  """Movie facts indexed by dense item index, and user ids by dense user index."""

  movie_ids: np.ndarray  # int64 original ids, ascending (dense index order)
  titles: list[str]
  years: list[int | None]
  genres: list[list[str]] | None  # None where the data has no genres
  user_ids: np.ndarray  # int64 original user ids, ascending

  @classmethod
  def from_store(cls, store: RatingStore) -> Catalog:
    table = store.items_table()
    names = set(table.column_names)
    movie_ids = table.column("original_id").to_numpy().astype(np.int64)
    titles = (table.column("title").to_pylist() if "title" in names else [None] * len(movie_ids))
    titles = [t if t else f"movie {m}" for t, m in zip(titles, movie_ids)]
    years = table.column("year").to_pylist() if "year" in names else [None] * len(movie_ids)
    years = [None if y is None or (isinstance(y, float) and math.isnan(y)) else int(y)
             for y in years]
    genres = table.column("genres").to_pylist() if "genres" in names else None
    if genres is not None and not any(genres):
      genres = None
    return cls(movie_ids, titles, years, genres, store.user_original_ids().astype(np.int64))

  def movie(self, index: int) -> dict[str, Any]:
    return {"movie_id": int(self.movie_ids[index]), "title": self.titles[index],
            "year": self.years[index]}


@dataclasses.dataclass
class OpenedModel:
  """A restored recommender with its data, split and catalog: what every mode needs once."""

  recommender: Any
  model_name: str
  restore_from: str
  which: str
  store: RatingStore
  split: Split
  catalog: Catalog
  train_counts: np.ndarray  # [n_items] training ratings per movie
  user_train_counts: np.ndarray  # [n_users] training ratings per user
  score_label: str  # what a score means (predicted stars, logit, ...)
  unit_items: np.ndarray | None = dataclasses.field(default=None, repr=False)  # cosine cache

  @property
  def trained_items(self) -> np.ndarray:
    return self.train_counts > 0

  def candidates(self, min_ratings: int = 1) -> np.ndarray:
    """[n_items] mask of movies that may be listed: at least min_ratings training ratings.

    A movie without training ratings keeps its random initial embedding; one with very few
    has a noisy one (min_ratings > 1 keeps those out of lists).
    """
    if isinstance(min_ratings, bool) or not isinstance(min_ratings, (int, np.integer)) or (
        min_ratings < 1):
      raise UseError(f"min_ratings must be a positive integer, got {min_ratings!r}")
    return self.train_counts >= min_ratings

  def seen_in_training(self, user: int) -> np.ndarray:
    """Dense items `user` rated in the training part of the split (O(ratings of the user))."""
    rows = self.store.user_rows(int(user))
    mask = np.asarray(self.split.assignment[rows]) == TRAIN
    return np.asarray(self.store.item[rows])[mask]


# ---------------------------------------------------------------------------------- opening
def checkpoint_meta(restore_from: str | os.PathLike, which: str = "best"
                    ) -> tuple[dict[str, Any], str]:
  """The saved meta (config, step, data) of a run's `which` checkpoint, else its latest."""
  if not Path(restore_from).is_dir():
    raise UseError(f"{restore_from}: no checkpoints here (no such folder); pass the --workdir "
                   "of a finished training run as --restore_from")
  from netrec_jax.train import checkpoint as ckpt_lib, loop  # jax and orbax: only once needed
  try:
    return loop.run_meta(restore_from, which)
  except ckpt_lib.CheckpointError as e:
    raise UseError(f"{e}; pass the --workdir of a finished training run as --restore_from"
                   ) from None


def open_model(restore_from: str | os.PathLike, config: Any = None, which: str = "best"
               ) -> OpenedModel:
  """Restores a run's checkpoint through its model family and loads the catalog.

  With `config`, the checkpoint must fit it (same data and model); its data section says
  where the store lives now. Without one, the run's own saved config is used.
  """
  from netrec_jax.train import loop
  meta, which = checkpoint_meta(restore_from, which)
  model_name = meta["config"]["model"]["name"]
  from netrec_jax.train.checkpoint import CheckpointError
  try:
    recommender = loop.load_recommender(restore_from, config, which)
  except CheckpointError as e:  # e.g. --experiment's data or model differ from the run's
    raise UseError(str(e)) from None
  store, split = getattr(recommender, "store", None), getattr(recommender, "split", None)
  if store is None or split is None:
    raise UseError(f"model {model_name!r} does "
                   "not expose the store and split it was trained on; its recommender needs "
                   "`store` and `split` attributes for the use modes")
  train_rows = split.rows("train")
  train_counts = np.bincount(np.take(store.item, train_rows), minlength=store.n_items)
  user_train_counts = np.bincount(np.take(store.user, train_rows), minlength=store.n_users)
  task = meta["config"].get("task", "explicit")
  score_label = ("predicted stars (unclipped)" if task == "explicit" and
                 not getattr(recommender, "rating_note", "") else "model score (higher first)")
  return OpenedModel(recommender, model_name, str(restore_from), which, store, split,
                     Catalog.from_store(store), train_counts, user_train_counts, score_label)


def _opened(restore_from, config, which, opened: OpenedModel | None) -> OpenedModel:
  if opened is not None:
    return opened
  if restore_from is None:
    raise UseError("pass --restore_from=WORKDIR (a training run's workdir)")
  return open_model(restore_from, config, which)


def header(m: OpenedModel) -> dict[str, Any]:
  return {"model": m.model_name, "restored_from": m.restore_from, "checkpoint": m.which,
          "store": m.store.name, "split": m.split.name, "protocol": m.split.protocol,
          "score": m.score_label}


# ------------------------------------------------------------------------------ parsing
def check_n(n: int) -> int:
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_N:
    raise UseError(f"n must be an integer in [1, {MAX_N}], got {n!r}")
  return int(n)


def parse_ids(text: str | Sequence[int], what: str) -> list[int]:
  """'1,2, 3' (or a list) -> [1, 2, 3]; anything else is an error naming the bad token."""
  if isinstance(text, str):
    tokens = [t.strip() for t in text.split(",") if t.strip()]
  else:
    tokens = list(text)
  ids = []
  for token in tokens:
    try:
      if isinstance(token, float) and not token.is_integer():
        raise ValueError
      ids.append(int(token))
    except (TypeError, ValueError):
      raise UseError(f"{what}: {token!r} is not an integer id") from None
  if not ids:
    raise UseError(f"{what}: no ids given")
  return ids


def parse_new_user(text: str | dict | Sequence) -> dict[int, float]:
  """'movie_id:stars,...' (or {id: stars}, or [[id, stars], ...]) -> {movie_id: stars}."""
  if isinstance(text, str):
    pairs = []
    for token in (t.strip() for t in text.split(",")):
      if not token:
        continue
      if token.count(":") != 1:
        raise UseError(f"new user: {token!r} is not movie_id:stars (e.g. 1:5,50:3.5)")
      pairs.append(tuple(token.split(":")))
  elif isinstance(text, dict):
    pairs = list(text.items())
  else:
    pairs = [tuple(p) if isinstance(p, (list, tuple)) else p for p in text]
  ratings: dict[int, float] = {}
  for pair in pairs:
    if not isinstance(pair, tuple) or len(pair) != 2:
      raise UseError(f"new user: {pair!r} is not a (movie_id, stars) pair")
    movie, stars = pair
    try:
      if isinstance(movie, float) and not movie.is_integer():
        raise ValueError
      movie_id = int(str(movie).strip()) if isinstance(movie, str) else int(movie)
      value = float(stars)
    except (TypeError, ValueError):
      raise UseError(f"new user: {movie}:{stars} is not movie_id:stars with an integer id "
                     "and numeric stars") from None
    if not math.isfinite(value):
      raise UseError(f"new user: stars for movie {movie_id} must be a finite number")
    if movie_id in ratings:
      raise UseError(f"new user: movie {movie_id} is given twice")
    ratings[movie_id] = value
  if not ratings:
    raise UseError("new user: no movie_id:stars pairs given")
  return ratings


def _unknown_message(what: str, ids: Iterable[int], store: RatingStore) -> str:
  filters = {k: v for k, v in (store.meta.get("filters") or {}).items() if v}
  why = (f"never rated, or removed by the store's filters {filters}" if filters
         else "not in the data")
  return f"unknown {what} {sorted(set(ids))}: not in store {store.name} ({why})"


def _lookup(sorted_ids: np.ndarray, ids: Sequence[int]) -> np.ndarray:
  """Dense indices of original ids (the store orders dense indices by original id); -1 if absent.

  Ids outside int64 (e.g. a 30-digit number in a URL) are absent, not an overflow.
  """
  ids = [int(i) for i in ids]
  info = np.iinfo(np.int64)
  fits = np.array([info.min <= i <= info.max for i in ids], bool)
  query = np.array([i if f else 0 for i, f in zip(ids, fits)], np.int64)
  pos = np.minimum(np.searchsorted(sorted_ids, query), max(len(sorted_ids) - 1, 0))
  found = fits & (len(sorted_ids) > 0) & (sorted_ids[pos] == query)
  return np.where(found, pos, -1)


def _indices(sorted_ids: np.ndarray, ids: Sequence[int], what: str, store: RatingStore
             ) -> np.ndarray:
  index = _lookup(sorted_ids, ids)
  if (index < 0).any():
    raise UnknownIdError(_unknown_message(
        what, [int(i) for i, k in zip(ids, index) if k < 0], store))
  return index


def user_indices(m: OpenedModel, user_ids: Sequence[int]) -> np.ndarray:
  """Dense user indices of original user ids; UnknownIdError naming every unknown one."""
  return _indices(m.catalog.user_ids, user_ids, "user ids", m.store)


def movie_indices(m: OpenedModel, movie_ids: Sequence[int]) -> np.ndarray:
  """Dense movie indices of original movie ids; UnknownIdError naming every unknown one."""
  return _indices(m.catalog.movie_ids, movie_ids, "movie ids", m.store)

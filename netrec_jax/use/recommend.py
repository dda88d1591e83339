"""Top-N lists for known and new users, and similar movies."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


from netrec_jax.use.model import (DEFAULT_N, OpenedModel, UseError, _opened, check_n, header,
                                  movie_indices, parse_ids, parse_new_user, user_indices)


# ------------------------------------------------------------------------------- ranking
def top_n(scores: np.ndarray, n: int, candidates: np.ndarray) -> np.ndarray:
  """Indices of the n best candidate scores, best first (ties by index)."""
  scores = np.where(candidates, np.asarray(scores, np.float64), -np.inf)
  k = min(n, int(candidates.sum()))
  if k == 0:
    return np.zeros(0, np.int64)
  part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
  part = part[np.isfinite(scores[part])]
  return part[np.lexsort((part, -scores[part]))]


def _listing(m: OpenedModel, items: np.ndarray, scores: np.ndarray, key: str = "score"
             ) -> list[dict[str, Any]]:
  return [{"rank": r + 1, **m.catalog.movie(i), key: round(float(scores[i]), 5)}
          for r, i in enumerate(items)]


def recommend_users(m: OpenedModel, user_ids: Sequence[int], n: int = DEFAULT_N,
                    min_ratings: int = 1) -> list[dict[str, Any]]:
  """Top-n movies per user (original ids), excluding what each rated in training."""
  n = check_n(n)
  m.candidates(min_ratings)  # checked before any scoring
  index = user_indices(m, user_ids)
  scores = np.asarray(m.recommender.score_items(index))
  return [user_entry(m, user_id, user, scores[row], n, min_ratings)
          for row, (user_id, user) in enumerate(zip(user_ids, index))]


def user_entry(m: OpenedModel, user_id: int, user: int, scores: np.ndarray, n: int,
               min_ratings: int = 1) -> dict[str, Any]:
  """One user's top-n from their [n_items] scores, their training movies excluded."""
  candidates = m.candidates(min_ratings)
  candidates[m.seen_in_training(user)] = False
  entry = {"user_id": int(user_id), "n_training_ratings": int(m.user_train_counts[user]),
           "recommendations": _listing(m, top_n(scores, n, candidates), scores)}
  if m.user_train_counts[user] == 0:
    entry["note"] = ("this user has no training ratings in split "
                     f"{m.split.name}: scores follow the model's cold-start rule")
  return entry


def recommend_new_user(m: OpenedModel, ratings: dict[int, float], n: int = DEFAULT_N,
                       min_ratings: int = 1) -> dict[str, Any]:
  """Top-n for a user who is not in the data, from a few {original movie id: stars}."""
  n = check_n(n)
  candidates = m.candidates(min_ratings)
  ratings = parse_new_user(ratings)
  movie_ids = list(ratings)
  items = movie_indices(m, movie_ids)
  stars = np.array([ratings[i] for i in movie_ids], np.float64)
  lo, hi = m.store.rating_range
  bad = [f"{i}:{s:g}" for i, s in zip(movie_ids, stars) if not lo <= s <= hi]
  if bad:
    raise UseError(f"new user: stars must be in the rating range [{lo:g}, {hi:g}]: "
                   f"{', '.join(bad)}")
  fold_in = getattr(m.recommender, "fold_in", None)
  if fold_in is None:
    raise UseError(f"model {m.model_name!r} cannot recommend for a new user (it has no "
                   "fold_in)")
  try:
    scores = np.asarray(fold_in(items, stars))
  except NotImplementedError as e:
    raise UseError(f"model {m.model_name!r} cannot recommend for a new user: {e}") from None
  except ValueError as e:
    raise UseError(f"new user with model {m.model_name!r}: {e}") from None
  candidates[items] = False  # the given movies are never returned
  untrained = [int(i) for i, k in zip(movie_ids, items) if m.train_counts[k] == 0]
  result = {**header(m), "method": getattr(m.recommender, "fold_in_method", "model fold_in"),
            "given": [{**m.catalog.movie(k), "stars": float(s)} for k, s in zip(items, stars)],
            "recommendations": _listing(m, top_n(scores, n, candidates), scores)}
  if untrained:
    result["note"] = (f"movies {untrained} have no training ratings: their embeddings are "
                      "untrained and tell the model little")
  return result


def similar_movies(m: OpenedModel, movie_id: int, n: int = DEFAULT_N, min_ratings: int = 1
                   ) -> dict[str, Any]:
  """The n movies nearest to `movie_id` by cosine in the item embedding space."""
  n = check_n(n)
  candidates = m.candidates(min_ratings)
  item = int(movie_indices(m, [movie_id])[0])
  if m.train_counts[item] == 0:
    raise UseError(f"movie {movie_id} has no training ratings in split {m.split.name}: its "
                   "embedding was never trained, so its neighbours mean nothing")
  unit = _unit_item_vectors(m)
  cosine = unit @ unit[item]
  candidates[item] = False
  return {**header(m), "space": f"item embeddings, d={unit.shape[1]}, cosine similarity",
          "movie": m.catalog.movie(item),
          "neighbours": _listing(m, top_n(cosine, n, candidates), cosine, key="cosine")}


def _unit_item_vectors(m: OpenedModel) -> np.ndarray:
  """Item vectors scaled to unit length (cached on the opened model)."""
  if m.unit_items is not None:
    return m.unit_items
  vectors_fn = getattr(m.recommender, "item_vectors", None)
  if vectors_fn is None:
    raise UseError(f"model {m.model_name!r} has no item embeddings (item_vectors)")
  try:
    vectors = np.asarray(vectors_fn(), np.float64)
  except NotImplementedError as e:
    raise UseError(f"model {m.model_name!r} has no item embeddings: {e}") from None
  norms = np.linalg.norm(vectors, axis=1, keepdims=True)
  m.unit_items = vectors / np.maximum(norms, 1e-12)
  return m.unit_items


# ----------------------------------------------------------------------- the mode functions
def recommend(config: Any, restore_from: str | os.PathLike | None, *,
              users: str | Sequence[int] | None = None,
              new_user: str | dict | None = None, n: int = DEFAULT_N, min_ratings: int = 1,
              which: str = "best", opened: OpenedModel | None = None) -> dict[str, Any]:
  """launch.py --mode=recommend: top-n for known users (original ids) and/or a new user."""
  if users is None and new_user is None:
    raise UseError("recommend needs --users=ID,... or --new_user=MOVIE_ID:STARS,...")
  m = _opened(restore_from, config, which, opened)
  result = {**header(m), "candidates": candidate_rule(min_ratings)}
  if users is not None:
    result["users"] = recommend_users(m, parse_ids(users, "users"), n, min_ratings)
  if new_user is not None:
    result["new_user"] = {k: v for k, v in recommend_new_user(m, new_user, n,
                                                              min_ratings).items()
                          if k not in result}
  return result


def candidate_rule(min_ratings: int, neighbours: bool = False) -> str:
  """What a list may contain, said in every result."""
  rated = f"movies with at least {min_ratings} training rating{'s' if min_ratings > 1 else ''}"
  return rated + (", minus the movie itself" if neighbours else
                  ", minus the user's training (or given) movies")


def similar(config: Any, restore_from: str | os.PathLike | None, *,
            movies: str | Sequence[int], n: int = DEFAULT_N, min_ratings: int = 1,
            which: str = "best", opened: OpenedModel | None = None) -> dict[str, Any]:
  """launch.py --mode=similar: nearest movies by cosine for one or more original movie ids."""
  m = _opened(restore_from, config, which, opened)
  ids = parse_ids(movies, "movie")
  movie_indices(m, ids)  # every unknown id named at once, before any work
  results = [similar_movies(m, i, n, min_ratings) for i in ids]
  head = header(m)
  return {**head, "space": results[0]["space"],
          "candidates": candidate_rule(min_ratings, neighbours=True),
          "similar": [{k: v for k, v in r.items() if k not in head and k != "space"}
                      for r in results]}

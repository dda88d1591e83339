"""Using a trained model: top-N lists, a new user's top-N, similar movies, embedding analysis.

Every mode starts from a training run's checkpoint (`launch.py --mode=recommend|similar|
analyze|serve --restore_from=WORKDIR`). `open_model` reads the model name from the checkpoint's
saved config, restores it through its family (netrec_jax/train/families.py) and loads the
catalog once; the mode functions below take either a WORKDIR or that opened model, so the
service (netrec_jax/serve.py), the launcher and tests share one code path.

Ids are the dataset's ORIGINAL user and movie ids (Netflix / MovieLens), mapped to dense
indices through the store (ids that were never rated, or that the data filters removed, are
reported by name). Candidates for a top-N list are the movies with training ratings in the
run's split, minus the ones the user rated in training (or, for a new user, the given ones):
a movie without training ratings still has its random initial embedding.
"""

from __future__ import annotations

import dataclasses
import json
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
  root = Path(restore_from) / "checkpoints"
  if not root.is_dir():
    raise UseError(f"{restore_from}: no checkpoints here ({root} does not exist); pass the "
                   "--workdir of a finished training run as --restore_from")
  from netrec_jax.train import checkpoint as ckpt_lib  # jax and orbax: only once needed
  checkpoints = ckpt_lib.Checkpoints(restore_from)
  try:
    if not checkpoints.has(which) and not checkpoints.has("latest"):
      meta = None
    else:
      # A damaged checkpoint (bad checksum, unreadable meta) gives way to the other series
      # when that one verifies; otherwise the error names the file.
      which = checkpoints.choose(which)
      meta = checkpoints.read_meta(which)
  except ckpt_lib.CheckpointError as e:
    raise UseError(str(e)) from None
  finally:
    checkpoints.close()
  if meta is None:
    raise UseError(f"{restore_from}: no finished checkpoint under {root}")
  return meta, which


def open_model(restore_from: str | os.PathLike, config: Any = None, which: str = "best"
               ) -> OpenedModel:
  """Restores a run's checkpoint through its model family and loads the catalog.

  With `config`, the checkpoint must fit it (same data and model); its data section says
  where the store lives now. Without one, the run's own saved config is used.
  """
  from netrec_jax.progress import quiet_library_logs
  from netrec_jax.train import families
  quiet_library_logs()
  meta, which = checkpoint_meta(restore_from, which)
  model_name = meta["config"]["model"]["name"]
  from netrec_jax.train.checkpoint import CheckpointError
  try:
    recommender = families.family(model_name).load_recommender(restore_from, config, which)
  except CheckpointError as e:  # e.g. --experiment's data or model differ from the run's
    raise UseError(str(e)) from None
  store, split = getattr(recommender, "store", None), getattr(recommender, "split", None)
  if store is None or split is None:
    raise UseError(f"model {model_name!r} (restored by {families.FAMILIES[model_name]}) does "
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


def analyze(config: Any, restore_from: str | os.PathLike | None, out_dir: str | os.PathLike,
            *, clusters: int = 8, top_k: int = 15, which: str = "best",
            opened: OpenedModel | None = None) -> dict[str, Path]:
  """launch.py --mode=analyze: embedding and bias plots, bias tables, user clusters.

  Parts a model cannot provide (no biases, no user embeddings) are skipped and listed in
  summary.md with the reason. Returns the files written, by name.
  """
  from netrec_jax.analysis import embeddings as emb
  m = _opened(restore_from, config, which, opened)
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  written: dict[str, Path] = {}
  notes: list[str] = []
  sections: list[str] = []
  title = f"{m.model_name} on {m.store.name} ({m.split.protocol})"
  trained = np.flatnonzero(m.trained_items)

  # ---- Item embeddings: PCA by popularity and by genre.
  try:
    vectors = np.asarray(m.recommender.item_vectors(), np.float64)
  except (AttributeError, NotImplementedError) as e:
    vectors = None
    notes.append(f"item embedding plots skipped: {m.model_name} has no item_vectors ({e})")
  if vectors is not None and len(trained) >= 2:
    coords, share = emb.pca_2d(vectors[trained])
    written["item_pca_popularity"] = emb.plot_item_pca_popularity(
        coords, share, m.train_counts[trained],
        f"{title}\nitem embeddings (d={vectors.shape[1]}) of the {len(trained):,} movies "
        "with training ratings", out / emb.PLOT_FILES["item_pca_popularity"])
    corr = [abs(np.corrcoef(coords[:, k], np.log1p(m.train_counts[trained]))[0, 1])
            for k in range(2)]
    sections.append(f"Item PCA: the first two components explain {100 * share[0]:.1f}% and "
                    f"{100 * share[1]:.1f}% of the variance; |corr| with log popularity: "
                    f"PC1 {corr[0]:.2f}, PC2 {corr[1]:.2f}.")
    if m.catalog.genres is not None:
      written["item_pca_genre"] = emb.plot_item_pca_genre(
          coords, share, [m.catalog.genres[i] for i in trained],
          f"{title}: item embeddings (PCA) by genre", out / emb.PLOT_FILES["item_pca_genre"])
    else:
      notes.append(f"{emb.PLOT_FILES['item_pca_genre']}: not written (store {m.store.name} "
                   "has no genres)")

  # ---- Biases: distributions and the extremes.
  try:
    biases = m.recommender.biases()
  except (AttributeError, NotImplementedError) as e:
    biases = None
    notes.append(f"bias plots skipped: {m.model_name} has no user/item biases ({e})")
  if biases is not None:
    users_with_train = m.user_train_counts > 0
    written["bias_distributions"] = emb.plot_bias_distributions(
        biases["user"][users_with_train], biases["item"][trained],
        f"{title}: learned biases (users and movies with training ratings)",
        out / emb.PLOT_FILES["bias_distributions"])
    high, low = emb.extreme_indices(biases["item"], top_k, trained)
    picked = np.concatenate([high, low[::-1]])
    written["item_bias_extremes"] = emb.plot_item_bias_extremes(
        [_label(m, i) for i in picked], biases["item"][picked], len(high),
        f"{title}: the {len(high)} largest and {len(low)} smallest item biases",
        out / emb.PLOT_FILES["item_bias_extremes"])
    table = ["| rank | movie_id | title | year | item bias | training ratings |",
             "|---:|---:|---|---:|---:|---:|"]
    rows = lambda idx: [f"| {r + 1} | {m.catalog.movie_ids[i]} | {m.catalog.titles[i]} | "
                        f"{m.catalog.years[i] or ''} | {biases['item'][i]:+.3f} | "
                        f"{m.train_counts[i]} |" for r, i in enumerate(idx)]
    written["item_biases"] = out / "item_biases.md"
    written["item_biases"].write_text(
        f"# Item biases: {title}\n\n## Largest {len(high)}\n\n" + "\n".join(table + rows(high))
        + f"\n\n## Smallest {len(low)}\n\n" + "\n".join(table + rows(low)) + "\n",
        encoding="utf-8")

  # ---- Users: k-means clusters and what distinguishes each cluster's top movies.
  try:
    user_vectors = np.asarray(m.recommender.user_vectors(), np.float64)
  except (AttributeError, NotImplementedError) as e:
    user_vectors = None
    notes.append(f"user clusters skipped: {m.model_name} has no user_vectors ({e})")
  active = np.flatnonzero(m.user_train_counts > 0)
  if user_vectors is not None and len(active) >= clusters:
    labels, _ = emb.cluster_users(user_vectors[active], clusters)
    coords, share = emb.pca_2d(user_vectors[active])
    written["user_clusters"] = emb.plot_user_clusters(
        coords, share, labels, f"{title}: {clusters} k-means clusters of "
        f"{len(active):,} user embeddings", out / emb.PLOT_FILES["user_clusters"])
    written["user_clusters_md"] = out / "user_clusters.md"
    written["user_clusters_md"].write_text(
        _cluster_report(m, active, labels, clusters, title), encoding="utf-8")
  elif user_vectors is not None:
    notes.append(f"user clusters skipped: {len(active)} users with training ratings, fewer "
                 f"than {clusters} clusters")

  # ---- summary.md: what was written and what was not.
  lines = [f"# Embedding analysis: {title}", "",
           (f"Restored from `{m.restore_from}` ({m.which} checkpoint); store `{m.store.name}`, "
           f"split `{m.split.name}`."), ""]
  lines += sections + ([""] if sections else [])
  lines += ["## Files", ""] + [f"- `{p.name}`" for p in written.values()]
  if notes:
    lines += ["", "## Not written", ""] + [f"- {note}" for note in notes]
  written["summary"] = out / "summary.md"
  written["summary"].write_text("\n".join(lines) + "\n", encoding="utf-8")
  return written


def _label(m: OpenedModel, item: int) -> str:
  year = m.catalog.years[item]
  title = m.catalog.titles[item]
  return f"{title} ({year})" if year and str(year) not in title else title


def _cluster_report(m: OpenedModel, active: np.ndarray, labels: np.ndarray, k: int,
                    title: str, members_per_cluster: int = 200, top: int = 10) -> str:
  """Per cluster: size, and the movies whose mean score in the cluster most exceeds the mean
  score over all users (the raw top scores would be the same popular movies everywhere)."""
  rng = np.random.default_rng(0)
  candidates = m.train_counts >= max(1, int(np.percentile(m.train_counts[m.trained_items], 25)))
  everyone = np.sort(rng.choice(active, min(len(active), 4 * members_per_cluster),
                                replace=False))
  overall = np.asarray(m.recommender.score_items(everyone), np.float64).mean(0)
  lines = [f"# User clusters: {title}", "",
           (f"k-means (scikit-learn, k={k}) on the embeddings of the {len(active):,} users with "
           "training ratings. Top movies per cluster: the largest mean score over (up to "
           f"{members_per_cluster}) cluster members minus the mean over {len(everyone)} random "
           "users, among movies with at least the 25th-percentile number of training ratings."),
           ""]
  for c in range(k):
    members = active[labels == c]
    if len(members) == 0:
      lines += [f"## Cluster {c}: empty", ""]
      continue
    sample = np.sort(rng.choice(members, min(len(members), members_per_cluster), replace=False))
    lift = np.asarray(m.recommender.score_items(sample), np.float64).mean(0) - overall
    best = top_n(lift, top, candidates)
    lines += [(f"## Cluster {c}: {len(members):,} users "
              f"({100 * len(members) / len(active):.1f}%), median "
              f"{int(np.median(m.user_train_counts[members]))} training ratings"), "",
              "| rank | movie_id | title | year | score lift |", "|---:|---:|---|---:|---:|"]
    lines += [f"| {r + 1} | {m.catalog.movie_ids[i]} | {m.catalog.titles[i]} | "
              f"{m.catalog.years[i] or ''} | {lift[i]:+.3f} |" for r, i in enumerate(best)]
    lines.append("")
  return "\n".join(lines)


# ---------------------------------------------------------------------------- formatting
def to_json(result: dict[str, Any]) -> str:
  return json.dumps(result, indent=2, default=_json_default)


def _json_default(x):
  if isinstance(x, (np.integer, np.floating)):
    return x.item()
  if isinstance(x, Path):
    return str(x)
  raise TypeError(f"not JSON serializable: {type(x)}")


def _table(rows: list[dict[str, Any]], key: str) -> list[str]:
  if not rows:
    return ["  (no candidates)"]
  width = max(len(r["title"]) for r in rows)
  width = min(max(width, 5), 60)
  out = [f"  {'rank':>4}  {'movie_id':>8}  {'title':<{width}}  {'year':>4}  {key:>8}"]
  for r in rows:
    out.append(f"  {r['rank']:>4}  {r['movie_id']:>8}  {r['title'][:width]:<{width}}  "
               f"{r['year'] or '':>4}  {r[key]:>8.3f}")
  return out


def format_table(result: dict[str, Any]) -> str:
  """A readable text rendering of a recommend or similar result."""
  lines = [(f"model {result['model']} ({result['checkpoint']} checkpoint of "
           f"{result['restored_from']}), split {result['split']} (protocol "
           f"{result['protocol']}); scores: {result['score']}"),
           f"candidates: {result['candidates']}"]
  for entry in result.get("users", []):
    lines += ["", (f"user {entry['user_id']} ({entry['n_training_ratings']} training ratings, "
              "excluded):")]
    if "note" in entry:
      lines.append(f"  note: {entry['note']}")
    lines += _table(entry["recommendations"], "score")
  if "new_user" in result:
    new = result["new_user"]
    given = ", ".join(f"{g['title']} ({g['movie_id']}): {g['stars']:g}" for g in new["given"])
    lines += ["", f"new user who rated {given}", f"  method: {new['method']}"]
    if "note" in new:
      lines.append(f"  note: {new['note']}")
    lines += _table(new["recommendations"], "score")
  if "similar" in result:
    lines.append(f"space: {result['space']}")
    for entry in result["similar"]:
      movie = entry["movie"]
      lines += ["", f"movies similar to {movie['title']} ({movie['movie_id']}):"]
      lines += _table(entry["neighbours"], "cosine")
  return "\n".join(lines)

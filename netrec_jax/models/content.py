"""The content model's math: TF-IDF vectors of movie metadata and users' taste profiles.

Host numpy / scipy.sparse / scikit-learn; the recommender built on it (calibration, hybrid,
the evaluator interface) is netrec_jax/train/content.py, which documents the model.
"""

from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp

from netrec_jax.data.store import RatingStore

PROFILE_WEIGHTINGS = ("centered", "rating")
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")


# ---------------------------------------------------------------------------- documents
def _token(text: str) -> str:
  return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_")


def item_fields(store: RatingStore) -> dict[str, list]:
  """Per-field documents of every movie (index order): title strings, token lists."""
  table = store.items_table()
  columns = set(table.column_names)
  n = store.n_items
  titles = (table.column("title").to_pylist() if "title" in columns else [None] * n)
  years = (table.column("year").to_pylist() if "year" in columns else [None] * n)
  genres = (table.column("genres").to_pylist() if "genres" in columns else [None] * n)
  tags = (table.column("tags").to_pylist() if "tags" in columns else [None] * n)
  out = {"title": [_YEAR_SUFFIX.sub("", t or "") for t in titles],
         "year": [[f"year_{y}", f"decade_{y // 10 * 10}s"] if y else [] for y in years],
         "genres": [[_token(g) for g in (gs or []) if g and _token(g) != "unknown"]
                    for gs in genres],
         "tags": [[_token(t) for t in (ts.split("|") if isinstance(ts, str) else (ts or []))
                   if t] for ts in tags]}
  return out


def tfidf_matrix(store: RatingStore, cfg) -> tuple[sp.csr_matrix, dict[str, int]]:
  """[n_items, V] row-normalised TF-IDF of the movies' metadata and each block's vocabulary.

  A field with no vocabulary (no genres in Netflix, no tags in ML-100K) is left out.
  """
  from sklearn.feature_extraction.text import TfidfVectorizer
  from sklearn.preprocessing import normalize
  fields = item_fields(store)
  weights = {"title": cfg.title_weight, "year": cfg.year_weight, "genres": cfg.genre_weight,
             "tags": cfg.tag_weight}
  blocks, vocab = [], {}
  for field, docs in fields.items():
    if weights[field] <= 0:
      continue
    if field == "title":
      vectorizer = TfidfVectorizer(stop_words="english", min_df=cfg.min_df, sublinear_tf=True)
    else:  # already tokenised: each list element is one term
      vectorizer = TfidfVectorizer(analyzer=lambda doc: doc, min_df=cfg.min_df)
    try:
      block = vectorizer.fit_transform(docs)
    except ValueError:  # empty vocabulary: the store has nothing in this field
      continue
    blocks.append(block * float(weights[field]))
    vocab[field] = len(vectorizer.vocabulary_)
  if not blocks:
    raise ValueError(f"store {store.name} has no movie metadata to build TF-IDF vectors from "
                     "(no titles, years, genres or tags)")
  return normalize(sp.hstack(blocks).tocsr().astype(np.float64)), vocab


# ------------------------------------------------------------------------------ profiles
def rating_matrix(store: RatingStore, rows: np.ndarray) -> sp.csr_matrix:
  """users x items training stars (CSR)."""
  return sp.csr_matrix((store.stars(rows).astype(np.float64),
                        (np.take(store.user, rows), np.take(store.item, rows))),
                       shape=(store.n_users, store.n_items))


def profile_weights(ratings: sp.csr_matrix, weighting: str) -> sp.csr_matrix:
  """users x items profile weights: stars, or stars minus the user's mean.

  A user whose centred weights are all zero (every rating the same) gets uniform weights.
  """
  if weighting not in PROFILE_WEIGHTINGS:
    raise ValueError(f"content.profile_weighting must be one of {PROFILE_WEIGHTINGS}, got "
                     f"{weighting!r}")
  weights = ratings.copy().astype(np.float64)
  if weighting == "rating":
    return weights
  counts = np.diff(weights.indptr)
  means = np.asarray(weights.sum(1)).ravel() / np.maximum(counts, 1)
  weights.data = weights.data - np.repeat(means, counts)
  owner = np.repeat(np.arange(weights.shape[0]), counts)
  spread = np.bincount(owner, weights=np.abs(weights.data), minlength=weights.shape[0])
  flat = (counts > 0) & (spread < 1e-9)
  weights.data[flat[owner]] = 1.0
  weights.eliminate_zeros()
  return weights


def cosine(profiles: sp.csr_matrix, vectors: sp.csr_matrix) -> np.ndarray:
  """Dense [P, n_items] cosines of profile rows with (row-normalised) item vectors."""
  norms = np.sqrt(np.asarray(profiles.multiply(profiles).sum(1)).ravel())
  dots = (profiles @ vectors.T).toarray()
  return dots / np.where(norms > 0, norms, 1.0)[:, None]


def pair_dots(rows: sp.csr_matrix, vectors: sp.csr_matrix, users: np.ndarray,
              items: np.ndarray, chunk: int = 512) -> np.ndarray:
  """rows[users[k]] . vectors[items[k]] for each pair, a chunk of users at a time.

  Gathering one sparse profile row per pair would copy a whole profile per rating (hundreds
  of MB on ML-100K); a dense [chunk, n_items] block per user chunk stays bounded.
  """
  out = np.zeros(len(users), np.float64)
  order = np.argsort(users, kind="stable")
  unique, starts = np.unique(users[order], return_index=True)
  ends = np.append(starts[1:], len(order))
  for lo in range(0, len(unique), chunk):
    block = (rows[unique[lo:lo + chunk]] @ vectors.T).toarray()
    for k in range(lo, min(lo + chunk, len(unique))):
      pairs = order[starts[k]:ends[k]]
      out[pairs] = block[k - lo, items[pairs]]
  return out


def pair_cosine(profiles: sp.csr_matrix, vectors: sp.csr_matrix, users: np.ndarray,
                items: np.ndarray) -> np.ndarray:
  """cos(profile_u, vector_i) for each (users[k], items[k]) pair."""
  dots = pair_dots(profiles, vectors, users, items)
  norms = np.sqrt(np.asarray(profiles.multiply(profiles).sum(1)).ravel())[users]
  return dots / np.where(norms > 0, norms, 1.0)


def leave_one_out_cosine(sums: sp.csr_matrix, vectors: sp.csr_matrix, weights: np.ndarray,
                         users: np.ndarray, items: np.ndarray) -> np.ndarray:
  """cos(S_u - w x_i, x_i) per training pair: the profile without the movie it scores.

  S_u = sum_j w_j x_j; with |x_i| = 1, |S_u - w x_i|^2 = |S_u|^2 - 2 w S_u.x_i + w^2.
  """
  dot = pair_dots(sums, vectors, users, items)
  item_sq = np.asarray(vectors.multiply(vectors).sum(1)).ravel()[items]
  sum_sq = np.asarray(sums.multiply(sums).sum(1)).ravel()[users]
  rest_sq = np.maximum(sum_sq - 2 * weights * dot + weights ** 2 * item_sq, 0.0)
  num = dot - weights * item_sq
  denom = np.sqrt(rest_sq) * np.sqrt(item_sq)
  return np.where(denom > 1e-12, num / np.where(denom > 1e-12, denom, 1.0), 0.0)

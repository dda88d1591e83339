"""Plots and small numeric helpers for learned embeddings and biases (launch.py --mode=analyze).

  item_pca_popularity.png   2-D PCA of item embeddings, coloured by log10 training ratings
  item_pca_genre.png        the same projection, one panel per common genre (where the data
                            has genres)
  bias_distributions.png    histograms of user and item biases
  item_bias_extremes.png    movies with the largest and smallest item bias (bars)
  user_clusters.png         k-means clusters of user embeddings on their 2-D PCA, and sizes

The helpers (`pca_2d`, `extreme_indices`, `cluster_users`, `top_genres`) return plain arrays
so tests can check them against numpy; the model-dependent parts (scores per cluster) live in
netrec_jax/use.py. Figures use matplotlib's Figure API (no pyplot), as eda.py does.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: no global backend switch, no open windows

PLOT_FILES = {
    "item_pca_popularity": "item_pca_popularity.png",
    "item_pca_genre": "item_pca_genre.png",
    "bias_distributions": "bias_distributions.png",
    "item_bias_extremes": "item_bias_extremes.png",
    "user_clusters": "user_clusters.png",
}
_DPI = 120
_COLOR = "#3b6ea8"
_LOW_COLOR = "#d1495b"
_MAX_POINTS = 20_000  # scatter plots draw a seeded sample beyond this many points


# --------------------------------------------------------------------------- numerics
def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[n, 2] coordinates on the top two principal axes and their explained-variance shares."""
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"PCA needs a [n >= 2, d] matrix, got shape {x.shape}")
  centred = x - x.mean(0)
  _, s, vt = np.linalg.svd(centred, full_matrices=False)
  k = min(2, vt.shape[0])
  coords = centred @ vt[:k].T
  if k < 2:  # one-dimensional embeddings: plot against zero
    coords = np.concatenate([coords, np.zeros((len(coords), 1))], 1)
  var = s ** 2
  share = var[:k] / max(var.sum(), 1e-30)
  return coords, np.pad(share, (0, 2 - k))


def extreme_indices(values: np.ndarray, k: int, candidates: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Indices of the k largest (descending) and k smallest (ascending) values among candidates."""
  values = np.asarray(values)
  pool = np.arange(len(values)) if candidates is None else np.asarray(candidates)
  order = pool[np.argsort(values[pool], kind="stable")]
  k = min(k, len(order))
  return order[::-1][:k], order[:k]


def cluster_users(vectors: np.ndarray, k: int, seed: int = 0, max_fit: int = 100_000
                  ) -> tuple[np.ndarray, np.ndarray]:
  """k-means labels for every row and the [k, d] centres (fit on a seeded sample if large)."""
  from sklearn.cluster import KMeans  # imported here: only analyze needs scikit-learn
  vectors = np.asarray(vectors, np.float64)
  if len(vectors) < k:
    raise ValueError(f"cannot make {k} clusters from {len(vectors)} users")
  rng = np.random.default_rng(seed)
  fit = vectors if len(vectors) <= max_fit else vectors[rng.choice(len(vectors), max_fit,
                                                                   replace=False)]
  kmeans = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(fit)
  return kmeans.predict(vectors), kmeans.cluster_centers_


def top_genres(genres: Sequence[Sequence[str] | None], top: int = 8) -> list[str]:
  """The `top` most common genres (ties by name), most common first."""
  counts = collections.Counter(g for gs in genres if gs for g in gs)
  return [g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


def _sample(n: int, seed: int = 0) -> np.ndarray:
  if n <= _MAX_POINTS:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).choice(n, _MAX_POINTS, replace=False))


def _save(fig: Figure, path: Path) -> Path:
  fig.savefig(path, dpi=_DPI)
  return path


def _pca_axes_labels(ax, share: np.ndarray) -> None:
  ax.set_xlabel(f"PC1 ({100 * share[0]:.1f}% of variance)")
  ax.set_ylabel(f"PC2 ({100 * share[1]:.1f}% of variance)")
  ax.grid(True, alpha=0.3)


# ------------------------------------------------------------------------------ plots
def plot_item_pca_popularity(coords: np.ndarray, share: np.ndarray, n_train: np.ndarray,
                             title: str, path: str | os.PathLike) -> Path:
  """Items on their 2-D PCA, coloured by log10(1 + training ratings)."""
  keep = _sample(len(coords))
  fig = Figure(figsize=(7.5, 6), layout="constrained")
  ax = fig.subplots()
  colour = np.log10(1 + np.asarray(n_train, np.float64)[keep])
  order = np.argsort(colour)  # popular movies drawn last, on top
  points = ax.scatter(coords[keep][order, 0], coords[keep][order, 1], c=colour[order], s=6,
                      cmap="viridis", alpha=0.8, linewidths=0)
  fig.colorbar(points, ax=ax, label="log10(1 + training ratings)")
  _pca_axes_labels(ax, share)
  ax.set_title(title, fontsize=10)
  return _save(fig, Path(path))


def plot_item_pca_genre(coords: np.ndarray, share: np.ndarray,
                        genres: Sequence[Sequence[str] | None], title: str,
                        path: str | os.PathLike, top: int = 8) -> Path:
  """One panel per common genre: its movies in colour over all movies in grey.

  Movies have several genres, so one colour per movie would hide most of them; small
  multiples show where each genre sits in the projection.
  """
  keep = _sample(len(coords))
  coords = coords[keep]
  genres = [genres[i] or [] for i in keep]
  names = top_genres(genres, top)
  cols = min(4, max(1, len(names)))
  rows = max(1, -(-len(names) // cols))
  fig = Figure(figsize=(3.6 * cols, 3.3 * rows + 0.6), layout="constrained")
  axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).reshape(-1)
  for k, ax in enumerate(axes):
    if k >= len(names):
      ax.set_axis_off()
      continue
    mask = np.array([names[k] in gs for gs in genres])
    ax.scatter(coords[~mask, 0], coords[~mask, 1], s=3, color="0.82", linewidths=0)
    ax.scatter(coords[mask, 0], coords[mask, 1], s=6, color=f"C{k % 10}", linewidths=0,
               alpha=0.9)
    ax.set_title(f"{names[k]} ({mask.sum():,} movies)", fontsize=9)
    ax.grid(True, alpha=0.3)
  for ax in axes[-cols:]:
    ax.set_xlabel(f"PC1 ({100 * share[0]:.1f}%)", fontsize=8)
  for ax in axes[::cols]:
    ax.set_ylabel(f"PC2 ({100 * share[1]:.1f}%)", fontsize=8)
  fig.suptitle(title, fontsize=10)
  return _save(fig, Path(path))


def plot_bias_distributions(user_bias: np.ndarray, item_bias: np.ndarray, title: str,
                            path: str | os.PathLike) -> Path:
  """Histograms of user and item biases, with mean and standard deviation."""
  fig = Figure(figsize=(11, 4.2), layout="constrained")
  axes = fig.subplots(1, 2)
  for ax, values, who in zip(axes, (user_bias, item_bias), ("user", "item")):
    values = np.asarray(values, np.float64)
    ax.hist(values, bins=60, color=_COLOR, alpha=0.9)
    ax.axvline(0, color="0.3", linewidth=1)
    ax.set_title(f"{who} bias ({len(values):,} {who}s): mean {values.mean():+.3f}, "
                 f"std {values.std():.3f}", fontsize=10)
    ax.set_xlabel("bias (stars)")
    ax.set_ylabel(f"{who}s")
    ax.grid(True, alpha=0.3)
  fig.suptitle(title)
  return _save(fig, Path(path))


def plot_item_bias_extremes(names: Sequence[str], values: np.ndarray, n_high: int, title: str,
                            path: str | os.PathLike) -> Path:
  """Horizontal bars: the first n_high entries are the largest biases, the rest the smallest."""
  values = np.asarray(values, np.float64)
  fig = Figure(figsize=(9, 0.28 * len(values) + 1.5), layout="constrained")
  ax = fig.subplots()
  y = np.arange(len(values))[::-1]
  colours = [_COLOR] * n_high + [_LOW_COLOR] * (len(values) - n_high)
  ax.barh(y, values, color=colours)
  ax.set_yticks(y, [n[:48] for n in names], fontsize=8)
  ax.axvline(0, color="0.3", linewidth=1)
  ax.set_xlabel("item bias (stars)")
  ax.grid(True, axis="x", alpha=0.3)
  ax.set_title(title, fontsize=10)
  return _save(fig, Path(path))


def plot_user_clusters(coords: np.ndarray, share: np.ndarray, labels: np.ndarray, title: str,
                       path: str | os.PathLike) -> Path:
  """Users on the 2-D PCA of their embeddings, coloured by k-means cluster; cluster sizes."""
  keep = _sample(len(coords))
  labels = np.asarray(labels)
  k = int(labels.max()) + 1 if len(labels) else 0
  fig = Figure(figsize=(12, 5), layout="constrained")
  left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
  for c in range(k):
    m = labels[keep] == c
    left.scatter(coords[keep][m, 0], coords[keep][m, 1], s=5, color=f"C{c % 10}",
                 label=f"cluster {c}", alpha=0.7, linewidths=0)
  left.legend(fontsize=8, markerscale=3, framealpha=0.8)
  _pca_axes_labels(left, share)
  left.set_title("user embeddings (PCA), by k-means cluster", fontsize=10)
  sizes = np.bincount(labels, minlength=k)
  right.bar(np.arange(k), sizes, color=[f"C{c % 10}" for c in range(k)])
  right.set_xticks(np.arange(k))
  right.set_xlabel("cluster")
  right.set_ylabel("users")
  right.grid(True, axis="y", alpha=0.3)
  right.set_title("cluster sizes", fontsize=10)
  fig.suptitle(title)
  return _save(fig, Path(path))

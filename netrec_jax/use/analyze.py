"""Embedding analysis plots of a trained model (launch.py --mode=analyze)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


from netrec_jax.use.model import OpenedModel, _opened
from netrec_jax.use.recommend import top_n


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

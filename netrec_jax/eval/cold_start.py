"""Metrics per bucket of the test movie's training-rating count: where CF fails, content works.

Each test rating falls in a bucket by how many training ratings its movie has (default
0, 1-5, 6-20, >20). Per model and bucket we report, on the same split and test rows as the
common evaluator:
  rmse, mae     of predict() on the bucket's test ratings (clipped to the rating range)
  hit@K         share of the bucket's relevant test ratings (stars >= the relevance
                threshold) whose movie is in the user's full-catalog top K (training movies
                excluded, ties counted against the movie)
  auc           mean share of the user's candidate movies (all not rated in training) scored
                strictly below the relevant movie, ties counted half: 0.5 is random order
A model that cannot tell unrated movies apart (CF: untrained or absent factors) sits at or
below 0.5 in the 0 bucket; a content model does not need ratings to order them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netrec_jax.eval import metrics as metrics_lib
from netrec_jax.eval.evaluator import EvalData, Recommender, predict_rows

# Inclusive (low, high) training-rating counts; None = no upper bound.
BUCKETS: tuple[tuple[int, int | None], ...] = ((0, 0), (1, 5), (6, 20), (21, None))


def bucket_label(low: int, high: int | None) -> str:
  if high is None:
    return f">{low - 1}"
  return str(low) if low == high else f"{low}-{high}"


def bucket_index(counts: np.ndarray, buckets=BUCKETS) -> np.ndarray:
  """Bucket number of each count (-1 if none matches)."""
  out = np.full(len(counts), -1, np.int64)
  for k, (low, high) in enumerate(buckets):
    out[(counts >= low) & (counts <= (np.inf if high is None else high))] = k
  return out


def _ranks(model: Recommender, data: EvalData, users: np.ndarray, items: np.ndarray,
           user_batch: int) -> tuple[np.ndarray, np.ndarray]:
  """(pessimistic 0-based rank, auc) of each (user, item) test pair in its user's ranking."""
  position = np.zeros(len(users), np.int64)
  auc = np.zeros(len(users), np.float64)
  order = np.argsort(users, kind="stable")
  sorted_users = users[order]
  unique = np.unique(users)
  train = data.train_matrix
  for lo in range(0, len(unique), user_batch):
    batch = unique[lo:lo + user_batch]
    scores = np.array(model.score_items(batch), np.float64)
    seen = train[batch]
    candidate = np.ones(scores.shape, bool)
    candidate[np.repeat(np.arange(len(batch)), np.diff(seen.indptr)), seen.indices] = False
    scores[~candidate] = -np.inf
    n_candidates = candidate.sum(1)
    for row, user in enumerate(batch):
      a, b = np.searchsorted(sorted_users, [user, user + 1])
      pairs = order[a:b]
      s = scores[row]
      mine = s[items[pairs]]
      valid = s[candidate[row]]
      sorted_valid = np.sort(valid)
      below = np.searchsorted(sorted_valid, mine, side="left")
      not_above = np.searchsorted(sorted_valid, mine, side="right")
      above = len(valid) - not_above
      ties = not_above - below - 1  # other candidates with the same score
      position[pairs] = above + ties
      auc[pairs] = (below + 0.5 * ties) / max(n_candidates[row] - 1, 1)
  return position, auc


def breakdown(models: Sequence[Recommender], data: EvalData, *,
              buckets=BUCKETS, ks: Sequence[int] = (10, 20), user_batch: int = 256
              ) -> list[dict[str, Any]]:
  """One row per (model, bucket) with rating and ranking metrics; see the module docstring."""
  store = data.store
  users = np.take(store.user, data.test_rows)
  items = np.take(store.item, data.test_rows)
  stars = store.stars(data.test_rows).astype(np.float64)
  which = bucket_index(data.item_popularity[items], buckets)
  relevant = (np.ones(len(stars), bool) if data.relevance_threshold is None
              else stars >= data.relevance_threshold)
  protocol = data.split.protocol
  rows = []
  for model in models:
    pred = predict_rows(model, store, data.test_rows)
    position, auc = _ranks(model, data, users[relevant], items[relevant], user_batch)
    rel_bucket = which[relevant]
    for k, (low, high) in enumerate(buckets):
      in_bucket = which == k
      row: dict[str, Any] = {"model": model.name, "bucket": bucket_label(low, high),
                             "n_test": int(in_bucket.sum()),
                             "n_relevant": int((rel_bucket == k).sum()),
                             "n_movies": len(np.unique(items[in_bucket])),
                             "protocol": protocol}
      if pred is not None and in_bucket.any():
        m = metrics_lib.rating_metrics(np.asarray(pred)[in_bucket], stars[in_bucket],
                                       store.rating_range)
        row.update(rmse=m["rmse"], mae=m["mae"])
      else:
        row.update(rmse=None, mae=None)
      mine = rel_bucket == k
      for cut in ks:
        row[f"hit@{cut}"] = float(np.mean(position[mine] < cut)) if mine.any() else None
      row["auc"] = float(np.mean(auc[mine])) if mine.any() else None
      rows.append(row)
  return rows


def write_report(rows: list[dict[str, Any]], stem: str | Path, title: str) -> dict[str, Path]:
  """rows as STEM.md (with a title naming split and protocol), STEM.json and STEM.png."""
  import json
  stem = Path(stem)
  stem.parent.mkdir(parents=True, exist_ok=True)
  columns = list(dict.fromkeys(k for r in rows for k in r if k != "protocol"))
  cell = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
  lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
  stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
  stem.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")

  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  models = list(dict.fromkeys(r["model"] for r in rows))
  labels = list(dict.fromkeys(r["bucket"] for r in rows))
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  width = 0.8 / max(len(models), 1)
  for panel, metric in zip(axes, ("rmse", "auc")):
    for m, name in enumerate(models):
      values = [next((r[metric] for r in rows if r["model"] == name and r["bucket"] == b),
                     None) for b in labels]
      panel.bar(np.arange(len(labels)) + m * width, [np.nan if v is None else v for v in values],
                width, label=name)
    panel.set_xticks(np.arange(len(labels)) + width * (len(models) - 1) / 2, labels)
    panel.set_xlabel("training ratings of the test movie")
    panel.set_ylabel(metric.upper())
    if metric == "auc":
      panel.axhline(0.5, color="gray", lw=0.8, ls="--")
  axes[0].legend(fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(stem.with_suffix(".png"), dpi=120)
  plt.close(fig)
  return {"md": stem.with_suffix(".md"), "json": stem.with_suffix(".json"),
          "png": stem.with_suffix(".png")}

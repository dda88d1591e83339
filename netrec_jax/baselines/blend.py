"""The blend: a ridge regression on the predictions of every rating model of a comparison,
fitted on the validation rows only and evaluated once on test (as Prize teams blended on the
probe set).

Features of a (user, item) pair: each model's predicted stars, log(1 + n) of the user's and
of the item's training ratings, and each prediction times each log support (so a model can
weigh more where it has seen more data, the Prize blends' meta-features). Ridge's penalty is
chosen by scikit-learn's efficient leave-one-out over the validation rows (RidgeCV), from a
log grid. Predictions are clipped to the rating range by the evaluator, as every model's.

With compare.refit, `refitted` applies the same weights to the components refitted on train +
validation (log supports recounted there), as the Prize teams applied probe-fitted blends to
models retrained on all data.

Caveat, stated in the report: the component models picked their best epoch on the same
validation rows, so their validation predictions are very slightly optimistic; the Prize
teams' probe-set blends had the same property.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from netrec_jax.data.store import RatingStore

ALPHAS = tuple(10.0 ** np.arange(-3, 4.5, 0.5))


class BlendRecommender:
  """Ridge over the component models' predictions and log supports (see the module doc)."""

  cold_rule = "the components' own cold rules, blended with the fitted weights"
  fold_in_method = "none: the blend has no per-user parameters of its own to fit"

  def __init__(self, models: Sequence[Any], store: RatingStore, train_rows: np.ndarray,
               name: str = "blend"):
    self.models, self.store, self.name = list(models), store, name
    if not self.models:
      raise ValueError("blend needs at least one model that predicts ratings")
    users, items = np.take(store.user, train_rows), np.take(store.item, train_rows)
    self._log_user = np.log1p(np.bincount(users, minlength=store.n_users)).astype(np.float64)
    self._log_item = np.log1p(np.bincount(items, minlength=store.n_items)).astype(np.float64)
    self.rating_note = ""
    self.prediction_note = "ridge blend of " + ", ".join(m.name for m in self.models)

  def feature_names(self) -> list[str]:
    names = [f"pred:{m.name}" for m in self.models] + ["log_n_user", "log_n_item"]
    return names + [f"pred:{m.name}*{s}" for m in self.models
                    for s in ("log_n_user", "log_n_item")]

  def _features(self, preds: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    supports = np.stack([self._log_user[users], self._log_item[items]], 1)
    cross = (preds[:, :, None] * supports[:, None, :]).reshape(len(users), -1)
    return np.concatenate([preds, supports, cross], 1)

  def _predictions(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(m.predict(users, items), np.float64) for m in self.models], 1)

  def fit(self, users: np.ndarray, items: np.ndarray, stars: np.ndarray) -> "BlendRecommender":
    """Fits the weights on (validation) pairs and their true stars."""
    from sklearn.linear_model import RidgeCV
    self._ridge = RidgeCV(alphas=ALPHAS).fit(
        self._features(self._predictions(users, items), users, items), stars)
    self.n_fit = len(stars)
    return self

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    return self._ridge.predict(self._features(self._predictions(users, items), users, items))

  def score_items(self, users: np.ndarray) -> np.ndarray:
    """[len(users), n_items] blended stars, from each component's full-catalog scores."""
    users = np.asarray(users, np.int64)
    n = self.store.n_items
    preds = np.stack([np.asarray(m.score_items(users), np.float64).reshape(-1)
                      for m in self.models], 1)
    pair_users, pair_items = np.repeat(users, n), np.tile(np.arange(n), len(users))
    return self._ridge.predict(self._features(preds, pair_users, pair_items)).reshape(-1, n)

  def refitted(self, models: Sequence[Any], train_rows: np.ndarray, split_name: str,
               name: str = "blend (refit)") -> "BlendRecommender":
    """These weights on `models` (the same components refitted on train + validation, in the
    same order) with log supports counted on `train_rows`: the Prize teams' probe blend."""
    if len(models) != len(self.models):
      raise ValueError(f"the refit blend needs {len(self.models)} models, got {len(models)}")
    out = BlendRecommender(models, self.store, train_rows, name=name)
    out._ridge, out.n_fit, out.fitted_names = self._ridge, self.n_fit, self.feature_names()
    out.refit_of = {"split": split_name, "train_ratings": len(train_rows),
                    "components": {a.name: b.name for a, b in zip(self.models, models)}}
    out.prediction_note = (f"validation-fitted ridge weights of {self.name} applied to "
                           + ", ".join(m.name for m in models))
    return out

  def weights(self) -> dict[str, Any]:
    names = getattr(self, "fitted_names", None) or self.feature_names()
    return {"features": dict(zip(names, map(float, self._ridge.coef_))),
            "intercept": float(self._ridge.intercept_), "alpha": float(self._ridge.alpha_),
            "fitted_on": f"{self.n_fit:,} validation ratings"}

  def save(self, path: Path) -> None:
    path.write_text(json.dumps(self.weights(), indent=2) + "\n")

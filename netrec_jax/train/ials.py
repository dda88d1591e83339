"""iALS (Hu et al. 2008; Rendle et al. 2021's unobserved weight and frequency-scaled L2) as a
family: fitted by alternating least squares in JAX (netrec_jax/baselines/jax_als.py), saved,
restored, ranked, folded in and served like every other model.

The fit is not gradient descent, so like EASE (train/closed_form.py) the family trains nothing
through the loop's steps: fit runs ials.iterations sweeps (conjugate-gradient solves with
ials.cg_steps, rows dealt over every local device: mesh axis `model`), writes both factor
tables to WORKDIR/ials_model.npz (temp file, fsync, rename) and returns what the loop saves as
saved_model.json (config, store and split fingerprints, the file's sha256, timings). load
verifies those before it rebuilds the model. Iterations are a field, not epochs chosen on
validation: the tune mode searches them with the other fields.

X is the binary users x items matrix of the split's training ratings with stars >=
ials.min_stars (0: every rating). The defaults are implicit_als's comparison settings in
implicit 0.7's parametrisation (confidence alpha * r, alpha 2, regularization 0.05, 64
factors, 15 iterations), so `ials` and `implicit_als` in one table are the same model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from absl import logging

from netrec_jax.baselines.jax_als import CONFIDENCE, JaxIALS
from netrec_jax.data.row_batches import interaction_matrix
from netrec_jax.recommenders.ials import IALSRecommender
from netrec_jax.train.closed_form import load_arrays, save_arrays, saved_store_split, store_split
from netrec_jax.train.family import Family, check_one_of

MODEL_FILE = "ials_model.npz"


def make_model(config) -> JaxIALS:
  """The unfitted JaxIALS of config.ials (seeded by config.seed)."""
  c = config.ials
  return JaxIALS(factors=int(c.factors), iterations=int(c.iterations),
                 regularization=float(c.regularization), alpha=float(c.alpha),
                 confidence=c.confidence, unobserved_weight=float(c.unobserved_weight),
                 reg_exponent=float(c.reg_exponent), cg_steps=int(c.cg_steps),
                 min_rating=float(c.min_stars) or None, seed=int(config.seed),
                 name=config.model.name)


def describe(config) -> str:
  c = config.ials
  return (f"iALS, {c.factors} factors, {c.iterations} iterations, reg {c.regularization:g} "
          f"(nu {c.reg_exponent:g}), {c.confidence} confidence alpha {c.alpha:g}, w0 "
          f"{c.unobserved_weight:g}, "
          f"{f'{c.cg_steps} CG steps' if c.cg_steps else 'exact solves'}")


class IALSFamily(Family):
  """iALS: no gradient steps, so no orbax checkpoints; the factors are saved beside
  saved_model.json, which records their checksum (see the module docstring)."""

  name = "ials"
  models = ("ials",)
  reads = ("ials",)
  architecture_keys = ("ials",)
  trains = False
  SEARCH_SPACE = {"ials": {"ials.factors": ("int_log", 16, 256),
                           "ials.regularization": ("log", 1e-3, 10.0),
                           "ials.alpha": ("log", 0.1, 50.0),
                           "ials.unobserved_weight": ("log", 0.01, 10.0),
                           "ials.iterations": ("int", 5, 30)}}

  def check(self, config) -> None:
    check_one_of(config, "ials.confidence", CONFIDENCE)

  def fit(self, config, workdir: Path, runs) -> dict[str, Any]:
    """Fits the factors on the split's training interactions; writes them; the saved meta."""
    del runs
    store, split = store_split(config)
    x = interaction_matrix(store, split.rows("train"), float(config.ials.min_stars))
    t0 = time.time()
    model = make_model(config).fit_matrix(x)
    fit_seconds = time.time() - t0
    logging.info("%s: fitted on %s/%s (%d interactions) in %.1f s (compile %.1f s, %.3f s "
                 "per iteration)", describe(config), store.name, split.name, x.nnz,
                 fit_seconds, model.compile_seconds,
                 sum(model.iteration_seconds) / len(model.iteration_seconds))
    sha256 = save_arrays(Path(workdir) / MODEL_FILE, {"user_factors": model.user_factors,
                                                      "item_factors": model.item_factors})
    return {"config": config.to_dict(), "store_fingerprint": store.fingerprint,
            "store_name": store.name, "split": split.name, "protocol": split.protocol,
            "split_fingerprint": split.info.get("fingerprint"), "model_file": MODEL_FILE,
            "model_sha256": sha256, "interactions": int(x.nnz),
            "objective": model.objective(x),
            "fit_seconds": round(fit_seconds, 3),
            "compile_seconds": round(model.compile_seconds, 3),
            "iteration_seconds": [round(s, 4) for s in model.iteration_seconds],
            "epoch": 0, "step": 0}

  def load(self, workdir, config, saved: dict[str, Any], runs):
    """The fitted model of a run, its store, split and file verified."""
    del runs
    store, split = saved_store_split(workdir, config, saved)
    arrays = load_arrays(Path(workdir) / saved["model_file"], saved["model_sha256"])
    model = make_model(config)
    model.user_factors, model.item_factors = arrays["user_factors"], arrays["item_factors"]
    recommender = IALSRecommender(store, split, config, model)
    recommender.which, recommender.meta = "saved", {"epoch": 0, "step": 0}
    recommender.facts = {"fit_seconds": saved.get("fit_seconds"),
                         "interactions": saved.get("interactions"),
                         "objective": saved.get("objective"), "fitted": describe(config)}
    return recommender


FAMILY = IALSFamily()

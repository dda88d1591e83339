"""Closed-form top-N models: EASE, item-kNN and RP3beta, fitted by a solve or by counting.

  ease      B = I - P diag(1/diag(P)), P = (X^T X + ease.l2 I)^-1 (netrec_jax/models/ease.py)
  item_knn  cosine with shrinkage, top knn.k per target item (netrec_jax/models/neighbors.py)
  rp3beta   P_iu P_ui with exponent rp3.alpha over popularity^rp3.beta, top rp3.k (same file)

X is the users x items binary matrix of the split's TRAINING ratings with stars >= the model's
min_stars; the default 0 makes every training rating an interaction (what ranking on a random
split of explicit ratings asks: the evaluator excludes all training items and counts held-out
ratings >= eval.relevance_threshold as relevant). Liang et al. / Steck keep ratings >= 4 on
ML-20M and Netflix; set min_stars=4 to follow them.

A user's scores are X_u W (W = B or the sparse neighbour matrix); a new user's (fold_in) are
their binary row times W, so a training user's own row folds in to exactly their scores (the
strong-generalization protocol's held-out users go through the same call). predict() returns
None: these models rank and predict no ratings, so the evaluator reports ranking metrics only
(eval.ranking=auto ranks every model whose rating_note is set).

Saved model: nothing is trained by gradient descent, so there are no orbax checkpoints. fit
writes the fitted matrix to WORKDIR/closed_form_model.npz (temp file, fsync, rename: a crash
never leaves a half file under the final name) and returns what the loop saves as
saved_model.json: the config, store and split fingerprints, the file's sha256, shapes and fit
time. load checks the store fingerprint, the split fingerprint and the file's checksum, then
rebuilds X from the store (cheap, deterministic) and reads W. Saving rather than refitting on
load because EASE at Netflix scale is a minutes-long n_items^3 solve, and the neighbour
matrices are small.

Similar movies (launch.py --mode=similar): the use modes rank by the cosine between
item_vectors() rows and have no hook for an item-item matrix. Rows of W alone would give a
second-order similarity only (Toy Story's row and Toy Story 2's each hold 0 for themselves, so
on ML-1M Toy Story 2 fell out of Toy Story's top 5 for EASE). So item_vectors() returns
v_i = W_i + |W_i| e_i (each row with its own norm on the diagonal), whose cosine is exactly

    cos(v_i, v_j) = 1/2 cos(W_i, W_j) + 1/2 (W_ij / |W_i| + W_ji / |W_j|)

half second-order, half the direct weights both ways (Toy Story 2 first again for EASE and
RP3beta). similar_items(item) gives the direct row W[item] for a hook in netrec_jax/use.
The vectors are dense n_items x n_items (the use modes copy them to float64: 2.5 GB at
17,770 movies).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from absl import logging

from netrec_jax.data import datasets
from netrec_jax.data.row_batches import interaction_matrix
from netrec_jax.models import ease as ease_lib
from netrec_jax.models import neighbors
from netrec_jax.recommenders.closed_form import ClosedFormRecommender
from netrec_jax.train import checkpoint as ckpt_lib
from netrec_jax.train.family import COMMON, Family, check_one_of

MODEL_FILE = "closed_form_model.npz"
# model.name -> its config section.
SECTIONS = {"ease": "ease", "item_knn": "knn", "rp3beta": "rp3"}


def fit_matrix(model: str, x: sp.csr_matrix, config) -> np.ndarray | sp.csr_matrix:
  """The fitted item-item matrix of `model` (dense B for ease, sparse W otherwise)."""
  if model == "ease":
    cfg = config.ease
    available, where = ease_lib.available_bytes()
    ease_lib.check_fits(x.shape[1], cfg.dtype, cfg.max_items, available, where)
    return ease_lib.fit(ease_lib.gram(x, cfg.dtype), float(cfg.l2), cfg.dtype)
  if model == "item_knn":
    cfg = config.knn
    return neighbors.item_knn(x, int(cfg.k), float(cfg.shrink), bool(cfg.normalize))
  if model == "rp3beta":
    cfg = config.rp3
    return neighbors.rp3beta(x, float(cfg.alpha), float(cfg.beta), int(cfg.k),
                             bool(cfg.normalize))
  raise ValueError(f"closed_form: unknown model {model!r}")


def _describe(model: str, config) -> str:
  if model == "ease":
    return f"EASE, lambda {config.ease.l2:g}, {config.ease.dtype}"
  if model == "item_knn":
    c = config.knn
    return f"item-kNN cosine, k {c.k}, shrink {c.shrink:g}, normalize {c.normalize}"
  c = config.rp3
  return f"RP3beta, alpha {c.alpha:g}, beta {c.beta:g}, k {c.k}, normalize {c.normalize}"


# -------------------------------------------------------------------------- saved arrays
def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 24), b""):
      digest.update(chunk)
  return digest.hexdigest()


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> str:
  """Writes the arrays as one .npz atomically (temp file, fsync, rename); its sha256."""
  tmp = path.with_name(path.name + f".tmp{os.getpid()}")
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  return _sha256(path)


def load_arrays(path: Path, sha256: str) -> dict[str, np.ndarray]:
  """The arrays of a saved .npz, after its checksum is verified."""
  if not path.is_file():
    raise ckpt_lib.CheckpointError(f"{path}: the fitted model file is missing")
  found = _sha256(path)
  if found != sha256:
    raise ckpt_lib.CheckpointError(f"{path}: checksum {found[:12]}... differs from the "
                                   f"{sha256[:12]}... recorded in saved_model.json (damaged "
                                   "or replaced); fit again with --mode=train")
  with np.load(path, allow_pickle=False) as f:
    return {name: f[name] for name in f.files}


def save_matrix(path: Path, matrix: np.ndarray | sp.csr_matrix) -> str:
  """Writes the matrix atomically (save_arrays); its sha256."""
  if sp.issparse(matrix):
    m = sp.csr_matrix(matrix)
    return save_arrays(path, {"kind": np.array("csr"), "data": m.data, "indices": m.indices,
                              "indptr": m.indptr, "shape": np.array(m.shape, np.int64)})
  return save_arrays(path, {"kind": np.array("dense"), "dense": np.asarray(matrix)})


def load_matrix(path: Path, sha256: str) -> np.ndarray | sp.csr_matrix:
  """The saved matrix, after its checksum is verified."""
  f = load_arrays(path, sha256)
  if str(f["kind"]) == "csr":
    return sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
  return f["dense"]


# ------------------------------------------------------------------------------ the family
def store_split(config):
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  if split is None:
    raise ValueError(f"{config.model.name} needs a split (split.kind must not be 'none')")
  if len(split.rows("train")) == 0:
    raise ValueError(f"split {split.name} has no training ratings")
  return store, split


def saved_store_split(workdir, config, saved: dict[str, Any]):
  """The config's store and split, refused unless they are the ones the run fitted on."""
  store, split = store_split(config)
  if store.fingerprint != saved["store_fingerprint"]:
    raise ckpt_lib.CheckpointError(
        f"{workdir}: fitted on store {saved['store_fingerprint']}, but the config now "
        f"builds {store.fingerprint} (different data, filters or source files)")
  if saved.get("split_fingerprint") and (split.info.get("fingerprint")
                                         != saved["split_fingerprint"]):
    raise ckpt_lib.CheckpointError(
        f"{workdir}: fitted on split {saved['split']} ({saved['split_fingerprint']}), but "
        f"the config now makes {split.name} ({split.info.get('fingerprint')})")
  return store, split


class ClosedFormFamily(Family):
  """EASE, item-kNN and RP3beta: no gradient descent, so no checkpoints; the fitted matrix is
  saved beside saved_model.json, which records its checksum (see the module docstring)."""

  name = "closed_form"
  models = tuple(SECTIONS)
  reads = tuple(SECTIONS.values())
  architecture_keys = tuple(SECTIONS.values())
  trains = False
  SEARCH_SPACE = {"ease": {"ease.l2": ("log", 1.0, 1e4)},
                  "item_knn": {"knn.k": ("int_log", 10, 1000), "knn.shrink": ("float", 0.0, 100.0)},
                  "rp3beta": {"rp3.alpha": ("float", 0.0, 2.0), "rp3.beta": ("float", 0.0, 1.0),
                              "rp3.k": ("int_log", 10, 1000)}}

  def fields_read(self, config) -> tuple[str, ...]:
    """Only the chosen model's section: ease.l2 with model.name=item_knn is refused (every
    section when the config's own model is another family's, as in a comparison)."""
    section = SECTIONS.get(config.model.name)
    return COMMON + ((section,) if section else self.reads)

  def check(self, config) -> None:
    if config.model.name == "ease":
      check_one_of(config, "ease.dtype", ease_lib.DTYPES)

  def fit(self, config, workdir: Path, runs) -> dict[str, Any]:
    """Fits the model on the split's training ratings; writes its matrix; the saved meta."""
    del runs
    model = config.model.name
    store, split = store_split(config)
    min_stars = float(config[SECTIONS[model]].min_stars)
    t0 = time.time()
    x = interaction_matrix(store, split.rows("train"), min_stars)
    matrix = fit_matrix(model, x, config)
    fit_seconds = time.time() - t0
    logging.info("%s: fitted on %s/%s (%d interactions) in %.1f s", _describe(model, config),
                 store.name, split.name, x.nnz, fit_seconds)
    sha256 = save_matrix(Path(workdir) / MODEL_FILE, matrix)
    nnz = int(matrix.nnz) if sp.issparse(matrix) else int(np.count_nonzero(matrix))
    return {"config": config.to_dict(), "store_fingerprint": store.fingerprint,
            "store_name": store.name, "split": split.name, "protocol": split.protocol,
            "split_fingerprint": split.info.get("fingerprint"), "model_file": MODEL_FILE,
            "model_sha256": sha256, "matrix_shape": list(matrix.shape),
            "matrix_nonzeros": nnz, "interactions": int(x.nnz),
            "fit_seconds": round(fit_seconds, 3), "epoch": 0, "step": 0}

  def load(self, workdir, config, saved: dict[str, Any], runs):
    """The fitted model of a run, its store, split and file verified."""
    del runs
    model = config.model.name
    store, split = saved_store_split(workdir, config, saved)
    matrix = load_matrix(Path(workdir) / saved["model_file"], saved["model_sha256"])
    min_stars = float(config[SECTIONS[model]].min_stars)
    x = interaction_matrix(store, split.rows("train"), min_stars)
    recommender = ClosedFormRecommender(store, split, config, matrix, x, model, min_stars)
    recommender.which, recommender.meta = "saved", {"epoch": 0, "step": 0}
    recommender.facts = {"fit_seconds": saved.get("fit_seconds"),
                         "interactions": saved.get("interactions"),
                         "matrix_nonzeros": saved.get("matrix_nonzeros"),
                         "fitted": _describe(model, config)}
    recommender.prediction_note = "none: a top-N model (ranking metrics only)"
    return recommender


FAMILY = ClosedFormFamily()

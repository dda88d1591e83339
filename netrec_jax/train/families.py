"""Which trainer owns a model name. Every model family exposes the same three functions.

  train_and_evaluate(config, workdir) -> dict
      Trains into WORKDIR (checkpoints/{latest,best}, metrics.jsonl, final_metrics.json with
      "protocol", "split", "model", "valid", "test"), resuming from WORKDIR's latest checkpoint.
  load_recommender(workdir, config=None, which="best") -> Recommender
      The restored model behind the evaluator interface (netrec_jax/eval/evaluator.py). With a
      config, the checkpoint is checked against it (same store fingerprint, same model).
  evaluate_checkpoint(config, restore_from, workdir, which="best") -> dict
      Restores and evaluates on config's split; writes WORKDIR/final_metrics.json.

The launcher, the comparison and the sweep dispatch through `family(name)`, so a new model
family is one module with these functions plus one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# model name -> module implementing it
FAMILIES: dict[str, str] = {
    # Pair models: (user, item) -> rating or logit, row-sparse embedding tables.
    "mf": "netrec_jax.train.trainer",
    "gmf": "netrec_jax.train.trainer",
    "mlp": "netrec_jax.train.trainer",
    "neumf": "netrec_jax.train.trainer",
    "hybrid": "netrec_jax.train.trainer",
    # Row models: a user's or an item's whole rating vector in, its reconstruction out.
    "autorec": "netrec_jax.train.rows",
    "deep_ae": "netrec_jax.train.rows",
    # Graph models over the user-movie graph of the training split.
    "gcmc": "netrec_jax.train.graph",
    "lightgcn": "netrec_jax.train.graph",
    # Sequence, candidate-generation and content models.
    "bert4rec": "netrec_jax.train.sequence",
    "youtube_dnn": "netrec_jax.train.youtube",
    "content": "netrec_jax.train.content",
}


def family(model_name: str) -> ModuleType:
  """The trainer module of `model_name` (imported on first use: each pulls in its own deps)."""
  if model_name not in FAMILIES:
    raise ValueError(f"unknown model.name {model_name!r}; expected one of {sorted(FAMILIES)}")
  return importlib.import_module(FAMILIES[model_name])

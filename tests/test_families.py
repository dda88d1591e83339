"""The family contract, run for every family through the real loop.train_and_evaluate:

- 4 data-parallel devices train to the same final metrics as 1 device;
- a run stopped after epoch k and resumed ends with the metrics of an uninterrupted run,
  and its metrics.jsonl has each epoch once;
- the restored best checkpoint reproduces the validation figure logged for its epoch;
- a field the family does not read is refused, naming it.
"""

import json

import numpy as np
import pytest

from conftest import TINY_MODEL_FIELDS, tiny_run_config
from netrec_jax import configs
from netrec_jax.train import family, loop

TINY = TINY_MODEL_FIELDS


def tiny_config(store_root, model: str, **fields):
  fields = {**TINY[model], **fields}
  return tiny_run_config(store_root, model, **{"train.early_stopping_patience": 0, **fields})


def _figures(final):
  """The final metrics that every family reports, as one flat vector."""
  out = []
  for part in ("valid", "test"):
    for key in ("rmse", "mae", "recall@10", "ndcg@10"):
      if isinstance(final[part].get(key), float):
        out.append(final[part][key])
  return np.array(out)


@pytest.mark.parametrize("model", sorted(TINY))
def test_family_contract(model, store_root, tmp_path):
  fam = family.family(model)
  # ---- Uninterrupted, 4 devices.
  full = loop.train_and_evaluate(tiny_config(store_root, model), tmp_path / "full")
  assert full["epochs_run"] == 2 and full["model"].startswith(model)

  # ---- Restored best reproduces the validation figure logged for its epoch.
  log = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in log] == [0, 1]
  setup_metric = fam.setup(family.resolve(tiny_config(store_root, model))).valid_metric
  best = [r for r in log if r["epoch"] == full["checkpoint_epoch"]][0]
  assert full["valid"][setup_metric] == pytest.approx(best[f"valid_{setup_metric}"], rel=1e-6)
  assert full["best_epoch"] == full["checkpoint_epoch"]

  # ---- Epoch 1 of 2 on one device, stopped, then resumed on four from its checkpoint: the
  # same final metrics as four devices throughout (one device trains like four, and a
  # checkpoint restores into another layout), each epoch logged once.
  loop.train_and_evaluate(tiny_config(store_root, model, **{"train.epochs": 1,
                                                            "mesh.data": 1}),
                          tmp_path / "resumed")
  with open(tmp_path / "resumed" / "metrics.jsonl") as f:
    assert [json.loads(line)["epoch"] for line in f] == [0]
  resumed = loop.train_and_evaluate(tiny_config(store_root, model), tmp_path / "resumed")
  np.testing.assert_allclose(_figures(resumed), _figures(full), rtol=2e-3, atol=2e-4)
  log = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["epoch"] for line in log] == [0, 1]
  assert resumed["epochs_run"] == 2 and resumed["epochs_this_run"] == 1

  # ---- --mode=eval from the checkpoint equals the run's own final metrics.
  evaluated = loop.evaluate_checkpoint(tiny_config(store_root, model), tmp_path / "full",
                                       tmp_path / "eval")
  np.testing.assert_allclose(_figures(evaluated), _figures(full), rtol=1e-6)


@pytest.mark.parametrize("model,field", [("mf", "sequence.max_len"),
                                         ("bert4rec", "model.embed_dim"),
                                         ("content", "train.epochs"),
                                         ("autorec", "graph.layers"),
                                         ("glocal_k", "optimizer.lr")])  # L-BFGS: no lr
def test_unread_field_is_refused(model, field, store_root):
  config = configs.base_config()
  config.model.name = model
  configs.set_field(config, field, "5")
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    family.resolve(config)


def test_model_defaults_fill_only_unset_fields():
  config = configs.base_config()
  config.model.name = "bert4rec"
  config.train.epochs = 7
  family.resolve(config)
  assert config.train.epochs == 7  # set by the experiment: kept
  assert config.optimizer.dense == "adamw" and config.optimizer.clip_norm == 5.0  # BERT4Rec's
  other = family.resolve(configs.base_config())  # mf
  assert other.optimizer.dense == "adam" and other.optimizer.clip_norm == 0.0


def test_youtube_adamw_decays_every_parameter_other_models_matrices_only():
  """youtube_dnn keeps its pre-loop optimizer (optax.adamw decaying biases too); bert4rec's
  adamw decays matrices only. Either mask gives one optimizer-state structure."""
  import jax
  import jax.numpy as jnp

  from netrec_jax.train import optim
  resolved = {}
  for model in ("youtube_dnn", "bert4rec"):
    config = configs.base_config()
    config.model.name = model
    resolved[model] = family.resolve(config).optimizer
  assert resolved["youtube_dnn"].decay_mask == "all"
  assert resolved["bert4rec"].decay_mask == "matrices"
  params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}
  zero = jax.tree.map(jnp.zeros_like, params)
  matrices = resolved["youtube_dnn"].copy_and_resolve_references()
  matrices.decay_mask = "matrices"
  states = []
  for opt_cfg, decays_bias in ((resolved["youtube_dnn"], True), (matrices, False),
                               (resolved["bert4rec"], False)):
    tx = optim.dense_optimizer(opt_cfg, 10)
    state = tx.init(params)
    states.append(jax.tree.structure(state))
    updates, _ = tx.update(zero, state, params)
    assert float(jnp.abs(updates["kernel"]).max()) > 0  # decoupled decay alone
    assert (float(jnp.abs(updates["bias"]).max()) > 0) == decays_bias
  assert states[0] == states[1]  # a checkpoint restores under either mask
  config = configs.base_config()
  config.model.name = "youtube_dnn"
  config.optimizer.decay_mask = "biases"
  with pytest.raises(ValueError, match="optimizer.decay_mask must be one of"):
    family.resolve(config)

"""AutoRec building blocks: padded-sparse rows and a loss that ignores unobserved entries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_run_config

from netrec_jax.data.synthetic import SyntheticConfig, build_synthetic_store
from netrec_jax.models.autorec import SparseAutoencoder, row_batch, row_loss
from netrec_jax.train import loop


def masked_mse(pred, target, mask):
  """The training loss with every row weighted 1 / (observed entries of the batch)."""
  weight = jnp.full(mask.shape[0], 1.0 / jnp.maximum(mask.sum(), 1.0))
  return row_loss(pred, target, mask, weight)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  return build_synthetic_store(SyntheticConfig(n_users=200, n_items=80, n_ratings=5000),
                               tmp_path_factory.mktemp("s") / "store")


def row_config(tmp_path, n_users=300, n_items=120, n_ratings=12000):
  """A small synthetic I-AutoRec setup that trains in seconds."""
  config = tiny_run_config(tmp_path / "stores", "autorec", n_users=n_users, n_items=n_items,
                           n_ratings=n_ratings, **{"autoencoder.autorec_hidden": 16,
                                                   "train.batch_size": 32})
  config.eda = True  # as before: these runs also write the EDA report
  return config


def test_row_batch_matches_the_csc_and_csr_slices(store):
  items = np.array([0, 5, 7])
  batch = row_batch(store, items, None, by="item")
  for k, item in enumerate(items):
    rows = store.item_rows(int(item))
    n = len(rows)
    assert batch["mask"][k].sum() == n
    np.testing.assert_array_equal(batch["index"][k, :n], np.take(store.user, rows))
    np.testing.assert_array_equal(batch["value"][k, :n], store.stars(rows))
  users = row_batch(store, np.array([3]), None, by="user")
  sl = store.user_rows(3)
  np.testing.assert_array_equal(users["index"][0, :sl.stop - sl.start], store.item[sl])
  allowed = store.item_rows(0)[::2]
  half = row_batch(store, np.array([0]), allowed, by="item")
  assert half["mask"].sum() == len(allowed)


@pytest.mark.parametrize("hidden,dropout", [((16,), 0.0), ((12, 8, 4), 0.1)])
def test_unobserved_entries_change_neither_loss_nor_gradient(store, hidden, dropout):
  batch = {k: jnp.asarray(v) for k, v in row_batch(store, np.arange(6), None, by="item").items()}
  model = SparseAutoencoder(store.n_users, hidden=hidden, dropout=dropout, global_mean=3.5)
  params = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                      batch["index"], batch["value"], batch["mask"], batch["index"])

  def loss(params, value, index):
    pred = model.apply(params, index, value, batch["mask"], index, train=True,
                       rngs={"dropout": jax.random.PRNGKey(2)})
    return masked_mse(pred, value, batch["mask"])

  base_loss, base_grad = jax.value_and_grad(loss)(params, batch["value"], batch["index"])
  padding = batch["mask"] == 0
  assert bool(padding.any())
  # Change what sits in the padding slots (values and the columns they name): nothing moves.
  value = jnp.where(padding, 5.0, batch["value"])
  index = jnp.where(padding, 17, batch["index"])
  other_loss, other_grad = jax.value_and_grad(loss)(params, value, index)
  assert other_loss == pytest.approx(float(base_loss), abs=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), base_grad, other_grad)
  # But an observed rating does change the loss.
  changed = batch["value"].at[0, 0].set(1.0 if batch["value"][0, 0] != 1.0 else 5.0)
  assert loss(params, changed, batch["index"]) != pytest.approx(float(base_loss), abs=1e-6)


def test_autoencoder_learns_to_reconstruct(store):
  import optax
  batch = {k: jnp.asarray(v) for k, v in row_batch(store, np.arange(store.n_items), None,
                                                     by="item").items()}
  model = SparseAutoencoder(store.n_users, hidden=(32,), global_mean=3.6)
  params = model.init(jax.random.PRNGKey(0), batch["index"], batch["value"], batch["mask"],
                      batch["index"])
  tx = optax.adam(1e-2)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    def loss(p):
      pred = model.apply(p, batch["index"], batch["value"], batch["mask"], batch["index"])
      return masked_mse(pred, batch["value"], batch["mask"])
    value, grad = jax.value_and_grad(loss)(params)
    updates, opt = tx.update(grad, opt)
    return optax.apply_updates(params, updates), opt, value

  first = None
  for _ in range(100):
    params, opt, value = step(params, opt)
    first = value if first is None else first
  assert float(value) < 0.5 * float(first)


@pytest.mark.parametrize("name,side,refeed", [("autorec", "item", False),
                                              ("deep_ae", "user", True)])
def test_row_models_train_through_the_launcher_pipeline(tmp_path, name, side, refeed):
  import json
  from netrec_jax import pipeline
  config = row_config(tmp_path, n_users=400, n_items=150, n_ratings=20000)
  config.model.name = name
  config.autoencoder.side = side
  config.autoencoder.autorec_hidden = 32
  config.autoencoder.layers = (32, 16, 8)
  config.autoencoder.refeed = refeed
  config.optimizer.lr = 3e-3
  config.train.epochs = 4
  config.eda = False
  result = pipeline.train(config, tmp_path / "run")
  final = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
  assert final["test"]["rmse"] == pytest.approx(result["test"]["rmse"])
  assert final["protocol"] == "random_90_10_seed0"
  assert final["checkpoint"] == "best"
  assert any((tmp_path / "run" / "checkpoints" / "best").iterdir())
  assert any((tmp_path / "run" / "checkpoints" / "latest").iterdir())
  from netrec_jax.data import datasets
  store = datasets.open_or_build(config.data)
  split = datasets.make_split(store, config.split)
  train_mean = store.stars(split.rows("train")).mean()
  test = store.stars(split.rows("test")).astype(np.float64)
  mean_rmse = float(np.sqrt(np.mean((test - train_mean) ** 2)))
  log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n") if x]
  assert len(log) == 4 and log[-1]["train_loss"] < log[0]["train_loss"]
  if name == "autorec" and side == "item":
    assert result["test"]["rmse"] < mean_rmse, (result, mean_rmse)


def test_training_loss_is_the_observed_squared_error_by_hand():
  pred = jnp.array([[1.0, 2.0, 9.0], [3.0, 0.0, 0.0]])
  target = jnp.array([[2.0, 2.0, 0.0], [1.0, 5.0, 5.0]])
  mask = jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
  weight = jnp.array([0.5, 2.0])
  # (1-2)^2 * 0.5 + 0 + (3-1)^2 * 2 = 8.5; masked cells (9 vs 0, 0 vs 5) never count.
  assert float(row_loss(pred, target, mask, weight)) == pytest.approx(8.5)


def test_new_user_fold_in_reproduces_the_restored_metrics(tmp_path):
  config = row_config(tmp_path)
  config.autoencoder.side = "user"
  trained = loop.train_and_evaluate(config, tmp_path / "run")
  recommender = loop.load_recommender(tmp_path / "run")
  store, split = recommender.store, recommender.split
  # The restored best checkpoint reproduces the run's test metric.
  users, items = np.take(store.user, split.rows("test")), np.take(store.item, split.rows("test"))
  pred = recommender.predict(users, items)
  rmse = float(np.sqrt(np.mean((np.clip(pred, 1, 5) - store.stars(split.rows("test"))) ** 2)))
  assert rmse == pytest.approx(trained["test"]["rmse"], abs=1e-6)
  # Folding in an existing user's training row scores as that user's own encoding does.
  user = int(users[0])
  rows = split.rows("train")
  mine = rows[np.take(store.user, rows) == user]
  fold = recommender.fold_in(np.take(store.item, mine), store.stars(mine))
  warm = recommender.trained.item  # score_items gives never-rated movies the mean
  np.testing.assert_allclose(fold[warm], recommender.score_items(np.array([user]))[0][warm],
                             rtol=1e-4, atol=1e-4)


def test_row_model_restores_resumes_and_evaluates_through_launch_py(tmp_path):
  """Train, --mode=eval in a new process, then resume for one more epoch."""
  import json
  import os
  import subprocess
  import sys
  from pathlib import Path
  repo = Path(__file__).resolve().parents[1]
  common = ["launch.py", "--experiment=autorec_ml100k", "--config.data.source=synthetic",
            f"--config.data.store_root={tmp_path}/stores",
            "--config.data.synthetic.n_users=300", "--config.data.synthetic.n_items=120",
            "--config.data.synthetic.n_ratings=12000", "--config.data.min_user_ratings=5",
            "--config.autoencoder.autorec_hidden=16",
            "--config.train.batch_size=32", "--config.eda=False",
            "--config.compare.after_train=False", "--config.train.early_stopping_patience=0"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  launch = lambda *args: subprocess.run([sys.executable, *common, *args], cwd=repo, env=env,
                                        capture_output=True, text=True, timeout=600)
  run = launch("--config.train.epochs=2", f"--workdir={tmp_path / 'train'}")
  assert run.returncode == 0, run.stderr[-3000:]
  trained = json.loads((tmp_path / "train" / "final_metrics.json").read_text())
  assert trained["model"] == "autorec_item" and trained["protocol"] == "random_90_10_seed0"
  ev = launch("--config.train.epochs=2", "--mode=eval", f"--restore_from={tmp_path / 'train'}",
              f"--workdir={tmp_path / 'eval'}")
  assert ev.returncode == 0, ev.stderr[-3000:]
  evaluated = json.loads((tmp_path / "eval" / "final_metrics.json").read_text())
  assert evaluated["test"] == trained["test"] and evaluated["valid"] == trained["valid"]
  assert "protocol random_90_10_seed0" in ev.stdout

  more = launch("--config.train.epochs=3", f"--workdir={tmp_path / 'train'}")
  assert more.returncode == 0, more.stderr[-3000:]
  log = [json.loads(x) for x in (tmp_path / "train" / "metrics.jsonl").read_text().split("\n")
         if x]
  assert [r["epoch"] for r in log] == [0, 1, 2]  # epochs 0-1 were not trained again
  assert log[2]["train_loss"] < log[0]["train_loss"]

  bad = launch("--config.autoencoder.autorec_hidden=8", "--mode=eval",
               f"--restore_from={tmp_path / 'train'}", f"--workdir={tmp_path / 'bad'}")
  assert bad.returncode != 0
  assert "autoencoder.autorec_hidden: checkpoint 16, config 8" in bad.stderr


@pytest.mark.parametrize("side", ["item", "user"])
def test_row_recommender_scores_agree_with_predictions_and_the_evaluator(tmp_path, side):
  from netrec_jax.eval import evaluator
  config = row_config(tmp_path)
  config.autoencoder.side = side
  trained = loop.train_and_evaluate(config, tmp_path / "run")
  recommender = loop.load_recommender(tmp_path / "run", config)
  store, split = recommender.store, recommender.split
  test = split.rows("test")
  users, items = np.take(store.user, test), np.take(store.item, test)
  first = np.unique(users)[:20]
  scores = recommender.score_items(first)
  assert scores.shape == (len(first), store.n_items)
  pick = np.isin(users, first)
  pred = recommender.predict(users[pick], items[pick])
  rows_of = np.searchsorted(first, users[pick])
  np.testing.assert_allclose(scores[rows_of, items[pick]], pred, rtol=1e-4, atol=1e-4)
  # Items without a training rating fall back to the training mean, in both code paths.
  trained_items = np.zeros(store.n_items, bool)
  trained_items[np.take(store.item, split.rows("train"))] = True
  if (~trained_items).any():
    np.testing.assert_allclose(scores[:, ~trained_items], recommender.global_mean)
  data = evaluator.prepare(store, split)
  result = evaluator.evaluate(recommender, data, ks=(10,))
  assert result["rating"]["rmse"] == pytest.approx(trained["test"]["rmse"], abs=1e-6)
  assert 0 <= result["ranking"]["ndcg@10"] <= 1
  assert recommender.item_vectors().shape[0] == store.n_items
  if side == "user":
    given = np.array([0, 1, 2])
    fold = recommender.fold_in(given, np.array([5.0, 4.0, 1.0]))
    assert fold.shape == (store.n_items,) and np.isfinite(fold).all()
  else:
    with pytest.raises(ValueError, match="user-based model"):
      recommender.fold_in(np.array([0]), np.array([5.0]))


def test_row_batching_caps_cells_and_pads_to_few_shapes():
  from netrec_jax.data.row_batches import RowBatching, bucket_width, epoch_batches
  batching = RowBatching(rows=64, entries=4096, multiple=4)
  lengths = np.array([3] * 100 + [2000] * 5 + [40] * 30)
  spans = batching.spans(lengths)
  assert spans[0][0] == 0 and spans[-1][1] == len(lengths)
  assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # consecutive, nothing lost
  for lo, hi in spans:
    cells = batching.padded_rows(hi - lo) * bucket_width(lengths[lo:hi].max())
    assert hi - lo <= 64 and (cells <= 4096 or hi - lo == 1)
  assert batching.padded_rows(5) == 8 and batching.padded_rows(1) == 4
  entities = np.arange(len(lengths))
  batches = epoch_batches(entities, lengths, batching, np.random.default_rng(0))
  np.testing.assert_array_equal(np.sort(np.concatenate(batches)), entities)

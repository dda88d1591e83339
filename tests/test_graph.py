"""Graph models: propagation vs a dense reference, isolated nodes, sharding, checkpoints, launch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_run_config

from netrec_jax.models import graph as graph_lib
from netrec_jax.eval import evaluator
from netrec_jax.train import family, loop
from netrec_jax.train import graph as graph_train

REPO = Path(__file__).resolve().parents[1]


def _random_graph(seed=0, n_users=9, n_items=7, n_edges=30):
  """Distinct random (user, item) edges that leave user n_users-1 and item n_items-1 isolated."""
  rng = np.random.default_rng(seed)
  pairs = rng.choice((n_users - 1) * (n_items - 1), n_edges, replace=False)
  return pairs // (n_items - 1), pairs % (n_items - 1), rng


@pytest.mark.parametrize("n_shards,edge_chunk,norm", [(1, 0, "symmetric"), (4, 0, "symmetric"),
                                                    (4, 7, "symmetric"), (4, 7, "left")])
def test_propagation_matches_a_dense_normalised_adjacency(n_shards, edge_chunk, norm):
  users, items, rng = _random_graph()
  edges = graph_lib.build_edges(users, items, 9, 7, n_shards=n_shards, edge_chunk=edge_chunk,
                                norm=norm)
  assert edges["user"].shape[1] % n_shards == 0
  assert (edges["user"].shape[0] > 1) == (edge_chunk > 0)
  # The dense adjacency, built independently of build_edges: D_u^-1/2 R D_i^-1/2, or for left
  # normalisation D_u^-1 R into users and (R D_i^-1)^T into items.
  r = np.zeros((9, 7))
  r[users, items] = 1.0
  du, di = r.sum(1, keepdims=True), r.sum(0, keepdims=True)
  du, di = np.where(du > 0, du, 1), np.where(di > 0, di, 1)
  a_users = r / np.sqrt(du * di) if norm == "symmetric" else r / du
  a_items = a_users if norm == "symmetric" else r / di
  x_u, x_i = rng.normal(size=(9, 5)), rng.normal(size=(7, 5))
  to_users, to_items = jax.jit(graph_lib.propagate)(
      {k: jnp.asarray(v) for k, v in edges.items()}, jnp.asarray(x_u, jnp.float32),
      jnp.asarray(x_i, jnp.float32))
  np.testing.assert_allclose(to_users, a_users @ x_i, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(to_items, a_items.T @ x_u, rtol=1e-5, atol=1e-6)
  ref_u, ref_i = graph_lib.dense_propagate_reference(edges, x_u, x_i)
  np.testing.assert_allclose(ref_u, a_users @ x_i, atol=1e-6)
  np.testing.assert_allclose(ref_i, a_items.T @ x_u, atol=1e-6)


def test_isolated_nodes_get_zero_messages_and_finite_embeddings():
  users, items, _ = _random_graph(seed=1)
  weights = graph_lib.symmetric_weights(users, items, 9, 7)
  assert np.isfinite(weights).all() and (weights > 0).all()
  edges = {k: jnp.asarray(v) for k, v in
           graph_lib.build_edges(users, items, 9, 7, n_shards=4).items()}
  to_users, to_items = graph_lib.propagate(edges, jnp.ones((9, 3)), jnp.ones((7, 3)))
  assert float(jnp.abs(to_users[8]).max()) == 0.0 and float(jnp.abs(to_items[6]).max()) == 0.0
  assert float(jnp.abs(to_users[:8]).min()) > 0
  model = graph_lib.LightGCN(9, 7, embed_dim=4, layers=3)
  params = model.init(jax.random.PRNGKey(0), edges)
  u, v = model.apply(params, edges)
  assert np.isfinite(u).all() and np.isfinite(v).all()
  # An isolated node keeps only its ego embedding, divided by K + 1.
  np.testing.assert_allclose(u[8], params["params"]["user_ego"][8] / 4, rtol=1e-6)
  gcmc = graph_lib.GCMC(9, 7, n_levels=2, hidden=4, dense=3, dropout=0.0)
  edges2 = {**edges, "level": edges["user"] % 2}
  gp = gcmc.init(jax.random.PRNGKey(0), edges2, jnp.zeros(1, jnp.int32),
                 jnp.zeros(1, jnp.int32))
  gu, gv = gcmc.apply(gp, edges2, method=graph_lib.GCMC.encode)
  assert np.isfinite(gu).all() and np.isfinite(gv).all()
  assert float(jnp.abs(gu[8]).max()) == 0.0 and float(jnp.abs(gv[6]).max()) == 0.0


@pytest.mark.parametrize("accumulation,ordinal", [("stack", True), ("sum", False)])
def test_gcmc_encoder_matches_per_level_dense_convolutions(accumulation, ordinal):
  users, items, rng = _random_graph(seed=2)
  levels = rng.integers(0, 3, len(users))
  edges = {k: jnp.asarray(v) for k, v in
           graph_lib.build_edges(users, items, 9, 7, levels=levels).items()}
  model = graph_lib.GCMC(9, 7, n_levels=3, hidden=6, dense=4, accumulation=accumulation,
                         ordinal_sharing=ordinal, dropout=0.0)
  params = model.init(jax.random.PRNGKey(0), edges, jnp.zeros(1, jnp.int32),
                      jnp.zeros(1, jnp.int32))
  u, v = model.apply(params, edges, method=graph_lib.GCMC.encode)
  p = jax.tree.map(np.asarray, params["params"])
  blocks = np.cumsum(p["conv"], 0) if ordinal else p["conv"]  # [R, n_users + n_items, h]
  w = graph_lib.symmetric_weights(users, items, 9, 7)  # degrees over all levels (global)
  per_level_u, per_level_i = [], []
  for r in range(3):
    a = np.zeros((9, 7))
    sel = levels == r
    a[users[sel], items[sel]] = w[sel]
    per_level_u.append(a @ blocks[r, 9:])
    per_level_i.append(a.T @ blocks[r, :9])
  join = np.concatenate if accumulation == "stack" else (lambda xs, axis: np.sum(xs, 0))
  hu = np.maximum(join(per_level_u, axis=1), 0)
  hi = np.maximum(join(per_level_i, axis=1), 0)
  np.testing.assert_allclose(u, hu @ p["user_dense"]["kernel"], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(v, hi @ p["item_dense"]["kernel"], rtol=1e-4, atol=1e-6)
  # The decoder on pairs equals the direct bilinear form with basis sharing.
  q = np.einsum("rs,sde->rde", p["level_coef"], p["basis"])
  logits = model.apply(params, edges, jnp.array([0, 3]), jnp.array([1, 2]))
  np.testing.assert_allclose(logits[1], np.einsum("d,rde,e->r", u[3], q, v[2]), rtol=1e-4,
                             atol=1e-6)


def test_half_star_ratings_map_to_their_own_levels():
  raw = np.array([1, 10, 7, 2, 7, 9])  # stars * 2: 0.5, 5.0, 3.5, 1.0, 3.5, 4.5
  levels_raw, level_of, values = graph_train.rating_levels(raw, rating_scale=2)
  np.testing.assert_array_equal(values, [0.5, 1.0, 3.5, 4.5, 5.0])
  np.testing.assert_array_equal(values[level_of], raw / 2)
  probs = jnp.log(jnp.eye(5)[level_of] + 1e-9)  # one-hot softmax -> the level's value
  np.testing.assert_allclose(graph_lib.expected_rating(probs, jnp.asarray(values)), raw / 2,
                             atol=1e-6)
  with pytest.raises(ValueError, match=r"training ratings \[2.0\] are not among"):
    graph_train.rating_levels(np.array([4]), 2, saved=levels_raw.tolist())


# --------------------------------------------------------------------------- training runs
def graph_config(store_root, name="gcmc", **overrides):
  """A tiny synthetic graph run: seconds on 2 cores."""
  return tiny_run_config(store_root, name, n_users=150, n_items=60, n_ratings=4000, epochs=4,
                         **{"graph.gcmc_hidden": 20, "graph.gcmc_dense": 8, "graph.embed_dim": 8,
                            "graph.layers": 2, "train.batch_size": 512, "graph.ema_decay": 0.9,
                            "optimizer.lr": 0.01, "train.log_every_s": 1e9, **overrides})



def _run_steps(config, n_epochs=2):
  """n_epochs of the family's real batches and step, run by the loop's own epoch function."""
  fam = family.family(config.model.name)
  setup = fam.setup(family.resolve(config))
  tree, step = fam.init(setup), fam.make_step(setup)
  losses = []
  for epoch in range(n_epochs):
    tree, stats = loop.host_epoch(fam, setup, step, tree, epoch, jax.random.PRNGKey(0))
    losses.append(stats["train_loss"])
  assert len(setup.s["host_edges"]["user"][0]) % setup.s["n_data"] == 0
  return np.array(losses), jax.tree.map(np.asarray, tree["params"])


@pytest.mark.parametrize("name,overrides", [("gcmc", {}), ("lightgcn", {}),
                                            ("gcmc", {"graph.full_batch": False,
                                                      "graph.edge_chunk": 1000})])
def test_sharded_steps_equal_single_device(store_root, name, overrides):
  assert jax.device_count() >= 4
  one = _run_steps(graph_config(store_root, name, **{"mesh.data": 1, **overrides}))
  four = _run_steps(graph_config(store_root, name, **{"mesh.data": 4, **overrides}))
  np.testing.assert_allclose(one[0], four[0], atol=5e-6, rtol=5e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=5e-6, rtol=1e-4), one[1],
               four[1])
  assert not np.allclose(one[0][0], one[0][-1])  # the steps did move


def test_checkpoint_restore_reproduces_metrics_and_resume_continues(store_root, tmp_path):
  config = graph_config(store_root, "gcmc", **{"train.epochs": 6, "train.eval_every": 2,
                                               "train.early_stopping_patience": 0})
  final = loop.train_and_evaluate(config, tmp_path / "run")
  assert final["protocol"] == "random_90_10_seed0" and final["checkpoint"] == "best"
  assert final["test"]["rmse"] < 1.5
  restored = loop.load_recommender(tmp_path / "run", config)
  again = evaluator.evaluate_run(restored)
  assert again["test"] == final["test"] and again["valid"] == final["valid"]
  assert restored.item_vectors().shape == (restored.store.n_items, 8)
  # Resume: two more epochs continue after the saved epoch instead of starting over.
  more = graph_config(store_root, "gcmc", **{"train.epochs": 8, "train.eval_every": 2,
                                             "train.early_stopping_patience": 0})
  loop.train_and_evaluate(more, tmp_path / "run")
  log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
         if x]
  assert [r["epoch"] for r in log] == list(range(8))  # each once, though resumed at 6
  assert [r["step"] for r in log] == list(range(1, 9))
  assert [r["epoch"] for r in log if "valid_rmse" in r] == [1, 3, 5, 7]
  # A checkpoint refuses a config whose graph shapes differ, naming the field.
  other = graph_config(store_root, "gcmc", **{"graph.gcmc_dense": 16})
  with pytest.raises(ValueError, match="graph.gcmc_dense: checkpoint 8, config 16"):
    loop.load_recommender(tmp_path / "run", other)


@pytest.mark.parametrize("field,value,message", [
    ("graph.gcmc_accumulation", "mean", r"must be one of \(.stack., .sum.\)"),
    ("graph.valid_metric", "auc", "must look like recall@20"),
    ("graph.dropout", 1.0, r"graph.dropout = 1.0 \(must be in \[0, 1\)\)"),
])
def test_bad_graph_configs_give_clear_errors(store_root, field, value, message):
  config = graph_config(store_root, "gcmc", **{field: value})
  with pytest.raises(ValueError, match=message):
    family.resolve(config)


def test_launch_trains_and_restores_lightgcn(store_root, tmp_path):
  common = [sys.executable, "launch.py", "--experiment=lightgcn_ml100k",
            "--config.data.source=synthetic", f"--config.data.store_root={store_root}",
            "--config.data.synthetic.n_users=150", "--config.data.synthetic.n_items=60",
            "--config.data.synthetic.n_ratings=4000", "--config.data.min_user_ratings=5",
            "--config.split.kind=loo", "--config.eval.relevance_threshold=0",
            "--config.graph.embed_dim=8", "--config.train.eval_every=1",
            "--config.train.epochs=3", "--config.train.batch_size=512"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  run = subprocess.run(common + [f"--workdir={tmp_path / 'train'}"], cwd=REPO,
                       capture_output=True, text=True, env=env, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "protocol loo" in run.stdout
  trained = json.loads((tmp_path / "train" / "final_metrics.json").read_text())
  assert trained["test"]["ranking_protocol"] == "loo_full" and "recall@20" in trained["test"]
  assert trained["test"]["relevance"] == "every test rating"
  ev = subprocess.run(common + ["--mode=eval", f"--restore_from={tmp_path / 'train'}",
                                f"--workdir={tmp_path / 'eval'}"], cwd=REPO,
                      capture_output=True, text=True, env=env, timeout=300)
  assert ev.returncode == 0, ev.stderr[-3000:]
  evaluated = json.loads((tmp_path / "eval" / "final_metrics.json").read_text())
  assert evaluated["test"] == trained["test"] and evaluated["valid"] == trained["valid"]
  assert evaluated["checkpoint_step"] == trained["checkpoint_step"]

  # Fold-in: a heavy user's held-out training movies rank above the other candidates' middle.
  recommender = loop.load_recommender(tmp_path / "train")
  store, train = recommender.store, recommender.split.rows("train")
  users = np.take(store.user, train)
  ranks = []
  for user in np.argsort(-np.bincount(users))[:20]:
    items = np.take(store.item, train[users == user])
    given, held = items[: len(items) * 2 // 3], items[len(items) * 2 // 3:]
    scores = recommender.fold_in(given, np.ones(len(given)))
    candidates = np.setdiff1d(np.arange(store.n_items), given)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    ranks += [np.flatnonzero(order == i)[0] / len(order) for i in held]
  assert np.mean(ranks) < 0.45, np.mean(ranks)
  assert "symmetric normalisation" in recommender.fold_in_method

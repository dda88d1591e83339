"""Training engine: sharded == single device, learning, NaN guard, checkpoints, bad configs."""

import copy
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
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax import configs, models
from netrec_jax.data import datasets
from netrec_jax.train import checkpoint as ckpt_lib
from netrec_jax import sharding as sharding_lib
from netrec_jax.train import family, input_pipeline, loop, optim, sparse, steps
from netrec_jax.train import state as state_lib

REPO = Path(__file__).resolve().parents[1]
TINY = ["--config.data.synthetic.n_users=600", "--config.data.synthetic.n_items=250",
        "--config.data.synthetic.n_ratings=30000", "--config.data.min_user_ratings=5",
        "--config.train.epochs=2", "--config.train.batch_size=2048", "--config.eda=False",
        "--config.compare.after_train=False"]


def tiny_config(store_root, **overrides):
  return tiny_run_config(store_root, n_users=600, n_items=250, n_ratings=30000,
                         **{"train.batch_size": 2048, "model.embed_dim": 16, **overrides})



def test_four_fake_devices_are_visible():
  assert jax.device_count() == 4, "conftest must set XLA_FLAGS before jax is imported"


# ----------------------------------------------------------------------- sparse optimizers
@pytest.mark.parametrize("dedup", ["mark", "sort"])
@pytest.mark.parametrize("kind", ["adagrad", "lazy_adam"])
def test_duplicate_rows_are_merged_like_a_dense_optimizer(kind, dedup):
  table = jnp.arange(20, dtype=jnp.float32).reshape(5, 4) / 10
  idx = jnp.array([1, 3, 1, 5])  # 5 == n_rows: padding, must not touch anything
  grads = jnp.ones((4, 4)) * jnp.array([[1.0], [2.0], [3.0], [9.0]])
  slots = sparse.init_slots(kind, table)
  new, _ = sparse.apply(kind, table, slots, idx, grads, lr=0.1, l2=0.0, step=jnp.array(0),
                        hyper={"dedup": dedup})
  dense_grad = np.zeros((5, 4), np.float32)
  dense_grad[1] = 4.0  # 1 + 3, merged
  dense_grad[3] = 2.0
  if kind == "adagrad":
    accum = (dense_grad ** 2).mean(-1)
    expected = np.asarray(table) - 0.1 * dense_grad / (np.sqrt(accum)[:, None] + 1e-8)
  else:  # first Adam step: update = -lr * sign(g)
    expected = np.asarray(table) - 0.1 * np.sign(dense_grad)
  touched = np.array([False, True, False, True, False])
  np.testing.assert_allclose(np.asarray(new)[touched], expected[touched], rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(new)[~touched], np.asarray(table)[~touched])


@pytest.mark.parametrize("n_rows, batch", [(10, 64), (1000, 64), (50, 7), (5, 100)])
def test_marking_and_sorting_find_the_same_distinct_rows(n_rows, batch):
  """The sort-free dedup (mark + cumsum) against jnp.unique and against numpy."""
  rng = np.random.default_rng(n_rows)
  idx = np.where(rng.random(batch) < 0.1, n_rows, rng.integers(0, n_rows, batch))
  idx = jnp.asarray(idx, jnp.int32)
  marked, sorted_ = (sparse.distinct_rows(idx, n_rows, m) for m in ("mark", "sort"))
  np.testing.assert_array_equal(marked[0], sorted_[0])
  np.testing.assert_array_equal(marked[1], sorted_[1])
  unique = np.unique(np.asarray(idx))
  np.testing.assert_array_equal(np.asarray(marked[0])[:len(unique)], unique)
  np.testing.assert_array_equal(np.asarray(marked[0])[np.asarray(marked[1])], np.asarray(idx))


def test_sgd_scatter_adds_each_example_and_ignores_padding():
  table = jnp.zeros((3, 2))
  new, _ = sparse.apply("sgd", table, {}, jnp.array([0, 0, 3]), jnp.ones((3, 2)), lr=0.5, l2=0.0,
                        step=jnp.array(0), hyper={})
  np.testing.assert_allclose(np.asarray(new), [[-1, -1], [0, 0], [0, 0]])


# ------------------------------------------------------------- sharded equals single device
def _run_steps(config, mesh, n_steps=4):
  """A few train steps on `mesh` from the same init and the same host batches."""
  config = family.resolve(copy.deepcopy(config))
  exp_store = datasets.open_or_build(config.data)
  split = datasets.make_split(exp_store, config.split)
  rows = split.rows("train")
  model = models.build_model(config.model, 3.5)
  specs = model.table_specs()
  sizes = state_lib.table_sizes(specs, exp_store.n_users, exp_store.n_items, mesh)
  tx = optim.dense_optimizer(config.optimizer, 100)
  init = state_lib.state_initializer(model, specs, sizes, tx, config.optimizer.sparse, 0, 0)
  state, shardings = state_lib.create_state(init, mesh)
  step = steps.make_train_step(model, specs, task=config.task, dense_tx=tx,
                               sparse_kind=config.optimizer.sparse,
                               sparse_lr=lambda s: config.optimizer.sparse_lr,
                               sparse_l2=config.optimizer.embed_l2, sparse_hyper={},
                               n_items=exp_store.n_items)
  replicated = NamedSharding(mesh, P())
  step = jax.jit(step, in_shardings=(shardings, sharding_lib.batch_sharding(mesh), replicated),
                 out_shardings=(shardings, replicated))
  batches = input_pipeline.HostBatches(exp_store, rows, 1024, 0, mesh, prefetch=1)
  for k, batch in enumerate(batches.epoch(0)):
    if k == n_steps:
      break
    state, metrics = step(state, batch, {})
    jax.block_until_ready(metrics["loss"])
  n_users, n_items = exp_store.n_users, exp_store.n_items
  tables = {name: np.asarray(jax.device_get(t))[:n_users if specs[name].entity == "user"
                                                 else n_items]
            for name, t in state.tables.items()}
  return tables, jax.device_get(state.params)


@pytest.mark.parametrize("model_name,optimizer", [("mf", "adagrad"), ("neumf", "lazy_adam"),
                                                  ("hybrid", "sgd")])
@pytest.mark.parametrize("data,model_axis", [(4, 1), (2, 2)])
def test_sharded_training_equals_single_device(store_root, model_name, optimizer, data,
                                               model_axis):
  config = tiny_config(store_root, **{"model.name": model_name, "optimizer.sparse": optimizer,
                                      "model.dropout": 0.0})
  devices = jax.devices()
  config.mesh.update(data=1, model=1)
  single_tables, single_params = _run_steps(config, sharding_lib.make_mesh(config.mesh,
                                                                        devices[:1]))
  config.mesh.update(data=data, model=model_axis)
  sharded_tables, sharded_params = _run_steps(config, sharding_lib.make_mesh(config.mesh, devices))
  for name in single_tables:
    np.testing.assert_allclose(sharded_tables[name], single_tables[name], atol=5e-6,
                               err_msg=name)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=5e-6), sharded_params,
               single_params)
  assert any(np.abs(t).sum() > 0 for t in single_tables.values())


def test_row_sharded_tables_are_split_over_the_model_axis(store_root):
  config = family.resolve(tiny_config(store_root))
  config.mesh.update(data=2, model=2)
  mesh = sharding_lib.make_mesh(config.mesh)
  model = models.build_model(config.model, 3.5)
  specs = model.table_specs()
  sizes = state_lib.table_sizes(specs, 601, 251, mesh)
  assert all(v % 2 == 0 for v in sizes.values())  # padded to the model axis
  init = state_lib.state_initializer(model, specs, sizes, optim.dense_optimizer(
      config.optimizer, 10), "adagrad", 0, 0)
  state, _ = state_lib.create_state(init, mesh)
  shard_rows = {s.data.shape[0] for s in state.tables["user_vec"].addressable_shards}
  assert shard_rows == {sizes["user_vec"] // 2}


# --------------------------------------------------------------------------------- learning
def test_mf_learns_the_low_rank_structure(store_root, tmp_path):
  config = tiny_config(store_root, **{"train.epochs": 6, "optimizer.embed_l2": 0.3})
  config.data.synthetic.update(n_users=1500, n_items=400, n_ratings=120000)
  result = loop.train_and_evaluate(config, tmp_path / "run")
  exp = family.family("mf").setup(family.resolve(copy.deepcopy(config)))
  train = exp.store.stars(exp.rows["train"]).mean()
  test_y = exp.store.stars(exp.rows["test"]).astype(np.float64)
  global_mean_rmse = float(np.sqrt(np.mean((test_y - train) ** 2)))
  assert result["protocol"] == "random_90_10_seed0"
  assert result["test"]["rmse"] < 0.92 * global_mean_rmse, (result, global_mean_rmse)
  log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().split(
      "\n") if line]
  assert [r["epoch"] for r in log] == list(range(len(log)))
  assert log[-1]["train_loss"] < log[0]["train_loss"]
  assert all(r["ratings_per_s"] > 0 for r in log)

  # MF recovers the generator's structure: learned item biases track the true ones.
  from netrec_jax.data import synthetic
  from netrec_jax.train import checkpoint as ckpt
  truth = synthetic.generate_truth(synthetic.SyntheticConfig(**config.data.synthetic.to_dict()))
  checkpoints = ckpt.Checkpoints(tmp_path / "run")
  state, _ = checkpoints.restore("best", state_lib.abstract_state(exp.init_fn, exp.mesh))
  checkpoints.close()
  learned = np.asarray(state.tables["item_bias"])[:exp.store.n_items, 0]
  true = truth.item_bias[exp.store.item_original_ids() - 1]
  assert np.corrcoef(learned, true)[0, 1] > 0.8


@pytest.mark.parametrize("overrides", [
    {"model.name": "gmf"}, {"model.name": "mlp"},
    {"model.name": "hybrid", "model.use_features": True, "model.dropout": 0.1},
    {"model.name": "neumf", "task": "implicit"},
    {"model.name": "mf", "train.input_pipeline": "device"},
    {"model.name": "mf", "optimizer.schedule": "warmup_cosine", "optimizer.clip_norm": 1.0},
    {"model.name": "neumf", "model.compute_dtype": "bfloat16", "optimizer.plateau_patience": 1},
    {"model.name": "mf", "optimizer.sparse": "lazy_adam", "optimizer.sparse_lr": 0.01,
     "optimizer.dense": "adamw", "mesh.data": 2, "mesh.model": 2},
])
def test_every_model_trains_and_evaluates(store_root, tmp_path, overrides):
  config = tiny_config(store_root, **overrides)
  result = loop.train_and_evaluate(config, tmp_path / "run")
  metric = "rmse" if config.task == "explicit" else "recall@20"
  assert np.isfinite(result["test"][metric])
  assert (tmp_path / "run" / "final_metrics.json").is_file()


# ------------------------------------------------------------------------------- NaN guard
def test_non_finite_loss_stops_before_checkpointing(store_root, tmp_path, monkeypatch):
  # The range check would refuse this learning rate before any work; the guard behind it is
  # what is tested here.
  from netrec_jax import config_checks
  monkeypatch.setattr(config_checks, "validate_ranges", lambda config: None)
  config = tiny_config(store_root, **{"optimizer.sparse": "sgd", "optimizer.sparse_lr": 1e30,
                                      "train.check_every_steps": 1})
  with pytest.raises(loop.NonFiniteLossError, match=r"at step \d+ \(epoch 0\)"):
    loop.train_and_evaluate(config, tmp_path / "run")
  checkpoints = ckpt_lib.Checkpoints(tmp_path / "run")
  assert not checkpoints.has("latest") and not checkpoints.has("best")
  checkpoints.close()


# ----------------------------------------------------------------------------- checkpoints
def _launch(*args, cwd=REPO):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  return subprocess.run([sys.executable, "launch.py", *args], cwd=cwd, capture_output=True,
                        text=True, env=env, timeout=600)


def test_eval_from_checkpoint_in_a_new_process_reproduces_metrics(store_root, tmp_path):
  common = ["--experiment=quickstart", f"--config.data.store_root={store_root}", *TINY]
  run = _launch(*common, f"--workdir={tmp_path / 'train'}")
  assert run.returncode == 0, run.stderr[-3000:]
  trained = json.loads((tmp_path / "train" / "final_metrics.json").read_text())
  assert "protocol random_90_10_seed0" in run.stdout
  ev = _launch(*common, "--mode=eval", f"--restore_from={tmp_path / 'train'}",
               f"--workdir={tmp_path / 'eval'}")
  assert ev.returncode == 0, ev.stderr[-3000:]
  evaluated = json.loads((tmp_path / "eval" / "final_metrics.json").read_text())
  assert evaluated["test"] == trained["test"]
  assert evaluated["valid"] == trained["valid"]
  assert evaluated["checkpoint_step"] == trained["checkpoint_step"]

  # Resume: asking for one more epoch continues at the saved step, not from scratch.
  more = _launch(*common, "--config.train.epochs=3", "--config.train.early_stopping_patience=0",
                 f"--workdir={tmp_path / 'train'}")
  assert more.returncode == 0, more.stderr[-3000:]
  log = [json.loads(x) for x in (tmp_path / "train" / "metrics.jsonl").read_text().split("\n")
         if x]
  assert [r["epoch"] for r in log] == [0, 1, 2]
  assert log[2]["step"] == log[1]["step"] + (log[1]["step"] - log[0]["step"])

  # A checkpoint is refused by an incompatible config, with the difference named.
  bad = _launch(*common, "--config.model.embed_dim=8", "--mode=eval",
                f"--restore_from={tmp_path / 'train'}", f"--workdir={tmp_path / 'bad'}")
  assert bad.returncode != 0
  assert "model.embed_dim: checkpoint 32, config 8" in bad.stderr


def test_checkpoint_from_other_data_is_refused(store_root, tmp_path):
  config = tiny_config(store_root, **{"train.epochs": 1})
  loop.train_and_evaluate(config, tmp_path / "run")
  other = tiny_config(store_root, **{"train.epochs": 1, "data.min_user_ratings": 40})
  with pytest.raises(ckpt_lib.CheckpointError, match="fingerprint"):
    loop.evaluate_checkpoint(other, tmp_path / "run", tmp_path / "eval")


# ------------------------------------------------------------------------------ bad configs
@pytest.mark.parametrize("overrides,message", [
    ({"model.embed_dim": -4}, r"model.embed_dim = -4 \(must be > 0\)"),
    ({"model.hidden": (64, 0)}, r"model.hidden = \(64, 0\) \(must be > 0\)"),
    ({"train.batch_size": 0}, r"train.batch_size = 0 \(must be > 0\)"),
    ({"model.name": "bert"}, "unknown model.name"),
    ({"optimizer.sparse": "rmsprop"}, "optimizer.sparse must be one of"),
    ({"mesh.data": 5}, "does not match 4 devices"),
    ({"mesh.data": 3, "mesh.model": 2}, "does not match 4 devices"),
    ({"mesh.cpu_devices": -2}, r"mesh.cpu_devices = -2 \(must be -1 \(one per core\)"),
])
def test_bad_configs_give_clear_errors(store_root, tmp_path, overrides, message):
  config = tiny_config(store_root, **overrides)
  with pytest.raises(ValueError, match=message):
    loop.train_and_evaluate(config, tmp_path / "run")


def test_sweep_writes_one_summary_table(store_root, tmp_path):
  # mesh.cpu_devices=4 overrides the 2 devices of _launch's XLA_FLAGS: the runs train on 4.
  run = _launch("--experiment=quickstart", f"--config.data.store_root={store_root}", *TINY,
                "--config.train.epochs=1", f"--workdir={tmp_path}",
                "--config.mesh.cpu_devices=4", "--config.mesh.data=-1",
                "--sweep=optimizer.sparse_lr=0.02,0.05;model.embed_dim=8")
  assert run.returncode == 0, run.stderr[-3000:]
  assert "mesh {'data': 4, 'model': 1}" in run.stderr
  rows = json.loads((tmp_path / "sweep_summary.json").read_text())
  assert [r["run"] for r in rows] == ["sparse_lr=0.02_embed_dim=8", "sparse_lr=0.05_embed_dim=8"]
  assert all(r["protocol"] == "random_90_10_seed0" for r in rows)
  assert (tmp_path / "sparse_lr=0.05_embed_dim=8" / "final_metrics.json").is_file()


def _free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


SYNTHETIC = ["--config.data.source=synthetic", "--config.data.synthetic.n_users=300",
             "--config.data.synthetic.n_items=120", "--config.data.synthetic.n_ratings=9000",
             "--config.data.min_user_ratings=5", "--config.split.kind=random",
             "--config.train.epochs=2", "--config.eda=False"]
# A pair model (its own device-resident epoch) and a row model (host batches, which the graph
# and sequence families share): each places its batches through the loop.
MULTI_PROCESS = {
    # Every device of every process trains (the quick start itself trains MF on one).
    "mf": ["--experiment=quickstart", *TINY, "--config.mesh.data=-1",
           "--config.mesh.cpu_devices=0"],
    "autorec": ["--experiment=autorec_ml100k", *SYNTHETIC,
                "--config.autoencoder.autorec_hidden=16", "--config.train.batch_size=32"],
}


@pytest.mark.parametrize("model", sorted(MULTI_PROCESS))
def test_two_processes_train_like_one(store_root, tmp_path, model):
  """Two local CPU processes (2 devices each, gloo) == one process with 4 devices."""
  common = ["launch.py", *MULTI_PROCESS[model], f"--config.data.store_root={store_root}"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  single = subprocess.run([sys.executable, *common, f"--workdir={tmp_path / 'one'}"], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  # A fresh store root: both processes build the same store at once, one publish wins.
  common[-1] = f"--config.data.store_root={tmp_path / 'stores_two'}"
  procs = [subprocess.Popen([sys.executable, *common, f"--workdir={tmp_path / 'two'}",
                             f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                             f"--process_id={i}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  one = json.loads((tmp_path / "one" / "final_metrics.json").read_text())
  two = json.loads((tmp_path / "two" / "final_metrics.json").read_text())
  assert two["checkpoint_step"] == one["checkpoint_step"]
  for part in ("valid", "test"):
    for metric in ("rmse", "mae"):
      assert abs(two[part][metric] - one[part][metric]) < 1e-5, (part, metric, one, two)


def test_cpu_devices_are_fixed_once_the_backend_runs(store_root):
  """In-process the backend already has conftest's 4 devices: that count is accepted,
  another is refused with the field named (launch.py sets it before JAX starts), by the
  pipeline's check too, before any work."""
  assert sharding_lib.set_cpu_devices(0) == 0
  assert sharding_lib.set_cpu_devices(4) == 4
  with pytest.raises(ValueError, match=r"mesh.cpu_devices=3 asks for 3 CPU devices, but the "
                     r"JAX backend already started with 4"):
    sharding_lib.set_cpu_devices(3)
  from netrec_jax import pipeline
  pipeline.check(tiny_config(store_root, **{"mesh.cpu_devices": 4}))
  with pytest.raises(ValueError, match="mesh.cpu_devices=3"):
    pipeline.check(tiny_config(store_root, **{"mesh.cpu_devices": 3}))


def test_a_checkpoint_config_missing_newer_fields_restores_with_defaults():
  saved = configs.base_config().to_dict()
  del saved["autoencoder"]["batch_entries"]
  del saved["graph"]
  restored = configs.from_checkpoint(json.loads(json.dumps(saved)))
  assert restored.autoencoder.batch_entries == configs.base_config().autoencoder.batch_entries
  assert restored.model.mlp_layers == (64, 32, 16, 8)  # JSON lists back to tuples
  assert "layers" in restored.graph

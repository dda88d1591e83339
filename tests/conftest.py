"""Test setup: 4 fake CPU devices (before jax is imported anywhere), shared data location."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from netrec_jax.data import datasets  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> Path:
  """The real datasets folder ($NETREC_DATA_DIR or ../shared/data); skips if absent."""
  path = datasets.data_dir()
  if not path.is_dir():
    pytest.skip(f"real datasets not found at {path} (set NETREC_DATA_DIR)")
  return path


# ----------------------------------------------------------------- shared tiny run configs
# Fields of a tiny run per model, chosen to compile and train in seconds on 2 cores; the
# family-contract test runs each of them, and other tests start from them.
TINY_MODEL_FIELDS = {
    "mf": {"model.embed_dim": 8, "train.batch_size": 1024},
    "autorec": {"autoencoder.autorec_hidden": 16, "train.batch_size": 32},
    "gcmc": {"graph.gcmc_hidden": 20, "graph.gcmc_dense": 8, "graph.dropout": 0.0},
    "lightgcn": {"graph.embed_dim": 8, "train.batch_size": 4096},
    "bert4rec": {"sequence.max_len": 16, "sequence.hidden": 16, "sequence.layers": 1,
                 "sequence.heads": 1, "train.eval_every": 1,
                 "split.kind": "loo", "eval.sampled_negatives": 0},
    "youtube_dnn": {"youtube.embed_dim": 8, "youtube.num_sampled": 16, "youtube.tower": (16,),
                    "youtube.out_dim": 8, "train.batch_size": 512},
    "mult_vae": {"vae.hidden": (16,), "vae.latent": 8, "train.batch_size": 64,
                 "train.eval_every": 1},
    "svdpp": {"svdpp.embed_dim": 8, "train.batch_size": 512},
    "timesvdpp": {"svdpp.embed_dim": 8, "train.batch_size": 512, "timesvdpp.n_bins": 6},
    # One pre-training and one fine-tuning epoch. float32 L-BFGS takes line-search branches
    # by loss comparisons, so few iterations and a well-conditioned objective (lambda_2 1)
    # keep 4 devices and 1 on the same path.
    "glocal_k": {"glocal_k.hidden": 8, "glocal_k.kernel_dim": 3, "glocal_k.pretrain_epochs": 1,
                 "glocal_k.pretrain_iters": 10, "glocal_k.finetune_iters": 2,
                 "glocal_k.lambda_2": 1.0},
}


def tiny_run_config(store_root, model: str = "mf", *, n_users: int = 300, n_items: int = 120,
                    n_ratings: int = 9000, split: str = "random", epochs: int | None = 2,
                    **fields):
  """A base config on a small synthetic store in `store_root`: the one place tests build one.

  `fields` are dotted names (set through configs.set_field, so a typo fails loudly); epochs
  None leaves train.epochs unset (families that train nothing refuse it).
  """
  from netrec_jax import configs
  config = configs.base_config()
  config.data.store_root = str(store_root)
  config.data.synthetic.update(n_users=n_users, n_items=n_items, n_ratings=n_ratings)
  config.data.min_user_ratings = 5
  config.split.kind = split
  config.model.name = model
  if epochs is not None:
    config.train.epochs = epochs
  config.eda = False
  for dotted, value in fields.items():
    configs.set_field(config, dotted, value)
  return config


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
  """Synthetic stores shared by a module's tests (each size builds once)."""
  return tmp_path_factory.mktemp("stores")


def assert_use_modes(workdir):
  """recommend (a training user and a new user) and similar through use.open_model, as the
  service calls them; returns the opened model for model-specific checks."""
  from netrec_jax import use
  opened = use.open_model(workdir)
  movies = opened.catalog.movie_ids
  given = {int(movies[0]): 5, int(movies[1]): 4, int(movies[2]): 3}
  result = use.recommend(None, None, users=str(int(opened.catalog.user_ids[0])),
                         new_user=given, n=5, opened=opened)
  assert len(result["users"][0]["recommendations"]) == 5
  listed = [r["movie_id"] for r in result["new_user"]["recommendations"]]
  assert len(listed) == 5 and not set(listed) & set(given)
  similar = use.similar(None, None, movies=str(int(movies[0])), n=3, opened=opened)
  assert len(similar["similar"][0]["neighbours"]) == 3
  return opened


def damaged_copy(workdir, filename: str, tmp_path) -> Path:
  """A copy of the run `workdir` with one byte of `filename` flipped near its end."""
  import shutil
  copy = tmp_path / "damaged"
  shutil.copytree(workdir, copy)
  data = bytearray((copy / filename).read_bytes())
  data[-40] ^= 0xFF
  (copy / filename).write_bytes(bytes(data))
  return copy


def hessian_index(loss, rows):
  """(the exact Hessian of loss(rows) in the flattened rows, index(name, positions) -> the
  flat coordinates of those rows of table `name`): for curvature-bound tests."""
  import jax
  import jax.flatten_util
  import numpy as np
  flat, unflatten = jax.flatten_util.ravel_pytree(rows)
  hessian = np.asarray(jax.jit(jax.hessian(lambda x: loss(unflatten(x))))(flat), np.float64)
  offsets, lo = {}, 0
  for name in sorted(rows):  # ravel_pytree's order
    offsets[name] = lo
    lo += rows[name].size

  def index(name, positions):
    dim = rows[name].shape[1]
    return np.concatenate([offsets[name] + p * dim + np.arange(dim) for p in positions])

  return hessian, index


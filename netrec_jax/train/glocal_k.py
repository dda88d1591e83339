"""The GLocal-K family (netrec_jax/models/glocal_k.py): pre-train, then fine-tune, by L-BFGS.

As the reference code (usydnlp/Glocal_K) trains it: full batch on the dense items x users
training matrix, L-BFGS restarted at every epoch (the reference calls scipy's L-BFGS-B
minimize once per epoch with maxiter = iter_p or iter_f, maxcor 10; here optax.lbfgs with its
zoom line search, memory glocal_k.lbfgs_memory). One epoch counter spans both phases:

  epochs 0 .. pretrain_epochs - 1      pre-training: the local kernel AE alone, each epoch
                                       glocal_k.pretrain_iters L-BFGS iterations
  epochs pretrain_epochs .. epochs-1   fine-tuning: global kernel convolution, then the same
                                       local AE, each epoch glocal_k.finetune_iters iterations

so train.epochs = epoch_p + epoch_f. Every epoch is validated (RMSE of the phase's network on
the validation rows) and logged. `best` means the best validation RMSE among the fine-tuning
epochs: the pre-training epochs are a warm-up (Setup.select_from_epoch) that is never `best`
and does not count towards early stopping, so patience runs over fine-tuning only. A run
with train.epochs <= pretrain_epochs (pre-training alone) picks its best pre-training epoch.
The reference instead reports the best *test* RMSE over fine-tuning epochs; we never look at
test to choose. A checkpoint holds the parameters only (no L-BFGS memory: each epoch starts
afresh, as the reference's), so a resumed run repeats an uninterrupted one exactly. The
checkpoint's epoch says which network it is (pre-training or fine-tuning).

Item rows are sharded over the mesh's `data` axis (padded with empty rows to a multiple of
it); parameters are replicated. L-BFGS decides step sizes by comparisons of float32 losses,
so layouts that sum in a different order can take different line-search branches on an
ill-conditioned problem; the contract test's tiny config is chosen to stay clear of that.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from netrec_jax import sharding as sharding_lib
from netrec_jax.data import datasets
from netrec_jax.models.ease import available_bytes
from netrec_jax.models.glocal_k import GLocalK, objective
from netrec_jax.recommenders.glocal_k import GLocalKRecommender
from netrec_jax.train.family import Family, Setup

# Loop fields this family does not read (the optimizer is L-BFGS, set by glocal_k.*; one
# full-batch program per epoch): setting one is refused instead of silently ignored.
# train.batch_size stays read (the loop checks it) but has no effect: batches are full.
UNREAD = ("optimizer.dense", "optimizer.lr", "optimizer.momentum", "optimizer.weight_decay",
          "optimizer.l2", "optimizer.clip_norm", "optimizer.schedule",
          "optimizer.warmup_steps", "optimizer.final_lr_fraction",
          "optimizer.plateau_patience", "optimizer.plateau_factor", "train.prefetch",
          "train.check_every_steps")


@dataclasses.dataclass
class GLocalKSetup(Setup):
  model: GLocalK = None
  ratings: jax.Array = None  # [rows, n_users] training stars, 0 unrated; rows sharded
  mask: jax.Array = None  # [rows, n_users] 1 where a training rating is
  global_mean: float = 0.0


def bytes_needed(n_rows: int, n_users: int, g) -> int:
  """A float32 estimate of the peak: the dense ratings, mask and two same-shaped activations
  (reconstruction, convolved input), each layer's [rows, hidden] activations kept for the
  gradient, and the parameters times L-BFGS's 2 x memory history plus about 6 working copies
  (gradient, direction, line-search trials)."""
  n_params = (2 * n_users * g.hidden + (g.layers - 1) * g.hidden ** 2
              + (g.layers + 1) * (n_users + g.hidden) * g.kernel_dim + n_rows * g.gk_size ** 2)
  cells = 4 * n_rows * n_users + 2 * g.layers * n_rows * g.hidden
  return 4 * (cells + (2 * g.lbfgs_memory + 6) * n_params)


def check_fits(n_rows: int, n_users: int, g, available: int | None, where: str) -> None:
  """A one-line refusal before a dense matrix that cannot fit is allocated (Netflix: 17,770 x
  480,189 float32 is 34 GB per copy)."""
  need = bytes_needed(n_rows, n_users, g)
  if available is not None and need > available:
    raise ValueError(f"glocal_k trains on the dense items x users matrix: {n_rows:,} x "
                     f"{n_users:,} needs about {need / 2**30:.1f} GiB, but only "
                     f"{available / 2**30:.1f} GiB of {where} is free; filter users and items "
                     "(data.min_user_ratings, data.min_item_ratings) or use a smaller dataset")


def rating_matrix(store, rows: np.ndarray, n_rows: int) -> np.ndarray:
  """[n_rows, n_users] float32: the stars of `rows` at (item, user), 0 elsewhere (n_rows >=
  n_items; the extra rows are empty padding)."""
  out = np.zeros((n_rows, store.n_users), np.float32)
  out[np.take(store.item, rows), np.take(store.user, rows)] = store.stars(rows)
  return out


@functools.lru_cache(maxsize=16)
def epoch_program(model: GLocalK, mesh: Mesh, finetune: bool, iters: int, lambda_2: float,
                  lambda_s: float, memory: int):
  """jit(params, ratings, mask) -> (params, objective after each of `iters` L-BFGS
  iterations), from a fresh L-BFGS state. Cached: the runs of one process (a resumed run,
  the contract test's runs) compile each phase once per mesh."""

  def run(params, ratings, mask):
    # L-BFGS on one flat vector: its memory, two-loop recursion and line search are then a
    # few array ops instead of the same ops per parameter leaf (half the compile time; the
    # same iterates up to float32 summation order).
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    loss_fn = lambda x: objective(model, unravel(x), ratings, mask, finetune, lambda_2,
                                  lambda_s)
    opt = optax.lbfgs(memory_size=memory)
    value_and_grad = optax.value_and_grad_from_state(loss_fn)

    def body(carry, _):
      x, state = carry
      value, grad = value_and_grad(x, state=state)
      updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=loss_fn)
      return (optax.apply_updates(x, updates), state), optax.tree.get(state, "value")

    (flat, _), losses = jax.lax.scan(body, (flat, opt.init(flat)), None, length=iters)
    return unravel(flat), losses

  replicated, rows = NamedSharding(mesh, P()), sharding_lib.batch_sharding(mesh)
  return jax.jit(run, in_shardings=(replicated, rows, rows),
                 out_shardings=(replicated, replicated))


class GLocalKFamily(Family):
  name = "glocal_k"
  models = ("glocal_k",)
  reads = ("glocal_k",)
  architecture_keys = ("glocal_k.hidden", "glocal_k.layers", "glocal_k.kernel_dim",
                       "glocal_k.gk_size", "glocal_k.dot_scale", "glocal_k.pretrain_epochs")
  # The paper's ML-100K schedule: 30 pre-training + 60 fine-tuning epochs; patience counts
  # fine-tuning validations only.
  DEFAULTS = {"glocal_k": {"train.epochs": 90, "train.eval_every": 1,
                           "train.early_stopping_patience": 10}}
  SEARCH_SPACE = {"glocal_k": {"glocal_k.lambda_2": ("log", 1.0, 200.0),
                               "glocal_k.lambda_s": ("log", 1e-3, 1e-1),
                               "glocal_k.dot_scale": ("log", 0.1, 3.0)}}

  def fields_read(self, config) -> tuple[str, ...]:
    return tuple(f for f in super().fields_read(config) if f not in UNREAD)

  def defaults(self, model_name: str) -> dict[str, Any]:
    return {k: v for k, v in super().defaults(model_name).items() if k not in UNREAD}

  def check(self, config) -> None:
    g = config.glocal_k
    for field in ("hidden", "layers", "kernel_dim", "gk_size", "pretrain_iters",
                  "finetune_iters", "lbfgs_memory"):
      if g[field] < 1:
        raise ValueError(f"glocal_k.{field} must be at least 1, got {g[field]}")
    for field in ("lambda_2", "lambda_s", "pretrain_epochs"):
      if g[field] < 0:
        raise ValueError(f"glocal_k.{field} must be non-negative, got {g[field]}")
    if config.split.kind == "strong":
      raise ValueError("glocal_k reconstructs the training matrix's user columns: the strong-"
                       "generalization split's held-out users have none (use a rating split)")

  def setup(self, config, meta: dict[str, Any] | None = None) -> GLocalKSetup:
    store = datasets.open_or_build(config.data)
    split = datasets.make_split(store, config.split)
    if split is None or len(split.rows("train")) == 0:
      raise ValueError(f"{config.model.name} needs a split with training ratings")
    train_rows = split.rows("train")
    global_mean = (float(meta["global_mean"]) if meta and "global_mean" in meta
                   else float(store.stars(train_rows).astype(np.float64).mean()))
    g = config.glocal_k
    mesh = sharding_lib.make_mesh(config.mesh)
    n_rows = sharding_lib.round_to_data(store.n_items, mesh)
    check_fits(n_rows, store.n_users, g, *available_bytes())
    ratings = rating_matrix(store, train_rows, n_rows)
    rows = sharding_lib.batch_sharding(mesh)
    model = GLocalK(n_items=store.n_items, n_users=store.n_users, hidden=g.hidden,
                    layers=g.layers, kernel_dim=g.kernel_dim, gk_size=g.gk_size,
                    dot_scale=float(g.dot_scale))
    finetunes = config.train.epochs > g.pretrain_epochs
    return GLocalKSetup(
        config=config, store=store, split=split, mesh=mesh, valid_metric="rmse",
        lower_is_better=True, n_examples=store.n_items, unit="items",
        steps_per_epoch=max(g.pretrain_iters, g.finetune_iters),
        select_from_epoch=g.pretrain_epochs if finetunes else 0,
        extra_meta={"global_mean": global_mean}, model=model,
        ratings=jax.device_put(ratings, rows),
        mask=jax.device_put((ratings > 0).astype(np.float32), rows), global_mean=global_mean)

  def init(self, setup: GLocalKSetup):
    seed, model = setup.config.seed, setup.model

    def init():
      # One dummy row: every parameter (conv_kernel too) is made in GLocalK.setup.
      params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, model.n_users)))
      return {"params": params, "step": jnp.zeros((), jnp.int32),
              "lr_scale": jnp.ones((), jnp.float32)}

    return jax.jit(init, out_shardings=NamedSharding(setup.mesh, P()))()

  def finetunes(self, setup: GLocalKSetup, epoch: int) -> bool:
    return epoch >= setup.config.glocal_k.pretrain_epochs

  def epoch_runner(self, setup: GLocalKSetup):
    g = setup.config.glocal_k

    def run(tree, epoch: int):
      finetune = self.finetunes(setup, epoch)
      program = epoch_program(setup.model, setup.mesh, finetune,
                              int(g.finetune_iters if finetune else g.pretrain_iters),
                              float(g.lambda_2), float(g.lambda_s), int(g.lbfgs_memory))
      params, losses = program(tree["params"], setup.ratings, setup.mask)
      return dict(tree, params=params, step=tree["step"] + len(losses)), losses, setup.n_examples

    return run

  def recommender(self, setup: GLocalKSetup, tree, which: str, meta: dict[str, Any]):
    return GLocalKRecommender(
        setup.model, tree["params"], setup.ratings, self.finetunes(setup, int(meta["epoch"])),
        store=setup.store, split=setup.split, config=setup.config,
        global_mean=setup.global_mean, which=which, meta={**setup.extra_meta, **meta})


FAMILY = GLocalKFamily()

"""The model-family contract, the registry of families, and which config fields each reads.

A family is the model-specific part of training, written once per kind of model; the loop
(netrec_jax/train/loop.py) owns everything else (resume, checkpoints, early stopping, LR
plateau, the NaN window, metrics.jsonl, progress, final evaluation). A family supplies:

  models             the model.name values it trains
  reads              the config fields (dotted names or section prefixes) it reads, besides
                     the shared ones every run reads (COMMON, and TRAINED for trained ones)
  architecture_keys  the fields a checkpoint must match to be restored into this config
  defaults(model)    its own training defaults for the fields the base config leaves unset
  check(config)      value checks, before any work
  setup(config, meta) -> Setup   data, mesh, model and step functions (a dataclass)
  init(setup) -> tree            the initial state, created sharded
  batches(setup, epoch)          host batches of one epoch (dicts of numpy arrays), or
  epoch_runner(setup)            a whole epoch its own way (the pair model's device scan)
  recommender(setup, tree, which, meta) -> the model behind the evaluator's interface

A family that trains nothing (content) sets trains = False and supplies `fit(config, workdir,
runs)` and `load(workdir, config, saved, runs)`; `runs` (train, load) lets it build on other
runs (the hybrid's CF model) without importing the loop.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Iterable

import ml_collections

from netrec_jax import config_checks, configs

# model name -> module holding its family (imported on first use: each pulls in its deps).
FAMILIES: dict[str, str] = {
    **dict.fromkeys(("mf", "gmf", "mlp", "neumf", "hybrid"), "netrec_jax.train.pair"),
    **dict.fromkeys(("autorec", "deep_ae"), "netrec_jax.train.autoencoder"),
    **dict.fromkeys(("gcmc", "lightgcn"), "netrec_jax.train.graph"),
    "bert4rec": "netrec_jax.train.sequence",
    "youtube_dnn": "netrec_jax.train.youtube",
    "content": "netrec_jax.train.content",
    **dict.fromkeys(("mult_vae", "mult_dae"), "netrec_jax.train.multvae"),
    **dict.fromkeys(("ease", "item_knn", "rp3beta"), "netrec_jax.train.closed_form"),
    "svdpp": "netrec_jax.train.svdpp",
    "timesvdpp": "netrec_jax.train.timesvdpp",
    "glocal_k": "netrec_jax.train.glocal_k",
    "ials": "netrec_jax.train.ials",
}

# Read by every run, whatever the model.
COMMON = ("name", "mode", "seed", "data", "split", "mesh", "eval", "compare", "tune", "eda",
          "eda_top_k", "model.name", "train.resume", "train.log_every_s",
          "train.eval_batch_size")
# Read by the loop for every family that trains.
TRAINED = ("train.epochs", "train.batch_size", "train.eval_every",
           "train.early_stopping_patience", "train.min_delta", "train.check_every_steps",
           "train.prefetch", "train.tensorboard", "optimizer.dense", "optimizer.lr",
           "optimizer.momentum",
           "optimizer.weight_decay", "optimizer.l2", "optimizer.clip_norm",
           "optimizer.schedule", "optimizer.warmup_steps", "optimizer.final_lr_fraction",
           "optimizer.plateau_patience", "optimizer.plateau_factor", "optimizer.decay_mask")
# Defaults of the loop's fields for a family that does not set its own.
LOOP_DEFAULTS = {"optimizer.dense": "adam", "optimizer.lr": 1e-3, "optimizer.weight_decay": 1e-4,
                 "optimizer.l2": 0.0, "optimizer.clip_norm": 0.0, "train.epochs": 10,
                 "train.batch_size": 1024, "train.eval_every": 1,
                 "train.early_stopping_patience": 3, "eval.relevance_threshold": 4.0,
                 "eval.sampled_negatives": 0, "eval.negative_sampler": "uniform",
                 "optimizer.decay_mask": "matrices"}


@dataclasses.dataclass
class Setup:
  """What the loop reads of a family's setup; families subclass it with their own fields."""

  config: ml_collections.ConfigDict
  store: Any
  split: Any
  mesh: Any
  valid_metric: str  # the validation figure that picks `best` (e.g. rmse, recall@20)
  lower_is_better: bool
  n_examples: int  # training examples per epoch (ratings, rows, users, pairs)
  unit: str  # what an example is, for rates and progress
  steps_per_epoch: int  # for LR schedules (an estimate where batches vary)
  # Epochs before this one are a warm-up phase (GLocal-K's pre-training): validated and
  # logged, but never `best` and not counted by early stopping or the plateau; a best kept
  # from before it (a run that stopped in the warm-up, then resumed with more epochs) is
  # replaced by the first validation from here on, so a resumed run picks as an
  # uninterrupted one.
  select_from_epoch: int = 0
  extra_meta: dict[str, Any] = dataclasses.field(default_factory=dict)


class SizedBatches:
  """An epoch's host batches with a length (for progress), made only as they are iterated."""

  def __init__(self, make: Callable[[], Iterable[dict[str, Any]]], n: int):
    self._make, self._n = make, n

  def __len__(self) -> int:
    return self._n

  def __iter__(self):
    return iter(self._make())


class Family:
  """Base of every family: the defaults of the contract (see the module docstring)."""

  name = "family"
  models: tuple[str, ...] = ()
  reads: tuple[str, ...] = ()
  architecture_keys: tuple[str, ...] = ()
  trains = True
  # Per-model defaults of fields the base config leaves unset, e.g. {"train.epochs": 100}.
  DEFAULTS: dict[str, dict[str, Any]] = {}
  # Per-model search space of the tune mode (netrec_jax/tune.py): field -> ("log", lo, hi) |
  # ("float", lo, hi) | ("int", lo, hi) | ("int_log", lo, hi) | ("choice", (a, b, ...)).
  # Epochs are not searched: the loop's early stopping on validation picks them.
  SEARCH_SPACE: dict[str, dict[str, tuple]] = {}

  def defaults(self, model_name: str) -> dict[str, Any]:
    # A family that trains nothing takes no training defaults: filled, they would read as
    # fields set for it (and be refused) when its resolved config is reused, as compare does.
    loop = LOOP_DEFAULTS if self.trains else {
        k: v for k, v in LOOP_DEFAULTS.items() if k.split(".")[0] not in ("optimizer", "train")}
    return {**loop, **self.DEFAULTS.get(model_name, {})}

  def fields_read(self, config: ml_collections.ConfigDict) -> tuple[str, ...]:
    return COMMON + (TRAINED if self.trains else ()) + self.reads

  def check(self, config: ml_collections.ConfigDict) -> None:
    del config

  def setup(self, config, meta: dict[str, Any] | None = None) -> Setup:
    raise NotImplementedError

  def init(self, setup: Setup) -> Any:
    raise NotImplementedError

  def abstract(self, setup: Setup) -> Any:
    """Shapes, dtypes and shardings of init's tree: the target a checkpoint restores into."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P
    replicated = NamedSharding(setup.mesh, P())
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                        jax.eval_shape(lambda: self.init(setup)))

  def make_step(self, setup: Setup):
    """jit(tree, batch, key) -> (tree, metrics with "loss" and "grad_norm")."""
    raise NotImplementedError

  def batches(self, setup: Setup, epoch: int) -> Iterable[dict[str, Any]]:
    raise NotImplementedError

  def epoch_runner(self, setup: Setup):
    """None (the loop runs `batches` through `make_step`), or a function (tree, epoch) ->
    (tree, step losses, examples seen) that runs a whole epoch its own way."""
    del setup
    return None

  def recommender(self, setup: Setup, tree: Any, which: str, meta: dict[str, Any]):
    raise NotImplementedError


def check_one_of(config, field: str, choices: tuple[str, ...]) -> None:
  """A ValueError naming `field` when its value is not one of `choices`."""
  section, _, leaf = field.partition(".")
  value = config[section][leaf]
  if value not in choices:
    raise ValueError(f"{field} must be one of {choices}, got {value!r}")


def family(model_name: str) -> Family:
  """The family that trains `model_name`."""
  if model_name not in FAMILIES:
    raise ValueError(f"unknown model.name {model_name!r}; expected one of {sorted(FAMILIES)}")
  return importlib.import_module(FAMILIES[model_name]).FAMILY


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks config for its model and fills the fields it leaves to the model's defaults."""
  fam = family(config.model.name)
  check_fields(config)
  configs.fill_defaults(config, fam.defaults(config.model.name))
  config_checks.validate_ranges(config)
  if fam.trains:
    for field in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
      if config.train[field] <= 0:
        raise ValueError(f"train.{field} must be positive, got {config.train[field]}")
    from netrec_jax.train import optim  # jax and optax: only once a trained model is chosen
    check_one_of(config, "optimizer.decay_mask", optim.DECAY_MASKS)
  fam.check(config)
  return config


def check_fields(config: ml_collections.ConfigDict, extra_models: tuple[str, ...] = ()) -> None:
  """Refuses a changed field that the chosen model (or extra_models) does not read."""
  names = (config.model.name, *extra_models)
  read = set()
  for name in names:
    read.update(family(name).fields_read(config))
  unread = [field for field in configs.changed_fields(config)
            if not any(field == p or field.startswith(p + ".") for p in read)]
  if unread:
    raise config_checks.ConfigError(
        f"config field{'s' if len(unread) > 1 else ''} {', '.join(unread)} "
        f"{'are' if len(unread) > 1 else 'is'} not read by model {config.model.name!r} "
        f"({family(config.model.name).name} family): remove "
        f"{'them' if len(unread) > 1 else 'it'} or pick a model that uses "
        f"{'them' if len(unread) > 1 else 'it'}")

r"""Device suite (issue 14, "GPU: ready to prove it"): the headline figures of one GPU, one run.

On the device machine, from the repository root (one call, sized to end inside 8 minutes on
one H200; not yet run on one):

  python3 -c 'import ml_collections' 2>/dev/null || { python3 -m pip install -q --no-index \
      --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site; }; \
  PYTHONUNBUFFERED=1 python3 benchmarks/device_suite.py --out=$OUT

(`.whl` holds the ml_collections wheel, the one dependency the device image may lack; carry it
with run(carry=[".whl"]).) Here, on CPU, in seconds, as tests/test_device_suite.py runs it:

  python benchmarks/device_suite.py --tiny --out=/tmp/ds
  python benchmarks/device_suite.py --n_users=100000 --n_ratings=2000000 --repeats=1  # mid

It builds a synthetic store (Netflix-shaped: 480,189 users x 17,770 items, 100M ratings, the
generator of netrec_jax/data/synthetic.py) in a temporary folder, splits it as
experiments/ncf_gpu.py does (random, 1% test, 1% valid) and runs each case through the
library's own code paths, timed after a warm-up (compile reported apart):
  mf, neumf    one ncf_gpu epoch, device-resident (family setup + epoch_runner), batch 65,536
  als, ials    one JaxALS (WR-ALS, CG) / JaxIALS iteration (fit with 1 + repeats iterations)
  lightgcn     one LightGCN propagation layer over the training edges, forward and with grad
  bert4rec     training steps/s at bert4rec_ml1m's batch (family setup, make_step, batches)
  autorec      I-AutoRec steps/s at autorec_ml1m's batch; deep_ae: deep_ae_netflix's
  ranking      top-100 of the full catalog, training items excluded, for every user (scores,
               exclusion and lax.top_k on the device), and the evaluator's host path
               (score_items + metrics.topk_from_scores) on a sample of users
Each case runs in its own try/except (an error, e.g. out of memory, is recorded in its row);
--cases picks a subset; once --budget_s has passed, the remaining cases are recorded as
skipped. JSON and Markdown are rewritten after every case, so a run cut short keeps its rows.
Floors: bytes a case must move (as BUILD_NOTES.md counts them) over the memory bandwidth:
4.8 TB/s for an H200, 3.35 TB/s for an H100, else measured (a large copy) on this machine.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import json
import os
import platform as platform_lib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from absl import app, flags

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))


def _import_benchmark(name: str):
  """benchmarks/<name>.py for its functions; the flags it defines are dropped again, since
  absl refuses a second definition of --out and friends, which this script defines too."""
  before = set(flags.FLAGS)
  module = importlib.import_module(f"benchmarks.{name}")
  for flag in set(flags.FLAGS) - before:
    delattr(flags.FLAGS, flag)
  return module


train_benchmark = _import_benchmark("train_benchmark")

CASES = ("mf", "neumf", "als", "ials", "lightgcn", "bert4rec", "autorec", "deep_ae", "ranking")
# Issue 14's targets on one H100/H200, seconds.
TARGETS_S = {"mf": 0.5, "neumf": 2.0, "als": 1.0, "ials": 1.0}
NOMINAL_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12}  # vendor datasheets, bytes/s

_OUT = flags.DEFINE_string("out", os.environ.get("OUT") or "runs/device_suite",
                           "Folder for device_suite.json and device_suite.md (default: $OUT "
                           "when set, else runs/device_suite).")
_TINY = flags.DEFINE_bool("tiny", False, "Same code paths at toy sizes (500 users x 200 items, "
                          "20k ratings, small models): seconds on CPU; what the test runs.")
_CASES = flags.DEFINE_list("cases", list(CASES), f"Cases to run, of {list(CASES)}.")
_BUDGET = flags.DEFINE_float("budget_s", 420.0, "Soft limit in seconds from the start (store "
                             "build included): cases not started by then are recorded as "
                             "skipped.")
_STORE_ROOT = flags.DEFINE_string("store_root", "", "Cache folder of the synthetic store "
                                  "(reused across runs). Empty: a temporary folder, removed at "
                                  "the end (the store is ~3 GB at 100M; never under $OUT).")
_USERS = flags.DEFINE_integer("n_users", None, "Users of the store (480,189; --tiny 500).")
_ITEMS = flags.DEFINE_integer("n_items", None, "Items of the store (17,770; --tiny 200).")
_RATINGS = flags.DEFINE_integer("n_ratings", None, "Target ratings of the store (100,480,507 as "
                                "experiments/synthetic_netflix_scale; --tiny 20,000).")
_REPEATS = flags.DEFINE_integer("repeats", None, "Timed repetitions per case after the warm-up "
                                "(epochs, ALS iterations, layers); the median is reported "
                                "(default 2; --tiny 1).")
_STEPS = flags.DEFINE_integer("steps", None, "Timed steps of the BERT4Rec and autoencoder cases "
                              "(default 20; --tiny 2).")
_ALS_CHUNK = flags.DEFINE_integer("als_chunk", 0, "Ratings per ALS chunk call (0: 2^20 on an "
                                  "accelerator, where each call is a launch; 2^14, JaxALS's "
                                  "CPU-cache default, on CPU).")
_EDGE_CHUNK = flags.DEFINE_integer("edge_chunk", None, "Edges per LightGCN scan chunk "
                                   "(graph.edge_chunk; default 2^23; --tiny 4096).")
_RANK_BATCH = flags.DEFINE_integer("rank_batch", None, "Users per device ranking call "
                                   "(default 4096; --tiny 128).")
_HOST_RANK_USERS = flags.DEFINE_integer("host_rank_users", None, "Users ranked through the "
                                        "evaluator's host path (default 4096; --tiny all).")
_BANDWIDTH = flags.DEFINE_float("bandwidth_gb_s", 0.0, "Memory bandwidth of the floors, GB/s "
                                "(0: 4,800 on an H200, 3,350 on an H100, else measured).")


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Every size a case uses: the issue's at full scale, toys under --tiny."""

  n_users: int = 480_189
  n_items: int = 17_770
  n_ratings: int = 100_480_507
  repeats: int = 2
  steps: int = 20
  pair_batch: int = 65_536  # experiments/ncf_gpu.py
  neumf_gmf: int = 32
  neumf_mlp: tuple[int, ...] = (64, 32, 16, 8)
  als_factors: int = 64
  graph_dim: int = 64
  edge_chunk: int = 1 << 23
  bert: dict[str, int] | None = None  # overrides of bert4rec_ml1m's sequence section
  bert_batch: int = 256  # experiments/bert4rec_ml1m.py
  autorec_hidden: int = 500
  ae_layers: tuple[int, ...] = (512, 256, 64)  # experiments/deep_ae_netflix.py
  ae_batch: int = 128  # autorec_ml1m and deep_ae_netflix
  rank_batch: int = 4096
  host_rank_users: int = 4096
  k: int = 100


FULL = Sizes()
TINY = Sizes(n_users=500, n_items=200, n_ratings=20_000, repeats=1, steps=2, pair_batch=1024,
             neumf_gmf=8, neumf_mlp=(16, 8), als_factors=8, graph_dim=16, edge_chunk=4096,
             bert=dict(max_len=16, hidden=16, layers=1, heads=1), bert_batch=32,
             autorec_hidden=16, ae_layers=(16, 8), ae_batch=16, rank_batch=128,
             host_rank_users=500)


def sizes_from_flags() -> Sizes:
  base = TINY if _TINY.value else FULL
  over = {name: flag.value for name, flag in (
      ("n_users", _USERS), ("n_items", _ITEMS), ("n_ratings", _RATINGS), ("repeats", _REPEATS),
      ("steps", _STEPS), ("edge_chunk", _EDGE_CHUNK), ("rank_batch", _RANK_BATCH),
      ("host_rank_users", _HOST_RANK_USERS)) if flag.value is not None}
  return dataclasses.replace(base, **over)


@dataclasses.dataclass
class Context:
  """What the cases share: sizes, the data and split configs, the opened store and split."""

  sizes: Sizes
  data: Any  # ml_collections.ConfigDict of config.data
  split_cfg: Any
  store: Any
  split: Any
  train_rows: Any
  platform: str
  bandwidth: float  # bytes/s for the floors


# ----------------------------------------------------------------------------- helpers
def _median(values: list[float]) -> float:
  import numpy as np
  return float(np.median(values))


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
  """(first call seconds, seconds of `repeats` further calls, last result); each call is
  waited for with block_until_ready, so asynchronous dispatch is inside the timing."""
  import jax
  t = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - t
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return first, times, out


def row(case: str, label: str, value: float, unit: str, *, rate: float | None = None,
        rate_unit: str = "", compile_s: float | None = None, floor_bytes: float | None = None,
        ctx: Context | None = None, target_s: float | None = None, **details) -> dict:
  """One table row: the figure, its rate, compile time, the issue's target and the floor."""
  floor_s = floor_bytes / ctx.bandwidth if floor_bytes and ctx else None
  return {"case": case, "label": label, "status": "ok", "value": value, "unit": unit,
          "rate": rate, "rate_unit": rate_unit,
          "compile_s": None if compile_s is None else max(compile_s, 0.0),
          "target_s": target_s, "target_met": None if target_s is None else value <= target_s,
          "floor_bytes": floor_bytes, "floor_s": floor_s,
          "achieved_over_floor": floor_s / value if floor_s and value else None,
          "details": details}


def base_config(experiment: str, ctx: Context):
  """An experiment's config on the suite's store and split (its model and batch kept)."""
  import copy
  config = importlib.import_module(f"experiments.{experiment}").get_config()
  config.data = copy.deepcopy(ctx.data)
  config.split = copy.deepcopy(ctx.split_cfg)
  config.eda = False
  return config


def family_setup(config):
  """family(name).setup(resolved config), timed."""
  from netrec_jax.train import family as family_lib
  config = family_lib.resolve(config)
  fam = family_lib.family(config.model.name)
  t = time.perf_counter()
  setup = fam.setup(config)
  return fam, setup, time.perf_counter() - t


# -------------------------------------------------------------------- 1. pair epochs
def pair_config(model: str, ctx: Context):
  config = base_config("ncf_gpu", ctx)
  config.model.name = model
  config.train.batch_size = ctx.sizes.pair_batch
  config.train.epochs = 1 + ctx.sizes.repeats
  if model == "neumf":
    config.model.gmf_dim = ctx.sizes.neumf_gmf
    config.model.mlp_layers = ctx.sizes.neumf_mlp
  return config


def case_pair(model: str, ctx: Context) -> list[dict]:
  """One ncf_gpu epoch (train.input_pipeline=device) through the pair family's epoch_runner."""
  import jax
  import numpy as np
  fam, setup, setup_s = family_setup(pair_config(model, ctx))
  tree = fam.init(setup)
  runner = fam.epoch_runner(setup)
  state = {"tree": tree, "epoch": 0}

  def epoch():
    state["tree"], losses, seen = runner(state["tree"], state["epoch"])
    state["epoch"] += 1
    state["seen"] = seen
    return state["tree"], losses

  first, times, (_, losses) = timed(epoch, ctx.sizes.repeats)
  loss = float(np.mean(jax.device_get(losses)))
  n_train = len(setup.rows["train"])
  order_s = train_benchmark.time_permutation(n_train, setup.mesh, repeats=1)
  seconds = _median(times)
  seen = state["seen"]
  cfg = setup.config
  per_rating = train_benchmark.floor_bytes_per_rating(setup.specs, cfg.optimizer.sparse)
  label = (f"{model} epoch, device-resident, batch {cfg.train.batch_size:,}, "
           f"{cfg.optimizer.sparse}, {cfg.model.compute_dtype} (its epoch_order alone: "
           f"{order_s:.3g} s)")
  return [row(model, label, seconds, "s/epoch", rate=seen / seconds, rate_unit="ratings/s",
              compile_s=first - seconds, floor_bytes=per_rating * seen, ctx=ctx,
              target_s=TARGETS_S[model], ratings_per_epoch=seen, n_train=n_train,
              epoch_seconds=times, first_epoch_s=first, setup_s=setup_s,
              epoch_order_s=order_s, last_epoch_mean_loss=loss,
              loss_finite=bool(np.isfinite(loss)), floor_bytes_per_rating=per_rating)]


# ------------------------------------------------------------------------- 2. ALS
def case_als(kind: str, ctx: Context) -> list[dict]:
  """JaxALS (WR-ALS, 3 CG steps) or JaxIALS at compare's settings; fit with 1 + repeats
  iterations, the first of them discarded as warm-up (jit compile is timed by the fit)."""
  from netrec_jax.baselines.jax_als import JaxALS, JaxIALS
  s = ctx.sizes
  chunk = _ALS_CHUNK.value or (1 << 14 if ctx.platform == "cpu" else 1 << 20)
  iterations = 1 + s.repeats
  if kind == "als":  # compare's jax_als: lambda 0.1; CG 3 steps
    model = JaxALS(factors=s.als_factors, reg=0.1, iterations=iterations, cg_steps=3,
                   chunk=chunk)
    label = f"JaxALS (WR-ALS) iteration, {s.als_factors} factors, CG 3, chunk {chunk:,}"
  else:  # compare's implicit_als settings, implicit's confidence c = alpha r
    model = JaxIALS(factors=s.als_factors, iterations=iterations, regularization=0.05,
                    alpha=2.0, confidence="linear", cg_steps=3, chunk=chunk)
    label = f"JaxIALS iteration, {s.als_factors} factors, CG 3, chunk {chunk:,}"
  t = time.perf_counter()
  model.fit(ctx.store, ctx.train_rows)
  fit_s = time.perf_counter() - t
  steady = model.iteration_seconds[1:] or model.iteration_seconds
  seconds = _median(steady)
  n = len(ctx.train_rows)
  # Per rating and side: its index, a and b (12 B) and one gathered factor row (4k B).
  floor = 2 * n * (12 + 4 * s.als_factors)
  return [row(kind, label, seconds, "s/iteration", rate=n / seconds, rate_unit="ratings/s",
              compile_s=model.compile_seconds, floor_bytes=floor, ctx=ctx,
              target_s=TARGETS_S[kind], iteration_seconds=list(model.iteration_seconds),
              setup_s=model.setup_seconds, fit_s=fit_s, chunk=chunk, n_train=n)]


# -------------------------------------------------------------------- 3. LightGCN
def case_lightgcn(ctx: Context) -> list[dict]:
  """graph.propagate (LightGCN's layer, both directions) over the split's training edges, as
  the graph family builds them (build_edges, edge_sharding), forward and with gradient."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P
  from netrec_jax import configs, sharding as sharding_lib
  from netrec_jax.models import graph as graph_lib
  s, store = ctx.sizes, ctx.store
  mesh = sharding_lib.make_mesh(configs.base_config().mesh)
  t = time.perf_counter()
  users = np.take(store.user, ctx.train_rows).astype(np.int64)
  items = np.take(store.item, ctx.train_rows).astype(np.int64)
  host = graph_lib.build_edges(users, items, store.n_users, store.n_items,
                               n_shards=mesh.shape[sharding_lib.DATA], edge_chunk=s.edge_chunk)
  del users, items
  host.pop("level")  # LightGCN's layer does not read it
  edges = jax.device_put(host, graph_lib.edge_sharding(mesh))
  build_s = time.perf_counter() - t
  n_chunks = int(host["user"].shape[0])
  del host
  replicated = NamedSharding(mesh, P())
  rng = np.random.default_rng(1)
  x_u = jax.device_put(rng.normal(size=(store.n_users, s.graph_dim)).astype(np.float32),
                       replicated)
  x_i = jax.device_put(rng.normal(size=(store.n_items, s.graph_dim)).astype(np.float32),
                       replicated)
  layer = jax.jit(graph_lib.propagate,
                  in_shardings=(graph_lib.edge_sharding(mesh), replicated, replicated),
                  out_shardings=(replicated, replicated))

  def loss(x_u, x_i, edges):
    to_u, to_i = graph_lib.propagate(edges, x_u, x_i)
    return jnp.sum(to_u * to_u) + jnp.sum(to_i * to_i)

  grad = jax.jit(jax.grad(loss, argnums=(0, 1)),
                 in_shardings=(replicated, replicated, graph_lib.edge_sharding(mesh)),
                 out_shardings=(replicated, replicated))
  n = len(ctx.train_rows)
  # BUILD_NOTES (graph models): per edge and direction (src, dst, weight) 12 B, the source row
  # read, the destination row read and written; the gradient is the transposed layer again.
  floor = 2 * n * (12 + 3 * 4 * s.graph_dim)
  first, times, _ = timed(lambda: layer(edges, x_u, x_i), s.repeats)
  first_g, times_g, _ = timed(lambda: grad(x_u, x_i, edges), s.repeats)
  common = dict(edges=n, edge_chunks=n_chunks, graph_build_s=build_s, dim=s.graph_dim)
  fwd, bwd = _median(times), _median(times_g)
  return [row("lightgcn", f"LightGCN layer forward, {n_chunks} chunk(s), dim {s.graph_dim}", fwd,
              "s/layer", rate=n / fwd, rate_unit="edges/s", compile_s=first - fwd,
              floor_bytes=floor, ctx=ctx, layer_seconds=times, **common),
          row("lightgcn", "LightGCN layer with gradient", bwd, "s/layer", rate=n / bwd,
              rate_unit="edges/s", compile_s=first_g - bwd, floor_bytes=2 * floor, ctx=ctx,
              layer_seconds=times_g, **common)]


# ------------------------------------------------- 4. BERT4Rec and the autoencoders
def time_steps(fam, setup, n_steps: int) -> dict[str, Any]:
  """The family's jitted step over its first n_steps host batches, placed beforehand: one
  pass compiles every batch shape (warm-up), a second pass over the same batches is timed."""
  import itertools
  import jax
  import numpy as np
  from netrec_jax import sharding as sharding_lib
  from netrec_jax.train.loop import serialize_steps
  serialize = serialize_steps()  # several CPU devices: wait for each step, as the loop does
  tree = fam.init(setup)
  step = fam.make_step(setup)
  t = time.perf_counter()
  host = list(itertools.islice(iter(fam.batches(setup, 0)), n_steps))
  build_s = (time.perf_counter() - t) / max(len(host), 1)
  sharding = sharding_lib.batch_sharding(setup.mesh)
  placed = [sharding_lib.put_batch(b, sharding) for b in host]
  key0 = jax.random.PRNGKey(setup.config.seed)
  keys = [jax.random.fold_in(key0, k) for k in range(len(placed))]
  state = {"tree": tree}

  def one_pass():
    losses = []
    for batch, key in zip(placed, keys):
      state["tree"], metrics = step(state["tree"], batch, key)
      if serialize:
        jax.block_until_ready(metrics["loss"])
      losses.append(metrics["loss"])
    return state["tree"], losses

  first, times, (_, losses) = timed(one_pass, 1)
  loss = float(np.mean(jax.device_get(losses)))
  return {"steps": len(placed), "pass_s": times[0], "first_pass_s": first,
          "host_batch_build_s_per_step": build_s, "mean_loss": loss,
          "loss_finite": bool(np.isfinite(loss)), "batches": host}


def case_bert4rec(ctx: Context) -> list[dict]:
  config = base_config("bert4rec_ml1m", ctx)
  if ctx.sizes.bert:
    config.sequence.update(ctx.sizes.bert)
  config.train.batch_size = ctx.sizes.bert_batch
  fam, setup, setup_s = family_setup(config)
  r = time_steps(fam, setup, ctx.sizes.steps)
  seq = setup.config.sequence
  per_step = r["pass_s"] / r["steps"]
  rows_per_step = setup.batch_users
  return [row("bert4rec", f"BERT4Rec step, batch {rows_per_step}, max_len {seq.max_len}, "
              f"hidden {seq.hidden}, {seq.layers} layers", 1.0 / per_step, "steps/s",
              rate=rows_per_step / per_step, rate_unit="users/s",
              compile_s=r["first_pass_s"] - r["pass_s"], setup_s=setup_s,
              **{k: v for k, v in r.items() if k != "batches"})]


def case_autoencoder(model: str, ctx: Context) -> list[dict]:
  import numpy as np
  s = ctx.sizes
  config = base_config("autorec_ml1m" if model == "autorec" else "deep_ae_netflix", ctx)
  config.train.batch_size = s.ae_batch
  if model == "autorec":
    config.autoencoder.autorec_hidden = s.autorec_hidden
    what = f"I-AutoRec step (item rows), batch {s.ae_batch}, hidden {s.autorec_hidden}"
  else:
    config.autoencoder.layers = s.ae_layers
    what = (f"deep AE step (user rows), batch {s.ae_batch}, "
            f"{'-'.join(map(str, s.ae_layers))}")
  fam, setup, setup_s = family_setup(config)
  r = time_steps(fam, setup, s.steps)
  ratings = float(sum(np.asarray(b["mask"]).sum() for b in r["batches"]))
  cells = int(sum(np.asarray(b["mask"]).size for b in r["batches"]))
  per_step = r["pass_s"] / r["steps"]
  return [row(model, what, 1.0 / per_step, "steps/s", rate=ratings / r["pass_s"],
              rate_unit="ratings/s", compile_s=r["first_pass_s"] - r["pass_s"],
              setup_s=setup_s, padded_cells=cells, ratings_in_batches=ratings,
              **{k: v for k, v in r.items() if k != "batches"})]


# ---------------------------------------------------------------------- 5. ranking
def make_device_ranker(user_vectors, item_vectors, item_bias, indptr, indices, batch: int,
                       k: int):
  """rank(lo) -> int32 [batch, k]: users lo.. scored against every item (f32, HIGHEST
  precision, as the host scores), their training items set to -inf, then lax.top_k.

  The training items of a batch are a contiguous slice of the CSR; it is read with a fixed
  width (the most entries of any batch) so one program serves every batch."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  n_users, dim = user_vectors.shape
  n_batches = -(-n_users // batch)
  lows = np.arange(n_batches) * batch
  highs = np.minimum(lows + batch, n_users)
  cap = max(1024, -(-int((indptr[highs] - indptr[lows]).max()) // 1024) * 1024)
  if indptr[-1] >= 2**31:
    raise ValueError("more than 2^31 training entries: int32 offsets do not fit")
  users = np.zeros((n_batches * batch, dim), np.float32)
  users[:n_users] = user_vectors
  arrays = jax.device_put((users, np.asarray(item_vectors, np.float32),
                           np.asarray(item_bias, np.float32),
                           np.concatenate([indptr, np.full(batch, indptr[-1])]).astype(np.int32),
                           np.asarray(indices if len(indices) else [0], np.int32)))

  @jax.jit
  def rank(lo, users, items, bias, indptr, indices):
    u = jax.lax.dynamic_slice_in_dim(users, lo, batch)
    scores = jnp.dot(u, items.T, precision=jax.lax.Precision.HIGHEST) + bias[None, :]
    bounds = jax.lax.dynamic_slice_in_dim(indptr, lo, batch + 1)
    pos = bounds[0] + jnp.arange(cap, dtype=jnp.int32)
    rows = jnp.where(pos < bounds[-1], jnp.searchsorted(bounds, pos, side="right") - 1, batch)
    cols = indices[jnp.minimum(pos, indices.shape[0] - 1)]
    scores = scores.at[rows, cols].set(-jnp.inf, mode="drop")
    return jax.lax.top_k(scores, k)[1]

  def rank_all():
    out = [rank(np.int32(lo), *arrays) for lo in lows]
    return np.concatenate(jax.device_get(out))[:n_users]

  return rank_all, {"batches": n_batches, "exclusion_width": cap}


def case_ranking(ctx: Context) -> list[dict]:
  """Every user's top-k of the full catalog, training items excluded, from an MF (float32) of
  the pair family: on the device, and through the evaluator's host path on a sample."""
  import numpy as np
  from netrec_jax.eval import evaluator, metrics as metrics_lib
  s = ctx.sizes
  config = pair_config("mf", ctx)
  config.model.compute_dtype = "float32"  # the host path's scores, compared below
  fam, setup, setup_s = family_setup(config)
  tree = fam.init(setup)
  rec = fam.recommender(setup, tree, "training", {})
  t = time.perf_counter()
  data = evaluator.prepare(ctx.store, ctx.split)
  prepare_s = time.perf_counter() - t
  train = data.train_matrix
  bias = rec.biases()["item"] if "item_bias" in setup.specs else np.zeros(ctx.store.n_items)
  user_vectors = rec.user_vectors()
  rank_all, info = make_device_ranker(user_vectors, rec.item_vectors(), bias,
                                      train.indptr, train.indices, s.rank_batch, s.k)
  first, times, topk = timed(rank_all, s.repeats)
  seconds = _median(times)
  n_users = ctx.store.n_users
  # The evaluator's path (evaluator.evaluate's ranking loop without the metrics).
  sample = np.arange(min(s.host_rank_users, n_users))
  t = time.perf_counter()
  host = []
  for lo in range(0, len(sample), 256):  # evaluator.evaluate's user_batch
    batch = sample[lo:lo + 256]
    host.append(metrics_lib.topk_from_scores(rec.score_items(batch), train[batch], s.k))
  host_s = time.perf_counter() - t
  host = np.concatenate(host)
  overlap = float(np.mean([len(np.intersect1d(a, b)) / s.k for a, b in
                           zip(host, topk[sample])]))
  # Floor: the [users, items] float32 scores written and read once (XLA materialises them),
  # the user and item vectors read, the training items read, the top-k written.
  dim = user_vectors.shape[1]
  floor = (2 * 4 * n_users * ctx.store.n_items + 4 * dim * (n_users + ctx.store.n_items)
           + 4 * train.nnz + 4 * n_users * s.k)
  host_rate = len(sample) / host_s
  return [row("ranking", f"top-{s.k} of {ctx.store.n_items:,} items for all {n_users:,} users, "
              f"training items excluded (device, batch {s.rank_batch})", seconds, "s",
              rate=n_users / seconds, rate_unit="users/s", compile_s=first - seconds,
              floor_bytes=floor, ctx=ctx, rank_seconds=times, setup_s=setup_s,
              prepare_s=prepare_s, dim=dim, overlap_with_host_topk=overlap, **info),
          row("ranking", f"the evaluator's host path (score_items + topk_from_scores), "
              f"{len(sample):,} users, extrapolated to all", n_users / host_rate, "s",
              rate=host_rate, rate_unit="users/s", sample_users=len(sample),
              sample_seconds=host_s)]


CASE_FUNCS: dict[str, Callable[[Context], list[dict]]] = {
    "mf": lambda ctx: case_pair("mf", ctx), "neumf": lambda ctx: case_pair("neumf", ctx),
    "als": lambda ctx: case_als("als", ctx), "ials": lambda ctx: case_als("ials", ctx),
    "lightgcn": case_lightgcn, "bert4rec": case_bert4rec,
    "autorec": lambda ctx: case_autoencoder("autorec", ctx),
    "deep_ae": lambda ctx: case_autoencoder("deep_ae", ctx), "ranking": case_ranking,
}


# ------------------------------------------------------------------- machine, store
def machine_info() -> dict[str, Any]:
  import jax
  import jaxlib
  devices = jax.devices()
  return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
          "devices": [str(d) for d in devices], "n_devices": len(devices),
          "jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
          "python": platform_lib.python_version(), "host": platform_lib.node(),
          "cpu_count": os.cpu_count()}


def device_copy_bandwidth(size_mb: int) -> float:
  """Bytes/s of a jitted scaled copy (2x) of a size_mb float32 array, read + write counted."""
  import jax
  import jax.numpy as jnp
  x = jnp.ones(size_mb * 2**20 // 4, jnp.float32)
  copy = jax.jit(lambda a: a * 2.0)
  first, times, _ = timed(lambda: copy(x), 5)
  return 2 * x.size * 4 / min(times)


def bandwidth_for_floors(machine: dict[str, Any], tiny: bool) -> tuple[float, str, float]:
  """(bytes/s used by the floors, where it comes from, the copy measured here)."""
  if machine["platform"] == "cpu":
    measured = train_benchmark.measure_bandwidth(64 if tiny else 256,
                                                 os.cpu_count() or 1) * 1e9
  else:
    measured = device_copy_bandwidth(256 if tiny else 2048)
  if _BANDWIDTH.value > 0:
    return _BANDWIDTH.value * 1e9, "--bandwidth_gb_s", measured
  for name, value in NOMINAL_BANDWIDTH.items():
    if machine["platform"] == "gpu" and name in machine["device_kind"]:
      return value, f"{name} datasheet", measured
  return measured, "measured copy on this machine", measured


def data_config(sizes: Sizes, store_root: str):
  """experiments/synthetic_netflix_scale's data section at `sizes`, no user filter."""
  from experiments import synthetic_netflix_scale
  data = synthetic_netflix_scale.get_config().data
  data.synthetic.update(n_users=sizes.n_users, n_items=sizes.n_items,
                        n_ratings=sizes.n_ratings, rank=16, seed=0)
  data.min_user_ratings = 0
  data.store_root = store_root
  return data


def split_config():
  """experiments/ncf_gpu's split: random, 1% test, 1% validation."""
  from experiments import ncf_gpu
  return ncf_gpu.get_config().split


# ----------------------------------------------------------------------------- report
def _fmt(x: float | None, unit: str = "") -> str:
  if x is None:
    return "-"
  if unit.endswith("/s") and not unit.startswith("s"):
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
      if abs(x) >= scale:
        return f"{x / scale:.2f}{suffix} {unit}"
    return f"{x:.1f} {unit}"
  if abs(x) >= 100:
    return f"{x:,.0f} {unit}".strip()
  return f"{x:.3g} {unit}".strip()


def markdown(result: dict[str, Any]) -> str:
  m, st = result["machine"], result.get("store") or {}
  lines = [f"# Device suite: {m['n_devices']} x {m['device_kind']} ({m['platform']}), "
           f"jax {m['jax_version']}", ""]
  if m["platform"] != "gpu" and not result["tiny"]:
    lines += [f"**Not a GPU** (platform {m['platform']}): these figures are not the GPU's, and "
              "the targets (one H100/H200) do not apply.", ""]
  if result["tiny"]:
    lines += ["`--tiny`: toy sizes, to keep the code paths running; the figures mean nothing.",
              ""]
  if st:
    lines.append(f"Store: {st['n_users']:,} users x {st['n_items']:,} items, "
                 f"{st['n_ratings']:,} ratings ({st['n_train']:,} training, split "
                 f"{st['split']}), built in {st['build_s']:.0f} s. Floors at "
                 f"{result['bandwidth_bytes_per_s'] / 1e9:,.0f} GB/s "
                 f"({result['bandwidth_source']}; a copy measured "
                 f"{result['measured_copy_bytes_per_s'] / 1e9:,.0f} GB/s).")
  lines += [f"Command: `{result['command']}`; {result['total_s']:.0f} s in all.", "",
            "| case | what | figure | rate | compile s | target | floor | achieved/floor "
            "| status |", "|---|---|---:|---:|---:|---|---:|---:|---|"]
  for r in result["rows"]:
    if r["status"] != "ok":
      lines.append(f"| {r['case']} | {r.get('label', '')} | - | - | - | - | - | - | "
                   f"{r['status']}: {r.get('error', '')} |".replace("\n", " "))
      continue
    target = "-"
    if r["target_s"] is not None:
      target = f"<= {r['target_s']:g} s: {'met' if r['target_met'] else 'not met'}"
    lines.append(
        f"| {r['case']} | {r['label']} | {_fmt(r['value'], r['unit'])} "
        f"| {_fmt(r['rate'], r['rate_unit'])} | {_fmt(r['compile_s'])} | {target} "
        f"| {_fmt(r['floor_s'], 's')} | "
        f"{'-' if r['achieved_over_floor'] is None else format(r['achieved_over_floor'], '.3f')}"
        " | ok |")
  lines += ["", "compile s: the first (warm-up) call less a timed one: jit compile, plus what a "
            "case places on first use (mf, neumf: the training columns); ALS: the fit's own "
            "compile_seconds. achieved/floor: floor seconds over measured seconds.", "",
            "Case wall seconds (setup included): " + ", ".join(
                f"{name} {c['seconds']:.0f}" + ("" if c["status"] == "ok" else f" ({c['status']})")
                for name, c in result["cases"].items()) + "."]
  return "\n".join(lines) + "\n"


def write(out: Path, result: dict[str, Any]) -> None:
  (out / "device_suite.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
  (out / "device_suite.md").write_text(markdown(result))


# ------------------------------------------------------------------------------- main
def main(argv) -> None:
  del argv
  t0 = time.perf_counter()
  unknown = [c for c in _CASES.value if c not in CASES]
  if unknown:
    raise app.UsageError(f"--cases: unknown {unknown}; expected some of {list(CASES)}")
  sizes = sizes_from_flags()
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  from netrec_jax.progress import quiet_library_logs
  quiet_library_logs()

  def say(text: str) -> None:
    print(f"[{time.perf_counter() - t0:7.1f}s] {text}", flush=True)

  machine = machine_info()
  say(f"jax {machine['jax_version']} on {machine['n_devices']} x {machine['device_kind']} "
      f"({machine['platform']}); cases {','.join(_CASES.value)}")
  if machine["platform"] != "gpu" and not _TINY.value:
    say(f"WARNING: platform is {machine['platform']}, not gpu: the figures are not a GPU's")
  bandwidth, source, measured = bandwidth_for_floors(machine, _TINY.value)
  say(f"floors at {bandwidth / 1e9:,.0f} GB/s ({source}); copy measured {measured / 1e9:,.0f} "
      "GB/s")
  result: dict[str, Any] = {
      "suite": "benchmarks/device_suite.py", "command": " ".join(["python"] + sys.argv),
      "tiny": _TINY.value, "machine": machine, "sizes": dataclasses.asdict(sizes),
      "bandwidth_bytes_per_s": bandwidth, "bandwidth_source": source,
      "measured_copy_bytes_per_s": measured, "budget_s": _BUDGET.value, "store": None,
      "rows": [], "cases": {}, "total_s": 0.0}
  store_root = _STORE_ROOT.value or tempfile.mkdtemp(prefix="device_suite_store_")
  try:
    import numpy as np
    from netrec_jax.data import datasets
    data, split_cfg = data_config(sizes, store_root), split_config()
    t = time.perf_counter()
    say(f"store: {sizes.n_users:,} x {sizes.n_items:,}, {sizes.n_ratings:,} ratings into "
        f"{store_root}")
    store = datasets.open_or_build(data)
    split = datasets.make_split(store, split_cfg)
    train_rows = split.rows("train")
    build_s = time.perf_counter() - t
    result["store"] = {"path": str(store.path), "n_users": store.n_users,
                       "n_items": store.n_items, "n_ratings": store.n_ratings,
                       "n_train": int(len(train_rows)), "split": split.name,
                       "build_s": build_s, "fingerprint": store.fingerprint}
    say(f"store ready: {store.n_ratings:,} ratings, {len(train_rows):,} training "
        f"({build_s:.1f} s)")
    ctx = Context(sizes, data, split_cfg, store, split, np.asarray(train_rows),
                  machine["platform"], bandwidth)
    for name in _CASES.value:
      elapsed = time.perf_counter() - t0
      if elapsed > _BUDGET.value:
        say(f"{name}: skipped (budget {_BUDGET.value:.0f} s passed)")
        result["rows"].append({"case": name, "label": "", "status": "skipped",
                               "error": f"budget {_BUDGET.value:.0f} s passed at "
                                        f"{elapsed:.0f} s"})
        result["cases"][name] = {"status": "skipped", "seconds": 0.0}
        continue
      say(f"{name}: start")
      t = time.perf_counter()
      try:
        rows = CASE_FUNCS[name](ctx)
        status = "ok"
      except Exception as e:  # one failing case (out of memory, say) must not stop the suite
        traceback.print_exc()
        status = "error"
        rows = [{"case": name, "label": "", "status": "error",
                 "error": f"{type(e).__name__}: {str(e)[:300]}"}]
      seconds = time.perf_counter() - t
      gc.collect()
      result["rows"] += rows
      result["cases"][name] = {"status": status, "seconds": seconds}
      result["total_s"] = time.perf_counter() - t0
      write(out, result)
      for r in rows:
        if r["status"] == "ok":
          say(f"{name}: {_fmt(r['value'], r['unit'])}, {_fmt(r['rate'], r['rate_unit'])} "
              f"({r['label']}; case {seconds:.1f} s)")
        else:
          say(f"{name}: {r['status']}: {r['error']}")
  except Exception as e:  # the store failed: record it and write what there is
    traceback.print_exc()
    result["rows"].append({"case": "store", "label": "", "status": "error",
                           "error": f"{type(e).__name__}: {str(e)[:300]}"})
  finally:
    if not _STORE_ROOT.value:
      shutil.rmtree(store_root, ignore_errors=True)
  result["total_s"] = time.perf_counter() - t0
  write(out, result)
  print()
  print(markdown(result))
  say(f"wrote {out / 'device_suite.json'} and {out / 'device_suite.md'}")


if __name__ == "__main__":
  app.run(main)

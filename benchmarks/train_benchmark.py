"""Training-throughput benchmark: ratings/s of the train step, against a memory-traffic floor.

  python benchmarks/train_benchmark.py --out=bench_out/train
  python benchmarks/train_benchmark.py --n_ratings=300000 --batch_sizes=8192,65536  # quick

For each model (--models) x batch size (--batch_sizes) x input pipeline (--pipelines), on
Netflix-scale tables (480,189 users x 17,770 items; mf and hybrid 64 wide, neumf 4 x 32):
  device   the training columns put on the device once, one jitted device-resident epoch
           (input_pipeline.make_device_epoch: permute + scan); one epoch warms up (compile),
           then --epochs epochs are timed, block_until_ready at the end;
  host     input_pipeline.HostBatches over the memmapped store feeding the jitted train_step,
           as the loop does (NaN check every check_every_steps, block_until_ready each step
           when several CPU devices are in use); one warm-up epoch, then --epochs timed.
The model, its state and the step are built as the pair family builds them, from
configs.base_config() (sparse optimizer adagrad, dense adam). Then, for mf at --compare_batch:
the sparse optimizers sgd / adagrad / lazy_adam; and at --dense_batch_sizes a dense baseline
(the same MF with a plain optax.adam on the whole tables: dense gradient, every row updated
every step), whose cost per step hardly depends on the batch.

The data is a synthetic store (netrec_jax.data.synthetic, Netflix-like skew) built into --out
once and reused; the training rows are a seeded random --n_ratings subset of it (at Netflix scale
the generator gives every user at least 3 ratings, so the store has at least 1.44M ratings).

Floor: bytes a step must move per rating (each touched table row read and written back, its
optimizer slots likewise, 12 B of input; for the dense baseline every table element's param,
grad, m and v each step, spread over the batch), divided by a memory bandwidth measured here
with a large np.copyto on all cores (read + write bytes; the 1-thread figure is printed too).
achieved/floor = ratings/s over the floor's ratings/s. The floor ignores caches (the 4.5 MB
item table mostly stays in cache), the merging of duplicate rows, and FLOPs (the towers of
neumf and hybrid are compute).

One device by default: on CPU that is the fastest (XLA already uses every core for one device);
--devices=N fakes N CPU devices, which is only useful for testing the sharded code paths.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_OUT = flags.DEFINE_string("out", "bench_out/train", "Folder for the store and the result JSON.")
_MODELS = flags.DEFINE_list("models", ["mf", "neumf", "hybrid"], "Models to time.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["8192", "32768", "65536", "262144"],
                             "Batch sizes to time.")
_PIPELINES = flags.DEFINE_list("pipelines", ["device", "host"], "Input pipelines: device, host.")
_N = flags.DEFINE_integer("n_ratings", 2_000_000, "Training ratings per epoch.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Timed epochs per case (after one warm-up epoch).")
_USERS = flags.DEFINE_integer("n_users", 480_189, "Users in the synthetic store (Netflix).")
_ITEMS = flags.DEFINE_integer("n_items", 17_770, "Items in the synthetic store (Netflix).")
_COMPARE_BATCH = flags.DEFINE_integer("compare_batch", 65536,
                                      "Batch size of the optimizer and dense comparison (0: off).")
_OPTIMIZERS = flags.DEFINE_list("compare_optimizers", ["sgd", "adagrad", "lazy_adam"],
                                "Sparse optimizers compared for mf.")
_DENSE = flags.DEFINE_list("dense_batch_sizes", ["8192", "65536"],
                           "Batch sizes of the dense baseline, mf with optax.adam on whole "
                           "tables (empty: none).")
_DEDUPS = flags.DEFINE_list(
    "dedups", ["auto"], "How duplicate rows of a batch are found before adagrad / lazy Adam "
    "(train/sparse.py): auto, mark (mark + cumsum over the table, no sort) or sort "
    "(jnp.unique); several run every sparse case once each, in the same run.")
_DEVICES = flags.DEFINE_integer("devices", 1, "CPU devices in the mesh (>1 fakes devices).")
_BANDWIDTH_MB = flags.DEFINE_integer("bandwidth_mb", 1024, "Array size of the np.copyto test.")

_REALISTIC = 100_000_000  # "s per epoch" is extrapolated to a 100M-rating (Netflix) epoch


# ------------------------------------------------------------------------- memory bandwidth
def measure_bandwidth(size_mb: int, threads: int = 1, repeats: int = 5) -> float:
  """GB/s of a large np.copyto split over `threads` threads (numpy drops the GIL while it
  copies), counting bytes read plus bytes written, as STREAM's 'copy' does."""
  import threading
  import numpy as np
  n = size_mb * 2**20 // 4
  src = np.ones(n, np.float32)
  dst = np.zeros(n, np.float32)  # touched, so page faults stay out of the timing
  bounds = [(k * n // threads, (k + 1) * n // threads) for k in range(threads)]
  best = float("inf")
  for _ in range(repeats):
    workers = [threading.Thread(target=np.copyto, args=(dst[lo:hi], src[lo:hi]))
               for lo, hi in bounds]
    t = time.perf_counter()
    for w in workers:
      w.start()
    for w in workers:
      w.join()
    best = min(best, time.perf_counter() - t)
  return 2 * n * 4 / best / 1e9


# ---------------------------------------------------------------------------------- floors
_INPUT_BYTES = 12  # user int32 + item int32 + rating float32


def floor_bytes_per_rating(specs, sparse_kind: str, *, dense_elements: int = 0,
                           batch_size: int = 1) -> float:
  """Bytes a step must move per rating (4-byte floats), see the module docstring."""
  row_bytes = sum(spec.dim for spec in specs.values()) * 4  # one row of every table
  if sparse_kind == "dense_adam":
    # Gather the rows for the forward, scatter-add their gradient; then per step every element:
    # grad written and read, param, m, v read and written (32 B).
    return _INPUT_BYTES + 3 * row_bytes + 32 * dense_elements / batch_size
  total = _INPUT_BYTES + 2 * row_bytes  # read each touched row, write it back
  if sparse_kind == "adagrad":
    total += 2 * 4 * len(specs)  # one float accumulator per row, read and written
  elif sparse_kind == "lazy_adam":
    total += 2 * 2 * row_bytes  # m and v rows, read and written
  return total


# -------------------------------------------------------------------------------- the cases
def make_config(model: str, batch_size: int, sparse_kind: str, pipeline: str, epochs: int):
  from netrec_jax import configs
  config = configs.base_config()
  config.model.name = model
  config.train.batch_size = batch_size
  config.train.input_pipeline = pipeline
  config.train.epochs = epochs
  if sparse_kind != "dense_adam":
    config.optimizer.sparse = sparse_kind
  from netrec_jax.train import family
  return family.resolve(config)  # the model's defaults for the fields left unset


def build_sparse_case(config, store, n_train: int, global_mean: float, mesh,
                      dedup: str = "auto"):
  """model, specs, init, shardings and train_step, as the pair family's setup / make_step."""
  import jax
  from netrec_jax import models
  from netrec_jax.train import optim, state as state_lib, steps

  model = models.build_model(config.model, global_mean)
  specs = model.table_specs()
  sizes = state_lib.table_sizes(specs, store.n_users, store.n_items, mesh)
  steps_per_epoch = (n_train // config.train.batch_size if config.train.input_pipeline == "device"
                     else -(-n_train // config.train.batch_size))
  total_steps = steps_per_epoch * config.train.epochs
  dense_tx = optim.dense_optimizer(config.optimizer, total_steps)
  init = state_lib.state_initializer(model, specs, sizes, dense_tx, config.optimizer.sparse,
                                     config.seed, 0)
  shardings = state_lib.state_shardings(jax.eval_shape(init), mesh)
  sparse_lr = optim.learning_rate_schedule(config.optimizer.sparse_lr, config.optimizer,
                                             total_steps)
  train_step = steps.make_train_step(
      model, specs, task=config.task, dense_tx=dense_tx, sparse_kind=config.optimizer.sparse,
      sparse_lr=sparse_lr, sparse_l2=config.optimizer.embed_l2, sparse_hyper={"dedup": dedup},
      n_items=store.n_items, num_negatives=config.train.num_negatives)
  return specs, init, shardings, train_step


def build_dense_case(config, store, global_mean: float, mesh):
  """The same MF, but its tables are ordinary params under optax.adam: a dense update."""
  import jax
  import jax.numpy as jnp
  import optax
  from jax.sharding import NamedSharding, PartitionSpec as P
  from netrec_jax import models
  from netrec_jax import sharding as sharding_lib
  from netrec_jax.models.base import USER, init_table
  from netrec_jax.train import state as state_lib

  model = models.build_model(config.model, global_mean)
  specs = model.table_specs()
  sizes = state_lib.table_sizes(specs, store.n_users, store.n_items, mesh)
  tx = optax.adam(config.optimizer.lr)

  def init():
    key = jax.random.PRNGKey(config.seed)
    tables = {name: init_table(jax.random.fold_in(key, k), sizes[name], spec)
              for k, (name, spec) in enumerate(sorted(specs.items()))}
    return {"step": jnp.zeros((), jnp.int32), "tables": tables, "opt_state": tx.init(tables)}

  def train_step(state, batch, aux):
    del aux
    weight = batch["weight"]
    total_weight = jnp.maximum(weight.sum(), 1.0)

    def loss_fn(tables):
      rows = {name: tables[name][batch["user"] if spec.entity == USER else batch["item"]]
              for name, spec in specs.items()}
      out = model.apply({}, rows)
      return jnp.sum(jnp.square(out - batch["rating"]) * weight) / total_weight

    loss, grads = jax.value_and_grad(loss_fn)(state["tables"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["tables"])
    tables = optax.apply_updates(state["tables"], updates)
    return ({"step": state["step"] + 1, "tables": tables, "opt_state": opt_state},
            {"loss": loss, "weight": weight.sum()})

  rows = NamedSharding(mesh, P(sharding_lib.MODEL))
  shardings = jax.tree.map(lambda a: rows if a.ndim == 2 else NamedSharding(mesh, P()),
                           jax.eval_shape(init))
  n_elements = sum(sizes[name] * spec.dim for name, spec in specs.items())
  return specs, init, shardings, train_step, n_elements


def _check_finite(losses) -> float:
  """As loop.check_finite, one device_get of the stacked losses, but a non-finite loss is
  reported (as the mean, NaN) instead of raised: the timing of the case is still valid."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  return float(np.asarray(jax.device_get(jnp.stack(losses))).mean())


def time_device(init, shardings, train_step, columns, n_train: int, batch_size: int, mesh,
                epochs: int, seed: int) -> dict:
  """Device-resident epochs jitted as the pair family jits them; compile excluded."""
  import jax
  from jax.sharding import NamedSharding, PartitionSpec as P
  from netrec_jax.train import input_pipeline

  replicated = NamedSharding(mesh, P())
  state = jax.jit(init, out_shardings=shardings)()
  epoch_fn, n_steps = input_pipeline.make_device_epoch(train_step, n_train, batch_size, mesh)
  epoch_fn = jax.jit(epoch_fn, in_shardings=(shardings, replicated, replicated, replicated),
                     out_shardings=(shardings, replicated), donate_argnums=0)
  key = lambda epoch: input_pipeline.epoch_order(n_train, seed, epoch, mesh)  # timed: per epoch
  t = time.perf_counter()
  state, metrics = epoch_fn(state, columns, {}, key(0))
  jax.block_until_ready((state, metrics))
  warmup = time.perf_counter() - t
  losses = []
  t = time.perf_counter()
  for epoch in range(1, epochs + 1):
    state, metrics = epoch_fn(state, columns, {}, key(epoch))
    losses.append(metrics["loss"])
  jax.block_until_ready((state, losses))
  seconds = time.perf_counter() - t
  loss = _check_finite(losses)
  return {"seconds": seconds, "ratings": epochs * n_steps * batch_size,
          "steps": epochs * n_steps, "warmup_seconds": warmup, "final_loss": loss}


def time_host(init, shardings, train_step, store, rows, batch_size: int, mesh, epochs: int,
              seed: int, prefetch: int, check_every: int) -> dict:
  """HostBatches feeding the jitted step, the loop's host epoch."""
  import jax
  from jax.sharding import NamedSharding, PartitionSpec as P
  from netrec_jax import sharding as sharding_lib
  from netrec_jax.train import input_pipeline

  replicated = NamedSharding(mesh, P())
  state = jax.jit(init, out_shardings=shardings)()
  batches = input_pipeline.HostBatches(store, rows, batch_size, seed, mesh, prefetch=prefetch)
  step_fn = jax.jit(train_step, in_shardings=(shardings, sharding_lib.batch_sharding(mesh),
                                              replicated),
                    out_shardings=(shardings, replicated), donate_argnums=0)
  serialize_steps = jax.devices()[0].platform == "cpu" and mesh.size > 1

  def run_epoch(state, epoch):
    losses = []
    for k, batch in enumerate(batches.epoch(epoch)):
      state, m = step_fn(state, batch, {})
      if serialize_steps:
        jax.block_until_ready(m["loss"])
      losses.append(m["loss"])
      if (k + 1) % check_every == 0:
        _check_finite(losses[-check_every:])
    loss = _check_finite(losses)
    jax.block_until_ready(state)
    return state, loss

  t = time.perf_counter()
  state, _ = run_epoch(state, 0)
  warmup = time.perf_counter() - t
  t = time.perf_counter()
  for epoch in range(1, epochs + 1):
    state, loss = run_epoch(state, epoch)
  seconds = time.perf_counter() - t
  return {"seconds": seconds, "ratings": epochs * len(rows), "steps": epochs * len(batches),
          "warmup_seconds": warmup, "final_loss": loss}


def time_permutation(n: int, mesh, repeats: int = 3) -> float:
  """Seconds of input_pipeline.epoch_order, which starts every device-resident epoch."""
  from netrec_jax.train import input_pipeline
  input_pipeline.epoch_order(n, 0, 0, mesh).block_until_ready()
  t = time.perf_counter()
  for i in range(repeats):
    input_pipeline.epoch_order(n, 0, i + 1, mesh).block_until_ready()
  return (time.perf_counter() - t) / repeats


# ------------------------------------------------------------------------------------ main
def open_or_build_store(out: Path, n_users: int, n_items: int, n_ratings: int):
  from netrec_jax.data import synthetic
  from netrec_jax.data.store import RatingStore
  path = out / f"store_u{n_users}_i{n_items}_r{n_ratings}"
  if (path / "meta.json").is_file():
    return RatingStore.open(path), 0.0
  cfg = synthetic.SyntheticConfig(n_users=n_users, n_items=n_items, n_ratings=n_ratings, rank=16)
  t = time.time()
  store = synthetic.build_synthetic_store(cfg, path, overwrite=True)
  return store, time.time() - t


def markdown_table(results: list[dict]) -> str:
  head = ["model", "pipeline", "optimizer", "dedup", "batch", "ratings/s", "s / 100M epoch",
          "ms / step", "floor B/rating", "floor ratings/s", "floor s / 100M", "achieved/floor"]
  lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
  for r in results:
    lines.append("| " + " | ".join([
        r["model"], r["pipeline"], r["optimizer"], r.get("dedup", "-"), f"{r['batch_size']:,}",
        f"{r['ratings_per_s'] / 1e6:.3f}M", f"{r['s_per_100m_epoch']:,.0f}",
        f"{r['ms_per_step']:.1f}", f"{r['floor_bytes_per_rating']:,.0f}",
        f"{r['floor_ratings_per_s'] / 1e6:.1f}M", f"{r['floor_s_per_100m_epoch']:,.1f}",
        f"{r['achieved_over_floor']:.3f}"]) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  import numpy as np
  import jax

  for p in _PIPELINES.value:
    if p not in ("device", "host"):
      raise app.UsageError(f"--pipelines: {p!r} is not device or host")
  if _DEVICES.value > 1:
    jax.config.update("jax_num_cpu_devices", _DEVICES.value)  # before the backend starts

  from netrec_jax import configs, models
  from netrec_jax.progress import quiet_library_logs
  from netrec_jax import sharding as sharding_lib
  from netrec_jax.train import input_pipeline

  quiet_library_logs()
  for m in _MODELS.value:
    if m not in models.MODELS:
      raise app.UsageError(f"--models: {m!r} is not one of {models.MODELS}")
  batch_sizes = [int(b) for b in _BATCHES.value]
  out = Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)

  bandwidth_1 = measure_bandwidth(_BANDWIDTH_MB.value)
  bandwidth = max(bandwidth_1, measure_bandwidth(_BANDWIDTH_MB.value, os.cpu_count() or 1))
  print(f"memory bandwidth (np.copyto of {_BANDWIDTH_MB.value} MB, read + write): "
        f"{bandwidth_1:.1f} GB/s on 1 thread, {bandwidth:.1f} GB/s on {os.cpu_count()} "
        "(the floor uses the latter)", flush=True)

  store, build_seconds = open_or_build_store(out, _USERS.value, _ITEMS.value,
                                             max(_N.value, 2_000_000))
  if build_seconds:
    print(f"built store {store.path} ({store.n_ratings:,} ratings) in {build_seconds:.0f}s")
  rows = np.arange(store.n_ratings)
  if _N.value < store.n_ratings:
    rows = np.sort(np.random.default_rng(0).choice(store.n_ratings, _N.value, replace=False))
  n_train = len(rows)
  global_mean = float(store.stars(rows).astype(np.float64).mean())

  mesh = sharding_lib.make_mesh(configs.base_config().mesh, jax.devices()[:_DEVICES.value])
  columns = (input_pipeline.device_columns(store, rows, mesh) if "device" in _PIPELINES.value
             else None)
  print(f"{n_train:,} training ratings, tables {store.n_users:,} users x {store.n_items:,} "
        f"items; mesh {dict(mesh.shape)} on {jax.devices()[0].platform}, jax {jax.__version__}",
        flush=True)
  permutation_s = time_permutation(n_train, mesh) if "device" in _PIPELINES.value else None
  if permutation_s is not None:
    print(f"device epochs start with epoch_order({n_train:,}): "
          f"{permutation_s * 1e3:.0f} ms of every device epoch", flush=True)

  # (model, optimizer, batch) cases: the grid with the config's default sparse optimizer, then
  # the optimizer comparison and the dense baseline for mf.
  default_kind = configs.base_config().optimizer.sparse
  cases = [(m, default_kind, b) for m in _MODELS.value for b in batch_sizes]
  if _COMPARE_BATCH.value:
    cases += [("mf", k, _COMPARE_BATCH.value) for k in _OPTIMIZERS.value]
  cases += [("mf", "dense_adam", int(b)) for b in _DENSE.value]
  cases = list(dict.fromkeys(cases))
  cases = [(m, k, b, d) for m, k, b in cases
           for d in (_DEDUPS.value if k in ("adagrad", "lazy_adam") else ["-"])]

  results = []
  for pipeline in _PIPELINES.value:
    for model, kind, batch_size, dedup in cases:
      if pipeline == "device" and batch_size > n_train:
        print(f"skip {model} {kind} {batch_size}: batch larger than {n_train} ratings")
        continue
      config = make_config(model, batch_size, kind, pipeline, 1 + _EPOCHS.value)
      if kind == "dense_adam":
        specs, init, shardings, step, n_elements = build_dense_case(config, store, global_mean,
                                                                    mesh)
      else:
        specs, init, shardings, step = build_sparse_case(config, store, n_train, global_mean,
                                                         mesh, "auto" if dedup == "-" else dedup)
        n_elements = 0
      if pipeline == "device":
        timing = time_device(init, shardings, step, columns, n_train, batch_size, mesh,
                             _EPOCHS.value, config.seed)
      else:
        timing = time_host(init, shardings, step, store, rows, batch_size, mesh, _EPOCHS.value,
                           config.seed, config.train.prefetch, config.train.check_every_steps)
      rate = timing["ratings"] / timing["seconds"]
      floor_bytes = floor_bytes_per_rating(specs, kind, dense_elements=n_elements,
                                           batch_size=batch_size)
      floor_rate = bandwidth * 1e9 / floor_bytes
      r = {"model": model, "pipeline": pipeline, "optimizer": kind, "dedup": dedup,
           "batch_size": batch_size,
           "ratings_per_s": rate, "s_per_100m_epoch": _REALISTIC / rate,
           "ms_per_step": timing["seconds"] / timing["steps"] * 1e3,
           "floor_bytes_per_rating": floor_bytes, "floor_ratings_per_s": floor_rate,
           "floor_s_per_100m_epoch": _REALISTIC / floor_rate,
           "achieved_over_floor": rate / floor_rate,
           "tables": {k: [v.entity, v.dim] for k, v in specs.items()}, **timing}
      r["loss_finite"] = bool(np.isfinite(timing["final_loss"]))
      if not r["loss_finite"]:
        r["final_loss"] = None  # strict JSON has no NaN
      results.append(r)
      print(f"{model:7s} {pipeline:6s} {kind:10s} {dedup:5s} batch {batch_size:>7,}: "
            f"{rate / 1e6:.3f}M ratings/s, {r['ms_per_step']:.1f} ms/step, "
            f"{_REALISTIC / rate:,.0f} s per 100M epoch (warm-up {timing['warmup_seconds']:.1f}s,"
            f" last epoch loss {timing['final_loss']:.3f})", flush=True)

  table = markdown_table(results)
  print()
  print(f"Training throughput on {os.cpu_count()} CPU cores, {mesh.size} device(s); "
        f"{n_train:,} ratings per epoch, {_EPOCHS.value} timed epochs; floor at "
        f"{bandwidth:.1f} GB/s")
  print()
  print(table)
  print()
  if permutation_s is not None:
    print(f"Device epochs include the epoch permutation of the {n_train:,} rows "
          f"(input_pipeline.epoch_order: numpy on CPU, jax on accelerators): "
          f"{permutation_s * 1e3:.0f} ms per epoch.")
  diverged = [f"{r['model']}/{r['pipeline']}/{r['optimizer']}/{r['batch_size']}"
              for r in results if not r["loss_finite"]]
  if diverged:
    print(f"Loss not finite (timing still valid; the loop would stop): {', '.join(diverged)}")
  result = {
      "machine": f"{os.cpu_count()} cores, "
                 f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
      "platform": jax.devices()[0].platform, "devices": mesh.size, "jax_version": jax.__version__,
      "bandwidth_gb_per_s": bandwidth, "bandwidth_1_thread_gb_per_s": bandwidth_1,
      "bandwidth_test_mb": _BANDWIDTH_MB.value,
      "store": str(store.path), "store_ratings": store.n_ratings, "n_users": store.n_users,
      "n_items": store.n_items, "n_train": n_train, "timed_epochs": _EPOCHS.value,
      "device_epoch_permutation_s": permutation_s,
      "results": results, "table": table,
  }
  (out / "train_result.json").write_text(json.dumps(result, indent=2) + "\n")
  print(f"\nwrote {out / 'train_result.json'}")


if __name__ == "__main__":
  app.run(main)

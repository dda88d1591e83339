"""netrec_jax launcher: parse flags, pick the experiment config, call into the library.

  python launch.py --experiment=quickstart --workdir=runs/quickstart
  python launch.py --experiment=ml100k --workdir=runs/ml100k --config.split.fold=u2
  python launch.py --config=experiments/quickstart.py --config.data.min_user_ratings=50 ...
  python launch.py --mode=recommend --restore_from=runs/quickstart --users=503,587 --n=10
  python launch.py --mode=serve --restore_from=runs/quickstart --port=8000

--experiment=NAME is shorthand for --config=experiments/NAME.py; any config field can be
overridden with --config.FIELD=VALUE (see netrec_jax/configs.py for every field).
"""

import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"
MODES = ("train", "eval", "compare", "tune", "prepare", "eda", "recommend", "similar", "analyze",
         "serve", "verify")
# Modes that use a trained model: the checkpoint's own config is enough, --config is optional.
USE_MODES = ("recommend", "similar", "analyze", "serve")

_EXPERIMENT = flags.DEFINE_string(
    "experiment", None, "Experiment name: a config module in experiments/ (e.g. quickstart, "
    "ml100k, netflix_time). Shorthand for --config=experiments/NAME.py.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file; override fields with --config.FIELD=VALUE.",
    lock_config=True)
_MODE = flags.DEFINE_enum(
    "mode", None, MODES, "Default: the experiment's own config.mode (train for most; "
    "compare for compare_* experiments). train: train, validate each epoch, checkpoint into "
    "WORKDIR and "
    "write WORKDIR/final_metrics.json (resumes from WORKDIR's latest checkpoint). eval: restore "
    "--restore_from's best checkpoint and evaluate it into WORKDIR. compare: train or restore "
    "every "
    "model of config.compare.models and the baselines on one split, one evaluator; writes "
    "WORKDIR/comparison.{md,csv,json,png}. tune: give every model of config.compare.models "
    "the same budget (config.tune.trials, Optuna TPE seeded by config.seed, median pruning) "
    "on the validation rows only, record every trial in WORKDIR/tune, then compare the best "
    "settings once on test as compare does. prepare: build or reuse the "
    "store, make the split, write data_summary.json and EDA plots. eda: prepare with plots even "
    "if config.eda is off. recommend: top-N for --users (original ids, training movies "
    "excluded) and/or a --new_user (fold-in), from --restore_from's checkpoint. similar: the "
    "movies nearest to each --movie by cosine in item embedding space. analyze: PNG plots of "
    "item embeddings (PCA by popularity and genre), biases, extreme item biases and k-means "
    "user clusters into WORKDIR (default RESTORE_FROM/analysis). serve: HTTP JSON service on "
    "--host:--port (FastAPI + uvicorn). The use modes read the model from the checkpoint; "
    "--experiment/--config is optional there (given, the checkpoint must match its data). "
    "verify: recompute the configured store's fingerprint from its columns (and, with "
    "--restore_from, check its checkpoints' checksums); one line, non-zero exit on a mismatch.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder of this run (summaries, plots; later logs and checkpoints); "
    "analyze: where the plots go (default RESTORE_FROM/analysis).")
_RESTORE_FROM = flags.DEFINE_string(
    "restore_from", None, "eval, recommend, similar, analyze, serve: the workdir of a training "
    "run whose checkpoint to restore (its best checkpoint, else its latest).")
_USERS = flags.DEFINE_string(
    "users", None, "recommend: comma-separated ORIGINAL user ids (as in the source data, e.g. "
    "Netflix customer ids), e.g. --users=503,587.")
_NEW_USER = flags.DEFINE_string(
    "new_user", None, "recommend: a user who is not in the data, as comma-separated "
    "movie_id:stars pairs (original movie ids), e.g. --new_user=1:5,50:4.5,172:2. Factor "
    "models fold the user in (MF: ridge solve with item factors fixed; NCF/hybrid: a few "
    "gradient steps); autoencoders encode the partial rating vector. The output says which.")
_MOVIE = flags.DEFINE_string(
    "movie", None, "similar: comma-separated ORIGINAL movie ids whose nearest movies to list.")
_N = flags.DEFINE_integer("n", 10, "recommend, similar: list length (1 to 1000).")
_MIN_RATINGS = flags.DEFINE_integer(
    "min_ratings", 1, "recommend, similar: list only movies with at least this many training "
    "ratings (rare movies have noisy embeddings; e.g. 10 on MovieLens).")
_FORMAT = flags.DEFINE_enum(
    "format", "table", ["table", "json"], "recommend, similar: a readable table or JSON on "
    "stdout.")
_CLUSTERS = flags.DEFINE_integer("clusters", 8, "analyze: k of the k-means user clusters.")
_HOST = flags.DEFINE_string(
    "host", "127.0.0.1", "serve: interface to listen on (127.0.0.1: this machine only; 0.0.0.0 "
    "exposes the service to the network).")
_PORT = flags.DEFINE_integer("port", 8000, "serve: TCP port to listen on.")
_SWEEP = flags.DEFINE_string(
    "sweep", None, "train mode: a grid of config overrides, e.g. "
    "'optimizer.sparse_lr=0.02,0.05;model.embed_dim=32,64' (tuples as 128x64x32); each "
    "combination trains into WORKDIR/<name>, and WORKDIR/sweep_summary.{md,csv,json} compares.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process: host:port of process 0 (enables "
    "jax.distributed.initialize; CPU processes use gloo collectives).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Multi-process: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "Multi-process: this process's index.")
_REBUILD = flags.DEFINE_bool(
    "rebuild", False, "Rebuild the store even if a cached one matches the config.")
_DEBUG = flags.DEFINE_bool(
    "debug", False, "Show the Python traceback of an expected failure (bad input, a damaged "
    "store or checkpoint, a config value out of range) instead of one line.")

# Failures a user can fix (bad input or config, damaged artefacts, missing files): one line
# on stderr and a non-zero exit, unless --debug. DataError, CheckpointError, UseError and
# ConfigError are ValueErrors.
EXPECTED_ERRORS = (ValueError, OSError)


def available_experiments() -> list[str]:
  return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.py") if not p.stem.startswith("_"))


def expand_experiment_flag(argv: list[str]) -> list[str]:
  """Turns --experiment=NAME into --config=experiments/NAME.py (config files load at parse)."""
  name = None
  for k, arg in enumerate(argv):
    if arg.startswith("--experiment="):
      name = arg.split("=", 1)[1]
    elif arg == "--experiment" and k + 1 < len(argv):
      name = argv[k + 1]
  if name is None or any(a == "--config" or a.startswith("--config=") for a in argv):
    return argv
  path = EXPERIMENTS_DIR / f"{name}.py"
  if not path.is_file():
    sys.exit(f"launch.py: unknown experiment {name!r}; available: "
             f"{', '.join(available_experiments())}")
  # The config file must come before any --config.FIELD override.
  return [argv[0], f"--config={path}"] + argv[1:]


def one_line(e: BaseException) -> str:
  """`launch.py: message` on one line (the library's errors name file and problem)."""
  text = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
  ours = ("DataError", "DuplicateRating", "CheckpointError", "UseError", "ConfigError")
  if type(e).__name__ not in ours:
    text = f"{type(e).__name__}: {text} (--debug shows the traceback)"
  return f"launch.py: {text}"


def main(argv):
  try:
    return run(argv)
  except app.UsageError as e:
    if _DEBUG.value:
      raise
    sys.exit(f"launch.py: {e} (pass --help to see every flag)")
  except EXPECTED_ERRORS as e:
    if _DEBUG.value:
      raise
    sys.exit(one_line(e))


def check_flags(config) -> None:
  """Range checks before any work: the config's numbers, every sweep value, the port."""
  from netrec_jax import config_checks
  if _MODE.value == "serve" and not 0 < _PORT.value < 65536:
    raise app.UsageError(f"--port={_PORT.value} is not a TCP port (1..65535)")
  if config is None:
    return
  config_checks.validate_ranges(config)
  if _SWEEP.value is not None:
    import copy

    from netrec_jax import configs, pipeline
    try:
      axes = pipeline.parse_sweep(_SWEEP.value)
      for field, values in axes:
        for value in values:
          trial = copy.deepcopy(config)
          configs.set_field(trial, field, value, what=f"sweep axis {field!r}")
          config_checks.validate_ranges(trial)
    except config_checks.ConfigError as e:
      raise config_checks.ConfigError(f"--sweep: {e}") from None
    except ValueError as e:  # a malformed axis or value: a config error too
      raise config_checks.ConfigError(f"--sweep: {e}") from None


def split_cpu(config) -> None:
  """config.mesh.cpu_devices, applied before anything (jax.distributed too) starts JAX."""
  if config is None or not config.mesh.cpu_devices:
    return
  from netrec_jax import sharding
  n = sharding.set_cpu_devices(config.mesh.cpu_devices)
  logging.info("host CPU split into %d JAX devices (mesh.cpu_devices=%d)", n,
               config.mesh.cpu_devices)


def run(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  check_flags(_CONFIG.value)
  split_cpu(_CONFIG.value)
  if _MODE.value in USE_MODES:
    return use_model(_MODE.value, _CONFIG.value)
  if _CONFIG.value is None:
    raise app.UsageError("pass --experiment=NAME (one of "
                         f"{', '.join(available_experiments())}) or --config=FILE")
  config = _CONFIG.value
  mode = _MODE.value or config.mode
  if mode not in MODES or mode in USE_MODES:
    raise app.UsageError(f"config.mode {mode!r} must be one of train, eval, compare, tune, "
                         "prepare, eda, verify")
  if mode == "verify":
    return verify(config)
  workdir = _WORKDIR.value or str(Path("runs") / config.name)
  logging.info("experiment %s, mode %s, workdir %s", config.name, mode, workdir)

  if _COORDINATOR.value:
    import jax
    # Only CPU devices use this setting (cross-process collectives over gloo/TCP); asking
    # which backend we are on would initialise it before jax.distributed may.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)

  from netrec_jax import pipeline  # after flag parsing: --help stays fast
  run_mode(pipeline, mode, config, workdir)


def run_mode(pipeline, mode: str, config, workdir: str) -> None:
  if mode == "eval":
    if not _RESTORE_FROM.value:
      raise app.UsageError("--mode=eval needs --restore_from=WORKDIR_OF_A_TRAINING_RUN")
    pipeline.evaluate(config, _RESTORE_FROM.value, workdir)
  elif mode == "compare":
    pipeline.compare(config, workdir)
  elif mode == "tune":
    pipeline.tune(config, workdir)
  elif mode == "train" and _SWEEP.value is not None:
    pipeline.sweep(config, workdir, _SWEEP.value)
  elif mode == "train":
    pipeline.train(config, workdir)
  else:
    if mode == "eda":
      with config.unlocked():
        config.eda = True
    pipeline.prepare(config, workdir, rebuild=_REBUILD.value)


def verify(config) -> None:
  """--mode=verify: the configured store in full (and --restore_from's checkpoints)."""
  from netrec_jax.data import datasets
  from netrec_jax.data.store import RatingStore
  path = datasets.store_path(config.data)
  report = RatingStore.open(path, check=False).verify(full=True)
  line = (f"launch.py: store {path} verified: {report['n_ratings']:,} ratings, fingerprint "
          f"{report['fingerprint']} ({report['seconds']:.1f} s)")
  if _RESTORE_FROM.value:
    from netrec_jax.train import checkpoint as ckpt_lib
    checkpoints = ckpt_lib.Checkpoints(_RESTORE_FROM.value)
    try:
      found = [(which, *checkpoints.verify(which)) for which in ("best", "latest")
               if checkpoints.has(which)]
    finally:
      checkpoints.close()
    if not found:
      raise ckpt_lib.CheckpointError(f"{_RESTORE_FROM.value}: no checkpoints found under "
                                     f"{checkpoints.root}")
    line += "; checkpoints " + ", ".join(f"{which} step {step} {state}"
                                         for which, step, state in found)
  print(line)


def use_model(mode: str, config) -> None:
  """recommend / similar / analyze / serve from --restore_from's checkpoint; clean errors."""
  if not _RESTORE_FROM.value:
    raise app.UsageError(f"--mode={mode} needs --restore_from=WORKDIR_OF_A_TRAINING_RUN")
  from netrec_jax import use  # after flag parsing: --help stays fast
  from netrec_jax.data.errors import DataError
  restore_from = _RESTORE_FROM.value
  try:
    if mode == "recommend":
      if _USERS.value is None and _NEW_USER.value is None:
        raise app.UsageError("--mode=recommend needs --users=ID,... and/or "
                             "--new_user=MOVIE_ID:STARS,...")
      result = use.recommend(config, restore_from, users=_USERS.value, new_user=_NEW_USER.value,
                             n=_N.value, min_ratings=_MIN_RATINGS.value)
      print(use.to_json(result) if _FORMAT.value == "json" else use.format_table(result))
    elif mode == "similar":
      if _MOVIE.value is None:
        raise app.UsageError("--mode=similar needs --movie=MOVIE_ID[,MOVIE_ID...]")
      result = use.similar(config, restore_from, movies=_MOVIE.value, n=_N.value,
                           min_ratings=_MIN_RATINGS.value)
      print(use.to_json(result) if _FORMAT.value == "json" else use.format_table(result))
    elif mode == "analyze":
      out = _WORKDIR.value or str(Path(restore_from) / "analysis")
      written = use.analyze(config, restore_from, out, clusters=_CLUSTERS.value)
      print(f"analysis of {restore_from} written to {out}:")
      for path in written.values():
        print(f"  {path}")
    else:
      from netrec_jax import serve
      serve.serve(config, restore_from, host=_HOST.value, port=_PORT.value)
  except (use.UseError, DataError) as e:
    if _DEBUG.value:
      raise
    sys.exit(one_line(e))


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with one clear line for a bad flag or config field, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"launch.py: {e}\nPass --help to see every flag.")
  except (AttributeError, KeyError) as e:
    bad = [a for a in argv if a.startswith("--config.")]
    sys.exit(f"launch.py: unknown config field {e!s} in {' '.join(bad)}; see "
             "netrec_jax/configs.py for every field.")
  except (TypeError, ValueError) as e:
    sys.exit(f"launch.py: bad config override: {e!s}; see netrec_jax/configs.py.")


if __name__ == "__main__":
  args = expand_experiment_flag(sys.argv)
  if any(a in ("--help", "-h", "--helpfull", "-?") for a in args[1:]):
    try:
      app.run(main, argv=args)
    except SystemExit as e:
      sys.exit(0 if e.code in (None, 0, 1) else e.code)
  app.run(main, argv=args, flags_parser=parse_flags)

"""From a config's `data` and `split` sections to an opened store and a split.

Stores are cached under `data.store_root`, keyed by source and build parameters; a cached store
whose parameters differ from the config is rebuilt rather than silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from absl import logging

from netrec_jax.data import movielens, netflix, parquet_io
from netrec_jax.data import splits as splits_lib
from netrec_jax.data import synthetic
from netrec_jax.data.errors import DataError
from netrec_jax.data.store import META_FILE, RatingStore, remove_tree, write_meta
from netrec_jax.progress import Progress

# synthetic_netflix_files: the generator's data written as Netflix Prize raw files (with a
# probe.txt) and read back through the Netflix reader, for Netflix-format runs without the data.
SOURCES = ("synthetic", "synthetic_netflix_files", "netflix", "ml100k", "ml1m", "ml_latest",
           "parquet")
SPLIT_KINDS = ("time", "random", "loo", "item_cold", "strong", "ml100k_fold", "netflix_probe",
               "none")
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
  """Where real datasets live: $NETREC_DATA_DIR, else ../shared/data beside the project."""
  return Path(os.environ.get("NETREC_DATA_DIR", _PROJECT_ROOT.parent / "shared" / "data"))


def _to_dict(cfg: Any) -> dict[str, Any]:
  return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def source_path(data_cfg: Any) -> Path:
  """The dataset folder/file: absolute, or relative to data_dir()."""
  path = Path(data_cfg.path)
  return path if path.is_absolute() else data_dir() / path


def store_key(data_cfg: Any) -> dict[str, Any]:
  """The parameters that determine a store's content (what the cache is keyed by)."""
  data = _to_dict(data_cfg)
  key = {"source": data["source"], "min_user_ratings": data["min_user_ratings"],
         "min_item_ratings": data["min_item_ratings"], "strict": data.get("strict", False)}
  if data["source"] in ("netflix", "synthetic_netflix_files"):
    key["drop_before_release"] = data.get("drop_before_release", False)
  if data["source"] in ("synthetic", "synthetic_netflix_files"):
    # Drift fields left at 0 are dropped: the key of a driftless store is what it was before.
    key["synthetic"] = {k: v for k, v in _to_dict(data["synthetic"]).items()
                        if k not in synthetic.DRIFT_FIELDS or v}
    key["generator_version"] = synthetic.GENERATOR_VERSION
  else:
    key["path"] = str(source_path(data_cfg).resolve())
  return key


def store_path(data_cfg: Any) -> Path:
  if data_cfg.get("store_dir"):
    return Path(data_cfg.store_dir)
  digest = hashlib.blake2b(json.dumps(store_key(data_cfg), sort_keys=True).encode(),
                           digest_size=4).hexdigest()
  return Path(data_cfg.store_root) / f"{data_cfg.source}_{digest}"


def open_or_build(data_cfg: Any, rebuild: bool = False) -> RatingStore:
  """The store the config describes, built on first use and reused afterwards."""
  if data_cfg.source not in SOURCES:
    raise ValueError(f"unknown data.source {data_cfg.source!r}; expected one of {SOURCES}")
  dest = store_path(data_cfg)
  key = store_key(data_cfg)
  if (dest / META_FILE).is_file() and not rebuild:
    store = RatingStore.open(dest)
    if store.meta.get("build_params", {}).get("store_key") == key:
      logging.info("using cached store %s (%d ratings)", dest, store.n_ratings)
      return store
    logging.info("cached store %s was built from other parameters; rebuilding", dest)
  try:
    return build(data_cfg, dest, overwrite=dest.exists())
  except DataError as e:
    # Several processes of one run may build the same store at once: whoever renames first
    # wins, and the others use its store if it is the one they were building.
    if "already exists" in str(e) and (dest / META_FILE).is_file():
      _wait_for_key(dest, key)
      return RatingStore.open(dest)
    raise


def _wait_for_key(dest: Path, key: dict[str, Any], timeout_s: float = 60.0) -> None:
  """The winner writes the cache key right after publishing; wait for it briefly."""
  import time
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    meta = RatingStore.open(dest).meta
    if meta.get("build_params", {}).get("store_key") == key:
      return
    time.sleep(0.2)
  raise DataError(dest, "another process published a store here that does not match this config")


def build(data_cfg: Any, dest: str | os.PathLike, overwrite: bool = False) -> RatingStore:
  source = data_cfg.source
  filters = {"min_user_ratings": data_cfg.min_user_ratings,
             "min_item_ratings": data_cfg.min_item_ratings, "overwrite": overwrite}
  logging.info("building %s store into %s", source, dest)
  if source == "synthetic":
    cfg = synthetic.SyntheticConfig(**_to_dict(data_cfg.synthetic))
    store = synthetic.build_synthetic_store(
        cfg, dest, progress=Progress("generating synthetic ratings", cfg.n_ratings, "ratings"),
        **filters)
  elif source == "synthetic_netflix_files":
    cfg = synthetic.SyntheticConfig(**_to_dict(data_cfg.synthetic))
    raw = Path(dest).parent / f".{Path(dest).name}.raw"
    generated = synthetic.build_synthetic_store(cfg, raw / "generated", overwrite=True)
    netflix.write_netflix_files(generated, raw / "netflix", n_files=2, probe_fraction=0.01,
                                seed=cfg.seed)
    store = netflix.build_netflix_store(
        raw / "netflix", dest, strict=data_cfg.strict,
        drop_before_release=data_cfg.get("drop_before_release", False), **filters)
    remove_tree(raw)
  elif source == "netflix":
    folder = source_path(data_cfg)
    store = netflix.build_netflix_store(folder, dest, strict=data_cfg.strict,
                                        drop_before_release=data_cfg.get("drop_before_release",
                                                                         False),
                                        progress=Progress("reading Netflix files", 1, "bytes"),
                                        **filters)
  elif source == "parquet":
    store = parquet_io.import_parquet(source_path(data_cfg), dest, **filters)
  else:
    store = movielens.BUILDERS[source](source_path(data_cfg), dest, strict=data_cfg.strict,
                                       **filters)
  # Record the cache key so a later run can tell whether this store matches its config.
  meta = dict(store.meta)
  meta["build_params"] = {**meta.get("build_params", {}), "store_key": store_key(data_cfg)}
  write_meta(store.path, meta)
  return RatingStore.open(store.path)


def make_split(store: RatingStore, split_cfg: Any) -> splits_lib.Split | None:
  """The split the config asks for: loaded if saved with the store, else made and saved."""
  kind = split_cfg.kind
  if kind not in SPLIT_KINDS:
    raise ValueError(f"unknown split.kind {kind!r}; expected one of {SPLIT_KINDS}")
  if kind == "none":
    return None
  if kind == "time":
    split = splits_lib.time_split(store, split_cfg.cutoff, split_cfg.valid_fraction)
  elif kind == "random":
    split = splits_lib.random_split(store, split_cfg.test_fraction, split_cfg.valid_fraction,
                                    split_cfg.seed)
  elif kind == "item_cold":
    split = splits_lib.item_cold_split(store, split_cfg.test_fraction, split_cfg.valid_fraction,
                                       split_cfg.seed)
  elif kind == "loo":
    split = splits_lib.leave_last_out(store, n_valid=split_cfg.loo_n_valid, seed=split_cfg.seed)
  elif kind == "strong":
    split = splits_lib.strong_generalization(
        store, heldout_users=split_cfg.heldout_users,
        threshold=split_cfg.interaction_threshold,
        min_user_interactions=split_cfg.min_user_interactions,
        min_item_interactions=split_cfg.min_item_interactions,
        target_fraction=split_cfg.target_fraction, seed=split_cfg.seed, kcore=split_cfg.kcore)
  elif kind == "ml100k_fold":
    name = f"ml100k_{split_cfg.fold}"
    if name not in store.list_splits():
      raise DataError(store.path, f"split {name} is not saved with this store (build the "
                      "ml100k store without filters from a folder that has the fold files)")
    split = splits_lib.load_split(store, name)
  else:  # netflix_probe: saved at build time when probe.txt exists
    split = splits_lib.load_split(store, "netflix_probe")
  merge = split_cfg.get("merge_valid", False)
  if kind in ("ml100k_fold", "netflix_probe"):
    if split_cfg.valid_fraction > 0:
      split = splits_lib.with_validation(split, split_cfg.valid_fraction, split_cfg.seed)
    elif not merge:
      return split
  if merge:
    split = splits_lib.merge_valid(split)
  if split.name in store.list_splits():
    saved = splits_lib.load_split(store, split.name)
    if saved.params == json.loads(json.dumps(split.params)):
      return saved
  splits_lib.save_split(store, split)
  return splits_lib.load_split(store, split.name)


def describe(store: RatingStore, split: splits_lib.Split | None) -> dict[str, Any]:
  out = {"store": store.summary()}
  if split is not None:
    out["split"] = {"name": split.name, "protocol": split.protocol, "params": split.params,
                    **split.info}
  return out


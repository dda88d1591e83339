"""Issue 18: no silent garbage from corrupt artefacts, no silently dropped ratings, one-line errors.

Each test names the finding it covers; each fails on the code before the fix.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from netrec_jax import config_checks, configs, pipeline
from netrec_jax.data import builder as builder_lib
from netrec_jax.data import datasets, movielens, netflix
from netrec_jax.data import store as store_lib
from netrec_jax.data.errors import DataError
from netrec_jax.data.store import RatingStore
from netrec_jax.train import checkpoint as ckpt_lib

REPO = Path(__file__).resolve().parents[1]
TITLES = "1,2000,First Movie\n2,2003,Second, With Comma\n"
# A run small enough to train in seconds through the launcher.
TINY = ["--config.data.synthetic.n_users=300", "--config.data.synthetic.n_items=120",
        "--config.data.synthetic.n_ratings=12000", "--config.data.min_user_ratings=5",
        "--config.split.kind=random", "--config.train.epochs=2", "--config.train.batch_size=1024",
        "--config.model.embed_dim=8", "--config.eda=False", "--config.compare.after_train=False"]


def launch(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, check=False,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
  """stderr without absl's log lines (I/W + date): what a person reads."""
  return [line for line in result.stderr.splitlines()
          if line.strip() and not (line[:1] in "IWE" and line[1:5].isdigit())]


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
  assert result.returncode != 0, result.stdout[-2000:]
  lines = error_lines(result)
  assert len(lines) == 1 and lines[0].startswith("launch.py: "), result.stderr[-3000:]
  for word in words:
    assert word in lines[0], lines[0]
  return lines[0]


# --------------------------------------------------------------- 1. checkpoints
def _tree(scale: float = 1.0) -> dict:
  return {"tables": {"user": jnp.arange(4000, dtype=jnp.float32).reshape(1000, 4) * scale,
                     "bias": jnp.ones(7)},
          "step": jnp.int32(3)}


def _saved(workdir: Path, best_tree=None, latest_tree=None) -> Path:
  checkpoints = ckpt_lib.Checkpoints(workdir)
  checkpoints.save("best", 5, _tree() if best_tree is None else best_tree, {"epoch": 5})
  checkpoints.save("latest", 8, _tree(2.0) if latest_tree is None else latest_tree,
                   {"epoch": 8})
  checkpoints.close()
  return workdir


def _abstract():
  return jax.eval_shape(_tree)


def _largest_data_file(workdir: Path, which: str = "best") -> Path:
  files = (workdir / "checkpoints" / which).glob("*/state/ocdbt.process_0/d/*")
  return max(files, key=lambda p: p.stat().st_size)


def _damage(workdir: Path, how: str, which: str = "best") -> str:
  """Damages `which` as in the issue; returns the damaged file relative to the step folder."""
  step_dir = next((workdir / "checkpoints" / which).iterdir())
  target = (step_dir / "state" / "_METADATA" if how == "metadata"
            else _largest_data_file(workdir, which))
  data = bytearray(target.read_bytes())
  if how == "flip":
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    target.write_bytes(data)
  elif how == "truncate":
    target.write_bytes(data[:len(data) // 2])
  elif how == "delete":
    target.unlink()
  else:  # metadata: not JSON any more
    data[10:30] = b"#" * 20
    target.write_bytes(data)
  return target.relative_to(step_dir).as_posix()


def test_checkpoint_has_checksums_of_every_file(tmp_path):
  run = _saved(tmp_path / "run")
  for which, step in (("best", 5), ("latest", 8)):
    step_dir = run / "checkpoints" / which / str(step)
    record = json.loads((step_dir / ckpt_lib.CHECKSUM_FILE).read_text())
    files = {p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*") if p.is_file()}
    assert set(record["files"]) == files - {ckpt_lib.CHECKSUM_FILE}
    assert "state/_METADATA" in record["files"] and record["step"] == step
  checkpoints = ckpt_lib.Checkpoints(run)
  assert checkpoints.verify("best") == (5, "sealed")
  tree, meta = checkpoints.restore("best", _abstract())
  np.testing.assert_array_equal(tree["tables"]["user"], _tree()["tables"]["user"])
  assert meta == {"epoch": 5}
  checkpoints.close()


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "metadata"])
def test_damaged_checkpoint_is_one_error_naming_the_file(tmp_path, how):
  # Finding 1: flipped bytes restored as NaN / 1e38 parameters; truncated or deleted files and
  # a damaged _METADATA gave tensorstore tracebacks or a raw JSONDecodeError.
  run = _saved(tmp_path / "run")
  rel = _damage(run, how)
  checkpoints = ckpt_lib.Checkpoints(run)
  for call in (lambda: checkpoints.restore("best", _abstract()),
               lambda: checkpoints.read_meta("best")):
    with pytest.raises(ckpt_lib.CheckpointError) as err:
      call()
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(str(run / "checkpoints" / "best" / "5"))
    assert rel in text and "damaged" in text
  # The other series is untouched and still restores.
  tree, _ = checkpoints.restore("latest", _abstract())
  np.testing.assert_array_equal(tree["tables"]["user"], _tree(2.0)["tables"]["user"])
  checkpoints.close()


def test_restore_falls_back_only_to_a_checkpoint_that_verifies(tmp_path):
  run = _saved(tmp_path / "run")
  _damage(run, "flip", "best")
  checkpoints = ckpt_lib.Checkpoints(run)
  tree, meta, used = checkpoints.restore_verified("best", _abstract())
  assert used == "latest" and meta == {"epoch": 8}
  np.testing.assert_array_equal(tree["tables"]["user"], _tree(2.0)["tables"]["user"])
  assert checkpoints.choose("best") == "latest"
  checkpoints.close()
  _damage(run, "truncate", "latest")
  checkpoints = ckpt_lib.Checkpoints(run)
  with pytest.raises(ckpt_lib.CheckpointError, match="latest checkpoint is unusable too") as err:
    checkpoints.restore_verified("best", _abstract())
  assert "best/5" in str(err.value) and "latest/8" in str(err.value)
  with pytest.raises(ckpt_lib.CheckpointError, match="unusable too"):
    checkpoints.choose("best")
  checkpoints.close()


def test_non_finite_parameters_are_never_restored(tmp_path):
  bad = _tree()
  bad["tables"]["bias"] = bad["tables"]["bias"].at[3].set(jnp.nan)
  run = _saved(tmp_path / "run", best_tree=bad)
  checkpoints = ckpt_lib.Checkpoints(run)
  with pytest.raises(ckpt_lib.CheckpointError,
                     match=r"\['tables'\]\['bias'\] has 1 non-finite values of 7"):
    checkpoints.restore("best", _abstract())
  assert checkpoints.restore_verified("best", _abstract())[2] == "latest"
  checkpoints.close()
  ckpt_lib.check_finite_tree(_tree(), "x")  # finite: no error
  with pytest.raises(ckpt_lib.CheckpointError, match="x: leaf .*'user'.* non-finite"):
    ckpt_lib.check_finite_tree({"user": np.array([1.0, np.inf])}, "x")


def test_unsealed_and_badly_sealed_checkpoints(tmp_path):
  run = _saved(tmp_path / "run")
  step_dir = run / "checkpoints" / "best" / "5"
  # No checksums.json (an older netrec_jax, or stopped before it was written): accepted.
  record = step_dir / ckpt_lib.CHECKSUM_FILE
  saved = record.read_text()
  record.unlink()
  checkpoints = ckpt_lib.Checkpoints(run)
  assert checkpoints.verify("best") == (5, "unsealed")
  assert checkpoints.restore("best", _abstract())[1] == {"epoch": 5}
  checkpoints.close()
  # A damaged checksums.json is an error, not a pass.
  record.write_text(saved[:len(saved) // 2])
  checkpoints = ckpt_lib.Checkpoints(run)
  with pytest.raises(ckpt_lib.CheckpointError, match="checksums.json is unreadable"):
    checkpoints.read_meta("best")
  checkpoints.close()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, list[str]]:
  """A tiny MF run trained through the launcher (its checkpoints and store)."""
  root = tmp_path_factory.mktemp("reliability_run")
  common = ["--experiment=quickstart", f"--config.data.store_root={root / 'stores'}", *TINY]
  result = launch(*common, f"--workdir={root / 'run'}")
  assert result.returncode == 0, result.stderr[-3000:]
  return root / "run", common


def test_launch_eval_of_a_damaged_checkpoint_is_one_line(trained_run, tmp_path):
  # Finding 1: --mode=eval exited 0 with test rmse nan.
  import shutil
  run, common = trained_run
  damaged = tmp_path / "damaged"
  shutil.copytree(run, damaged)
  rel = _damage(damaged, "flip")
  # --mode=eval of a damaged best falls back to latest, which verifies, and says so.
  result = launch(*common, "--mode=eval", f"--restore_from={damaged}",
                  f"--workdir={tmp_path / 'eval'}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert rel in result.stderr and "using the latest checkpoint instead" in result.stderr
  evaluated = json.loads((tmp_path / "eval" / "final_metrics.json").read_text())
  assert evaluated["checkpoint"] == "latest" and np.isfinite(evaluated["test"]["rmse"])
  # With both damaged there is nothing to fall back to: one line, no metrics written.
  both = tmp_path / "both"
  shutil.copytree(run, both)
  _damage(both, "flip")
  _damage(both, "flip", which="latest")
  result = launch(*common, "--mode=eval", f"--restore_from={both}",
                  f"--workdir={tmp_path / 'eval_both'}")
  assert_one_line_error(result, rel, "damaged")
  assert not (tmp_path / "eval_both" / "final_metrics.json").exists()
  # The use modes (recommend, serve) fall back to the latest checkpoint, which verifies.
  from netrec_jax import use
  meta, which = use.checkpoint_meta(damaged)
  assert which == "latest" and meta["epoch"] >= 0
  # --mode=verify names the damaged checkpoint; the undamaged run verifies.
  bad = launch(*common, "--mode=verify", f"--restore_from={damaged}")
  assert_one_line_error(bad, rel)
  good = launch(*common, "--mode=verify", f"--restore_from={run}")
  assert good.returncode == 0, good.stderr[-2000:]
  assert "verified" in good.stdout and "best step" in good.stdout and "sealed" in good.stdout


# ----------------------------------------------------------- 2. Netflix odd lines
def _netflix(folder: Path, text: str | bytes, titles: str = TITLES, strict: bool = False,
             dest: Path | None = None, **kwargs) -> RatingStore:
  folder.mkdir(parents=True, exist_ok=True)
  data = text if isinstance(text, bytes) else text.encode()
  (folder / "combined_data_1.txt").write_bytes(data)
  (folder / "movie_titles.txt").write_text(titles)
  return netflix.build_netflix_store(folder, dest or folder.parent / "store",
                                     min_user_ratings=0, strict=strict, **kwargs)


# Movie 2 was released in 2003; movie 3 is not in the titles file.
ODD = ("1:\n10,3,2005-01-01\n11,4,2005-01-02\n2:\n10,5,2004-03-03\n12,4,2002-12-31\n"
       "13,2,2999-01-01\n3:\n10,4,2005-05-05\n")


def test_netflix_keeps_odd_ratings_and_counts_them_by_reason(tmp_path):
  # Finding 2: ratings dated before release were dropped and counted as bad lines.
  for strict in (False, True):
    store = _netflix(tmp_path / f"in{strict}", ODD, strict=strict, dest=tmp_path / f"s{strict}")
    assert store.n_ratings == 6 and store.meta["bad_lines"]["count"] == 0
    odd = store.meta["odd_lines"]
    assert odd["by_reason"] == {netflix.BEFORE_RELEASE: 1, netflix.FUTURE_DATE: 1,
                                netflix.NO_TITLE: 1}
    assert sorted(e["line"] for e in odd["examples"]) == [6, 7, 9]
    assert store.summary()["odd_lines"] == odd["by_reason"]
    assert "drop_before_release" not in store.meta["filters"]
  summary = pipeline.format_summary({"store": store.summary()})
  assert f"odd lines: 1 {netflix.BEFORE_RELEASE}" in summary


def test_drop_before_release_is_an_explicit_filter(tmp_path):
  store = _netflix(tmp_path / "in", ODD, drop_before_release=True)
  assert store.n_ratings == 5
  assert store.meta["odd_lines"]["by_reason"][netflix.BEFORE_RELEASE_DROPPED] == 1
  assert store.meta["filters"]["drop_before_release"] is True
  # The config field exists, defaults to keeping them and keys the store cache.
  config = configs.base_config()
  assert config.data.drop_before_release is False
  config.data.source = "netflix"
  key, path = datasets.store_key(config.data), datasets.store_path(config.data)
  config.data.drop_before_release = True
  assert datasets.store_key(config.data) != key and datasets.store_path(config.data) != path


# --------------------------------------------------------- 3. strict MovieLens
def test_strict_rejects_a_u_data_cut_inside_the_timestamp(tmp_path):
  # Finding 3: accepted with strict=true; the cut line became a rating dated 1970-01-02.
  text = "1\t10\t3\t881250949\n2\t10\t4\t881250950\n3\t11\t5\t88125"
  folder = tmp_path / "ml"
  folder.mkdir()
  (folder / "u.data").write_text(text)
  with pytest.raises(DataError) as err:
    movielens.build_ml100k_store(folder, tmp_path / "strict", strict=True)
  assert err.value.line == 3 and "no line end" in str(err.value)
  assert not (tmp_path / "strict").exists()
  store = movielens.build_ml100k_store(folder, tmp_path / "lenient")
  assert store.n_ratings == 3  # a line that parses is kept, and counted as odd
  assert store.meta["odd_lines"]["examples"][0]["line"] == 3
  assert "truncated" in store.meta["odd_lines"]["examples"][0]["reason"]


def test_strict_rejects_a_gzipped_file_cut_inside_its_last_line(tmp_path):
  import gzip
  folder = tmp_path / "ml1m"
  folder.mkdir()
  with gzip.open(folder / "ratings.dat.gz", "wt") as f:
    f.write("1::10::3::978300760\n2::10::4::978300761\n3::11::5::97830")
  (folder / "movies.dat").write_text("10::A (1995)::Drama\n11::B (1996)::Comedy\n",
                                     encoding="latin-1")
  with pytest.raises(DataError, match="no line end"):
    movielens.build_ml1m_store(folder, tmp_path / "strict", strict=True)


def test_ratings_csv_without_header(tmp_path):
  # Finding 3: the first rating was skipped as if it were the header.
  folder = tmp_path / "latest"
  folder.mkdir()
  (folder / "ratings.csv").write_text("1,10,3.5,964982703\n2,10,4.0,964982704\n")
  with pytest.raises(DataError) as err:
    movielens.build_latest_store(folder, tmp_path / "strict", strict=True)
  assert err.value.line == 1 and "header" in str(err.value)
  store = movielens.build_latest_store(folder, tmp_path / "lenient")
  assert store.n_ratings == 2
  assert store.meta["odd_lines"]["by_reason"] == {movielens.NO_HEADER: 1}
  # With the header, nothing is odd.
  (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,3.5,964982703\n")
  store = movielens.build_latest_store(folder, tmp_path / "with_header", strict=True)
  assert store.n_ratings == 1 and store.meta["odd_lines"]["count"] == 0


# ------------------------------------------------------ 4. bytes, encodings, lines
def test_one_bad_byte_costs_one_netflix_line(tmp_path):
  # Finding 4: one bad byte ended the whole ingest, "at or after line 1", raw bytes echoed.
  text = b"1:\n10,3,2005-01-01\n11,4,2005\xff-01-02\n12,5,2005-01-03\n2:\n10,2,2005-02-02\n"
  store = _netflix(tmp_path / "in", text)
  assert store.n_ratings == 3
  [example] = store.meta["bad_lines"]["examples"]
  assert example["line"] == 3 and "not valid utf8 text (byte 0xff at column 10)" in \
      example["reason"]
  assert example["text"].isascii()  # shown escaped, not as raw bytes
  with pytest.raises(DataError) as err:
    _netflix(tmp_path / "in2", text, strict=True, dest=tmp_path / "strict")
  assert err.value.line == 3 and "utf8" in str(err.value) and str(err.value).isascii()
  # A damaged movie header stays fatal: its ratings would land on the previous movie.
  with pytest.raises(DataError, match="malformed movie header") as err:
    _netflix(tmp_path / "in3", b"1:\n10,3,2005-01-01\n2\xff:\n10,2,2005-02-02\n",
             dest=tmp_path / "s3")
  assert err.value.line == 3


def test_utf16_ratings_csv_names_the_encoding(tmp_path):
  folder = tmp_path / "latest"
  folder.mkdir()
  text = "userId,movieId,rating,timestamp\n1,10,3.5,964982703\n"
  for encoding, name in (("utf-16", "UTF-16-LE"), ("utf-16-be", "UTF-16-BE")):
    (folder / "ratings.csv").write_bytes(text.encode(encoding))
    with pytest.raises(DataError) as err:
      movielens.build_latest_store(folder, tmp_path / "store")
    assert name in str(err.value) and "convert it to UTF-8" in str(err.value)
  # A UTF-8 byte-order mark is not part of the header.
  (folder / "ratings.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
  assert movielens.build_latest_store(folder, tmp_path / "bom", strict=True).n_ratings == 1


def test_duplicates_name_their_lines(tmp_path):
  # Finding 4: duplicate pairs and duplicate title ids were reported without a line number.
  folder = tmp_path / "nf"
  folder.mkdir()
  (folder / "combined_data_1.txt").write_text("1:\n10,3,2005-01-01\n11,3,2005-01-01\n")
  (folder / "combined_data_2.txt").write_text("2:\n12,4,2005-01-01\n1:\n10,4,2005-02-02\n")
  with pytest.raises(DataError) as err:
    netflix.build_netflix_store(folder, tmp_path / "store", min_user_ratings=0)
  assert err.value.path == str(folder / "combined_data_2.txt") and err.value.line == 4
  assert f"first at {folder / 'combined_data_1.txt'}:2" in str(err.value)
  titles = folder / "movie_titles.txt"
  titles.write_text("1,2000,A\n2,2001,B\n1,2002,A again\n")
  with pytest.raises(DataError) as err:
    netflix.read_movie_titles(titles)
  assert err.value.line == 3 and "movie id 1 is listed more than once (first at line 1)" in \
      str(err.value)


# -------------------------------------------------------- 5. one-line errors, ranges
def test_validate_ranges():
  config_checks.validate_ranges(configs.base_config())
  for name in [p.stem for p in (REPO / "experiments").glob("*.py") if p.stem != "__init__"]:
    import importlib
    config_checks.validate_ranges(importlib.import_module(f"experiments.{name}").get_config())
  bad = {"optimizer.sparse_lr": -1.0, "optimizer.lr": 1e6, "optimizer.embed_l2": -0.1,
         "model.dropout": 1.0, "train.epochs": 0, "train.batch_size": -5,
         "split.valid_fraction": 1.0, "graph.l2": float("nan"), "model.hidden": (64, 0)}
  for field, value in bad.items():
    config = configs.base_config()
    section, leaf = field.split(".")
    config[section][leaf] = value
    with pytest.raises(config_checks.ConfigError, match=f"{field} = ") as err:
      config_checks.validate_ranges(config)
    assert "\n" not in str(err.value)
  config = configs.base_config()
  config.optimizer.sparse_lr, config.model.dropout = 1e6, 1.5
  assert len(config_checks.problems(config)) == 2  # every problem, in one message


def test_sweep_axes_are_checked():
  with pytest.raises(ValueError, match="needs a field and at least one value"):
    pipeline.parse_sweep("optimizer.sparse_lr=")
  with pytest.raises(ValueError, match="no axes"):
    pipeline.parse_sweep(";")
  config = configs.base_config()
  with pytest.raises(ValueError, match="sweep axis 'optimizer.sparse_lr': 'abc' is not a number"):
    configs.set_field(config, "optimizer.sparse_lr", "abc", what="sweep axis 'optimizer.sparse_lr'")
  with pytest.raises(ValueError, match="sweep axis 'train.epochs': '2.5' is not an integer"):
    configs.set_field(config, "train.epochs", "2.5", what="sweep axis 'train.epochs'")
  with pytest.raises(ValueError, match="'model.use_bias': 'maybe' is not a boolean"):
    configs.set_field(config, "model.use_bias", "maybe", what="sweep axis 'model.use_bias'")
  with pytest.raises(ValueError, match="unknown config field"):
    configs.set_field(config, "optimizer.nope", "1", what="sweep axis 'optimizer.nope'")


def test_launch_errors_are_one_line_unless_debug(tmp_path):
  # Finding 5: 16-50-line tracebacks in prepare, train and eval; sparse_lr=-1 trained.
  base = ["--experiment=quickstart", f"--config.data.store_root={tmp_path / 'stores'}"]
  missing = ["--mode=prepare", "--config.data.source=netflix",
             f"--config.data.path={tmp_path / 'nowhere'}", f"--workdir={tmp_path / 'p'}"]
  assert_one_line_error(launch(*base, *missing), "Netflix data folder not found")
  debug = launch(*base, *missing, "--debug")
  assert debug.returncode != 0 and "Traceback" in debug.stderr
  assert_one_line_error(launch(*base, "--mode=eval", f"--restore_from={tmp_path / 'none'}",
                               f"--workdir={tmp_path / 'e'}"), "no checkpoints")
  # Config values out of range and empty sweeps stop before any work.
  w = f"--workdir={tmp_path / 'w'}"
  assert_one_line_error(launch(*base, w, "--config.optimizer.sparse_lr=-1"),
                        "optimizer.sparse_lr = -1.0")
  assert_one_line_error(launch(*base, w, "--sweep=optimizer.sparse_lr="), "--sweep")
  assert_one_line_error(launch(*base, w, "--sweep=optimizer.sparse_lr=0.05,1e6"),
                        "optimizer.sparse_lr = 1000000.0")
  assert not (tmp_path / "w").exists() and not (tmp_path / "stores").exists()


# ------------------------------------------------------------------- 6. port
def test_serve_port_is_checked_before_anything(tmp_path):
  # Finding 6: --port=99999 announced 99999 and listened on 34463; -1 printed "serving" first.
  from netrec_jax import serve, use
  for port in (99999, -1):
    result = launch("--mode=serve", f"--restore_from={tmp_path}", f"--port={port}")
    assert_one_line_error(result, f"--port={port}")
    assert "serve:" not in result.stdout
  with pytest.raises(use.UseError, match="not a TCP port"):
    serve.bind("127.0.0.1", 99999)
  with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    with pytest.raises(use.UseError, match="cannot listen on 127.0.0.1"):
      serve.bind("127.0.0.1", busy.getsockname()[1])
    free = busy.getsockname()[1]
  sock = serve.bind("127.0.0.1", free)  # free again: bound, and the port is the one asked for
  assert sock.getsockname()[1] == free
  sock.close()


# ----------------------------------------------------------- 7. store builds, verify
def _ratings(n_users=40, n_items=30, per_user=12, seed=0):
  rng = np.random.default_rng(seed)
  users = np.repeat(np.arange(1, n_users + 1), per_user)
  items = np.concatenate([rng.choice(np.arange(1, n_items + 1), per_user, replace=False)
                          for _ in range(n_users)])
  return users, items, rng.integers(1, 6, len(users)), rng.integers(12000, 13000, len(users))


def _build(dest: Path, seed: int = 0) -> RatingStore:
  with builder_lib.StoreBuilder(dest, name="t") as b:
    b.add(*_ratings(seed=seed))
    return b.finish()


KILLED_BUILD = """
import os, signal, sys
from netrec_jax.data.builder import StoreBuilder
b = StoreBuilder(sys.argv[1], name="t")
b.add([1, 2], [1, 1], [3, 4], [12000, 12001])
print(b.tmp, os.getpid(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_next_build_removes_folders_of_killed_builds(tmp_path):
  # Finding 7: kill -9 left .NAME.building-* folders that no later run removed.
  killed = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(tmp_path / "s")], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
  assert killed.returncode == -signal.SIGKILL
  left, dead_pid = killed.stdout.split()
  left = Path(left)
  assert left.is_dir() and (left / builder_lib.BUILDER_FILE).is_file()
  # A build in progress (this process) and a just-started one without a record stay; an
  # unrecorded one whose pid is dead goes once it is a few minutes old.
  live = tmp_path / ".other.building-1-abc"
  live.mkdir()
  (live / builder_lib.BUILDER_FILE).write_text(json.dumps(builder_lib._builder_record()))
  young = tmp_path / f".x.building-{dead_pid}-abc"
  young.mkdir()
  old_unrecorded = tmp_path / f".y.building-{dead_pid}-def"
  old_unrecorded.mkdir()
  past = time.time() - 3600
  os.utime(old_unrecorded, (past, past))
  store = _build(tmp_path / "s")
  assert store.n_ratings == 480
  remaining = sorted(p.name for p in tmp_path.iterdir())
  assert remaining == sorted(["s", live.name, young.name]), remaining
  assert not (store.path / builder_lib.BUILDER_FILE).exists()
  # A record older than a day is stale whoever wrote it.
  assert builder_lib.remove_stale_builds(tmp_path, now=time.time() + 2 * 86400) == sorted(
      [live, young])


def test_overwritten_store_bytes_are_found(tmp_path, monkeypatch):
  # Finding 7: a published store whose bytes were overwritten was reused without complaint.
  store = _build(tmp_path / "small")
  assert store.verify(full=True)["checked"] == ["samples", "fingerprint"]
  rating = tmp_path / "small" / "rating.npy"
  data = bytearray(rating.read_bytes())
  data[-40:-20] = bytes((b % 5) + 1 if b != 1 else 2 for b in data[-40:-20])
  rating.write_bytes(data)
  with pytest.raises(DataError, match="rating.npy: content differs") as err:
    RatingStore.open(tmp_path / "small")  # small files are hashed whole on open
  assert "rebuild" in str(err.value)
  with pytest.raises(DataError, match="rating.npy: content differs .*sha256 of the column"):
    RatingStore.open(tmp_path / "small", check=False)._verify_full(
        store.meta["content"]["sha256"])
  # Larger files are sampled on open: an overwrite between samples needs the full verify.
  monkeypatch.setattr(store_lib, "SAMPLE_WHOLE_BYTES", 0)
  monkeypatch.setattr(store_lib, "SAMPLE_BLOCK_BYTES", 16)
  monkeypatch.setattr(store_lib, "SAMPLE_BLOCKS", 2)
  big = _build(tmp_path / "big", seed=1)
  item = tmp_path / "big" / "item.npy"
  data = bytearray(item.read_bytes())
  mid = len(data) // 2 - (len(data) // 2) % 4
  data[mid:mid + 4] = np.int32((np.frombuffer(data[mid:mid + 4], np.int32)[0] + 1) % 30).tobytes()
  item.write_bytes(data)
  reopened = RatingStore.open(tmp_path / "big")
  with pytest.raises(DataError, match="item.npy: content differs"):
    reopened.verify(full=True)
  assert big.fingerprint == reopened.fingerprint


def test_launch_verify_mode(tmp_path):
  stores = tmp_path / "stores"
  args = ["--experiment=quickstart", f"--config.data.store_root={stores}", *TINY[:4]]
  config = configs.base_config()
  config.data.store_root = str(stores)
  config.data.synthetic.update(n_users=300, n_items=120, n_ratings=12000)
  config.data.min_user_ratings = 5
  store = datasets.open_or_build(config.data)
  good = launch(*args, "--mode=verify")
  assert good.returncode == 0, good.stderr[-2000:]
  [line] = good.stdout.strip().splitlines()
  assert line.startswith(f"launch.py: store {store.path} verified: {store.n_ratings:,} ratings, "
                         f"fingerprint {store.fingerprint} (")
  date = store.path / "date.npy"
  data = bytearray(date.read_bytes())
  data[200:204] = np.int32(1).tobytes()
  date.write_bytes(data)
  assert_one_line_error(launch(*args, "--mode=verify"), "date.npy", "damaged")

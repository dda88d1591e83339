"""launch.py end to end (subprocesses from the repo root) and pipeline.prepare in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from netrec_jax import configs, pipeline
from netrec_jax.data.store import RatingStore

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--config.data.synthetic.n_ratings=60000", "--config.data.synthetic.n_users=1500",
         "--config.data.synthetic.n_items=400", "--mode=prepare", "--config.split.kind=time"]
EDA_PLOTS = ("rating_distribution", "user_activity", "movie_popularity", "ratings_over_time")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def launch(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def _check_prepared(result: subprocess.CompletedProcess, workdir: Path, stores: Path) -> dict:
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  summary = json.loads((workdir / "data_summary.json").read_text())
  store_info = summary["store"]
  # The console summary.
  assert f"store     {store_info['name']} at {store_info['path']}" in out
  assert f"{store_info['n_ratings']:,} ratings, {store_info['n_users']:,} users" in out
  assert f"fingerprint {store_info['fingerprint']}" in out
  assert "split     time_2005_valid (protocol time_2005)" in out
  # The store it describes is where the config put it, and the summary matches it.
  store = RatingStore.open(store_info["path"])
  assert Path(store_info["path"]).parent == stores
  assert store.fingerprint == store_info["fingerprint"]
  assert store.n_ratings == store_info["n_ratings"] and store.n_ratings > 40_000
  assert store.meta["filters"]["min_user_ratings"] == 25
  assert store.ratings_per_user().min() >= 25
  assert store_info["splits"] == ["time_2005_valid"]
  sizes = summary["split"]["sizes"]
  assert sum(sizes.values()) == store.n_ratings and sizes["test"] > 0 and sizes["valid"] > 0
  assert summary["split"]["cold_start"]["n_test"] == sizes["test"]
  # EDA plots.
  for name in EDA_PLOTS:
    png = workdir / "eda" / f"{name}.png"
    assert png.is_file() and png.read_bytes()[:8] == PNG_SIGNATURE, png
    assert summary["eda"][name] == str(png)
  assert (workdir / "eda" / "summary.md").is_file()
  return summary


def test_quickstart_experiment_with_overrides(tmp_path):
  workdir, stores = tmp_path / "run", tmp_path / "stores"
  result = launch("--experiment=quickstart", f"--workdir={workdir}",
                  f"--config.data.store_root={stores}", *SMALL)
  _check_prepared(result, workdir, stores)


def test_quickstart_config_file_with_overrides(tmp_path):
  workdir, stores = tmp_path / "run", tmp_path / "stores"
  args = ["--config=experiments/quickstart.py", f"--workdir={workdir}",
          f"--config.data.store_root={stores}", *SMALL]
  first = _check_prepared(launch(*args), workdir, stores)
  assert first["store"]["name"] == "synthetic_60000_seed0"
  # A second run reuses the cached store and the saved split; --mode=eda writes the plots
  # even with config.eda off.
  workdir2 = tmp_path / "run2"
  args[1] = f"--workdir={workdir2}"
  second_result = launch(*args, "--config.eda=False", "--mode=eda")
  second = _check_prepared(second_result, workdir2, stores)
  assert "using cached store" in second_result.stderr
  assert second["store"]["fingerprint"] == first["store"]["fingerprint"]
  assert second["split"]["fingerprint"] == first["split"]["fingerprint"]
  assert len(list(stores.iterdir())) == 1


def test_unknown_experiment(tmp_path):
  result = launch("--experiment=no_such_experiment", f"--workdir={tmp_path / 'run'}")
  assert result.returncode != 0
  assert "unknown experiment 'no_such_experiment'" in result.stderr
  assert "quickstart" in result.stderr  # lists the available ones
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "run").exists()


def test_unknown_config_field_config_file(tmp_path):
  result = launch("--config=experiments/quickstart.py", f"--workdir={tmp_path / 'run'}",
                  f"--config.data.store_root={tmp_path / 'stores'}", "--config.data.nonexistent=1")
  assert result.returncode != 0
  assert "nonexistent" in result.stderr
  assert not (tmp_path / "run").exists() and not (tmp_path / "stores").exists()


def test_unknown_config_field_message_is_one_line(tmp_path):
  result = launch("--config=experiments/quickstart.py", f"--workdir={tmp_path / 'run'}",
                  "--config.data.nonexistent=1")
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  assert "nonexistent" in result.stderr.strip().splitlines()[-1]


def test_unknown_config_field_experiment(tmp_path):
  result = launch("--experiment=quickstart", f"--workdir={tmp_path / 'run'}",
                  "--config.data.nonexistent=1")
  assert result.returncode != 0
  assert "nonexistent" in result.stderr
  assert "before a value for --config" not in result.stderr


def test_missing_experiment_flag():
  result = launch()
  assert result.returncode != 0
  assert "pass --experiment=NAME" in result.stderr


def test_help_text():
  result = launch("--help", timeout=60)
  text = result.stdout + result.stderr
  for flag in ("--experiment", "--mode", "--workdir", "--config", "prepare"):
    assert flag in text
  assert "Traceback" not in text


def test_help_exits_zero():
  assert launch("--help", timeout=60).returncode == 0


# --------------------------------------------------------------------- pipeline in process
def test_pipeline_prepare_without_eda(tmp_path, capsys):
  config = configs.base_config()
  config.data.store_root = str(tmp_path / "stores")
  config.data.synthetic.update(n_ratings=20_000, n_users=800, n_items=300)
  config.data.min_user_ratings = 0
  config.split.kind = "random"
  config.eda = False
  summary = pipeline.prepare(config, tmp_path / "run")
  assert not (tmp_path / "run" / "eda").exists()
  assert json.loads((tmp_path / "run" / "data_summary.json").read_text()) == json.loads(
      json.dumps(summary))
  assert summary["split"]["name"] == "random_90_10_seed0"
  store = RatingStore.open(summary["store"]["path"])
  assert store.n_users == 800 and summary["store"]["filters"]["min_user_ratings"] == 0
  assert "split     random_90_10_seed0" in capsys.readouterr().out
  # A different config does not reuse the cached store.
  config.data.min_user_ratings = 10
  other = pipeline.prepare(config, tmp_path / "run2")
  assert other["store"]["path"] != summary["store"]["path"]
  assert RatingStore.open(other["store"]["path"]).ratings_per_user().min() >= 10

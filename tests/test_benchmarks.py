"""The benchmark scripts of issue 14 run end to end at tiny sizes (so they cannot rot), and
their own cross-checks hold: ingest counts every rating line of the text it wrote, and the
device ranker's top-K agrees with the host path's."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, XLA_FLAGS="")  # the script's own device flags, not conftest's 4
  return subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def test_ingest_benchmark_ingests_every_rating_line(tmp_path):
  run = _run("ingest_benchmark.py", f"--out={tmp_path}", "--n_ratings=50000", "--n_users=2000",
             "--n_items=200", "--n_files=2", "--pandas_lines=1000", "--repeats=1")
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads((tmp_path / "result_50000.json").read_text())
  lines = [line for f in sorted((tmp_path / "text_50000").glob("combined_data_*.txt"))
           for line in f.read_text().splitlines()]
  rating_lines = sum(1 for line in lines if line and not line.endswith(":"))
  assert result["ingest"]["n_ratings"] == rating_lines > 40_000
  assert result["ingest"]["seconds"] > 0 and result["one_user_items"] > 0


def test_ranking_benchmark_ranks_every_user_on_two_devices(tmp_path):
  run = _run("ranking_benchmark.py", f"--out={tmp_path}", "--n_users=2000", "--n_items=300",
             "--n_ratings=40000", "--host_users=256", "--user_batch=256", "--cpu_devices=2")
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads((tmp_path / "ranking_result.json").read_text())
  assert result["jax_devices"] == 2
  assert result["n_users"] == 2000 and 0 < result["test_users"] < 2000
  assert result["all_users_seconds"] > 0 and result["device_seconds"] > 0
  # The device top-100 against numpy's on the sampled users: same items (float32 near-ties
  # may swap neighbours, never the set at this size).
  assert result["sample_rows_same_set"] == 1.0
  assert "every user (2,000)" in run.stdout

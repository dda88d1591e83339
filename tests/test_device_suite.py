"""benchmarks/device_suite.py keeps running: its --tiny mode (every case, on CPU) and the device
ranker it adds, against the evaluator's own top-k."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "device_suite.py"
CASES = ("mf", "neumf", "als", "ials", "lightgcn", "bert4rec", "autorec", "deep_ae", "ranking")


def _run(out: Path, *args: str) -> dict:
  """The script as the device machine runs it (a subprocess; XLA_FLAGS as the tests set them)."""
  done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", f"--out={out}", *args],
                        cwd=REPO, env=dict(os.environ), capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  return json.loads((out / "device_suite.json").read_text())


def _positive(x) -> bool:
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_tiny_suite_runs_every_case_with_finite_figures(tmp_path):
  result = _run(tmp_path)
  assert result["tiny"] and result["machine"]["jax_version"]
  assert result["store"]["n_train"] > 0
  assert set(result["cases"]) == set(CASES)
  for name, case in result["cases"].items():
    assert case["status"] == "ok", (name, [r for r in result["rows"] if r["case"] == name])
  assert {r["case"] for r in result["rows"]} == set(CASES)
  for r in result["rows"]:
    assert r["status"] == "ok", r
    assert _positive(r["value"]) and _positive(r["rate"]), r
    for key in ("compile_s", "floor_s", "achieved_over_floor"):
      assert r[key] is None or (math.isfinite(r[key]) and r[key] >= 0), (key, r)
    if r["case"] in ("mf", "neumf", "als", "ials"):
      assert r["target_s"] > 0 and isinstance(r["target_met"], bool)
      assert _positive(r["floor_s"])
  pair = [r for r in result["rows"] if r["case"] in ("mf", "neumf")]
  assert all(r["details"]["loss_finite"] for r in pair)
  ranking = next(r for r in result["rows"] if r["case"] == "ranking")
  assert ranking["details"]["overlap_with_host_topk"] > 0.99
  table = (tmp_path / "device_suite.md").read_text()
  assert table.startswith("# Device suite")
  assert "| case | what | figure |" in table
  for name in CASES:
    assert f"| {name} |" in table


def test_cases_past_the_budget_are_recorded_as_skipped(tmp_path):
  result = _run(tmp_path, "--cases=als,ranking", "--budget_s=0")
  assert [r["case"] for r in result["rows"]] == ["als", "ranking"]
  assert all(r["status"] == "skipped" for r in result["rows"])
  assert "skipped" in (tmp_path / "device_suite.md").read_text()


def _suite_module():
  spec = importlib.util.spec_from_file_location("device_suite_under_test", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # its dataclasses look their module up
  spec.loader.exec_module(module)
  return module


def test_device_ranker_equals_the_evaluators_topk():
  from netrec_jax.eval import metrics
  suite = _suite_module()
  rng = np.random.default_rng(0)
  n_users, n_items, dim, k = 37, 30, 4, 7
  # Small integers: exact scores in float32 on both sides, and many ties (broken by index).
  users = rng.integers(-2, 3, (n_users, dim)).astype(np.float32)
  items = rng.integers(-2, 3, (n_items, dim)).astype(np.float32)
  bias = rng.integers(-1, 2, n_items).astype(np.float32)
  train = sp.random(n_users, n_items, density=0.3, format="csr", random_state=1)
  train.data[:] = 1.0
  rank_all, info = suite.make_device_ranker(users, items, bias, train.indptr, train.indices,
                                            batch=16, k=k)
  assert info["batches"] == 3
  expected = metrics.topk_from_scores(users @ items.T + bias, train, k)
  np.testing.assert_array_equal(rank_all(), expected)

"""benchmarks/time_to_accuracy.py: the figures its target is judged by (no fit: < 1 s)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_accuracy.py"


# The script's absl flags: defined on the global FLAGS when it loads, so they are set aside
# and taken off again (another script loaded in this session may define some of the names).
FLAG_NAMES = ("sizes", "models", "out", "part", "mf", "svd_epochs", "timeout", "tag", "child",
              "malloc_mmap_threshold", "unscored")


@pytest.fixture(scope="module")
def tta():
  from absl import flags
  saved = {n: flags.FLAGS[n] for n in FLAG_NAMES if n in flags.FLAGS}
  for n in saved:
    delattr(flags.FLAGS, n)
  try:
    spec = importlib.util.spec_from_file_location("time_to_accuracy_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  finally:
    for n in FLAG_NAMES:
      if n in flags.FLAGS:
        delattr(flags.FLAGS, n)
    for n, flag in saved.items():
      flags.FLAGS[n] = flag
  return module


def test_first_reaching_is_the_earliest_point_at_or_below_target(tta):
  curve = [{"seconds": 9.0, "rmse": 0.84}, {"seconds": 3.0, "rmse": 0.90},
           {"seconds": 6.0, "rmse": 0.85}, {"seconds": 12.0, "rmse": 0.83}]
  assert tta.first_reaching(curve, 0.85) == 6.0  # unsorted input, tie counts as reached
  assert tta.first_reaching(curve, 0.80) is None


def test_summary_ratios_and_targets(tta):
  svd = {"final_rmse": 0.85, "fit_seconds": 60.0, "peak_rss_gb": 3.0}
  mf = {"final_rmse": 0.84, "fit_seconds": 30.0, "peak_rss_gb": 1.2,
        "curve": [{"seconds": 10.0, "rmse": 0.86}, {"seconds": 15.0, "rmse": 0.849}]}
  s = tta.summarize(svd, mf)
  assert s["mf_seconds_to_surprise_rmse"] == 15.0
  assert s["time_ratio"] == pytest.approx(0.25) and s["time_target_met"]
  assert s["peak_rss_ratio"] == pytest.approx(0.4) and not s["memory_target_met"]
  mf["curve"] = [{"seconds": 10.0, "rmse": 0.86}]
  s = tta.summarize(svd, mf)
  assert s["time_ratio"] is None and not s["time_target_met"]


def test_settings_and_split_per_part(tta, tmp_path):
  from absl import app
  settings = tta.mf_settings("10m", ["batch_size=4096", "sparse_lr=0.1"])
  assert settings["batch_size"] == 4096 and settings["sparse_lr"] == 0.1
  assert settings["epochs"] == tta.TUNED["10m"]["epochs"]
  with pytest.raises(app.UsageError):
    tta.mf_settings("1m", ["learning_rate=1"])
  test = tta.make_config("1m", tmp_path, "test", settings)
  valid = tta.make_config("1m", tmp_path, "valid", settings)
  assert test.split.valid_fraction == 0.0 and valid.split.valid_fraction > 0  # tuning: valid
  assert test.train.batch_size == 4096 and test.train.early_stopping_patience == 0

"""The tune mode: equal budgets, validation only, seeded, pruning, best settings used on test."""

import json

import numpy as np
import pytest

from conftest import TINY_MODEL_FIELDS, tiny_run_config
from netrec_jax import tune
from netrec_jax.eval import evaluator
from netrec_jax.train import loop


def _config(store_root, models: str, trials: int = 3, **fields):
  config = tiny_run_config(store_root, "mf", **TINY_MODEL_FIELDS["mf"], **fields)
  config.split.valid_fraction = 0.1
  config.compare.models = models
  config.tune.trials = trials
  config.tune.startup_trials = 2
  config.eval.ks = (10, 20)
  return config


def test_every_model_gets_the_budget_and_test_rows_stay_unseen(store_root, tmp_path,
                                                                monkeypatch):
  pytest.importorskip("implicit")
  pytest.importorskip("optuna")
  config = _config(store_root, "mf,implicit_als,surprise_baseline")
  parts_seen = []
  real = evaluator.part_data

  def recording(store, split, part, eval_cfg):
    parts_seen.append(part)
    return real(store, split, part, eval_cfg)

  monkeypatch.setattr(evaluator, "part_data", recording)
  compared = []
  real_compare = tune.compare_lib.compare

  def compare_after_tuning(*args, **kwargs):
    compared.append(list(parts_seen))  # what tuning had evaluated before the comparison
    return real_compare(*args, **kwargs)

  monkeypatch.setattr(tune.compare_lib, "compare", compare_after_tuning)
  results = tune.tune(config, tmp_path / "run")
  assert compared and "test" not in compared[0] and "valid" in compared[0]

  folder = tmp_path / "run" / "tune"
  best = {r["model"]: r for r in json.loads((folder / "best.json").read_text())}
  assert best["mf"]["trials"] == 3 and best["implicit_als"]["trials"] == 3
  assert best["surprise_baseline"]["trials"] == 1  # nothing to tune: fitted once
  assert best["mf"]["valid_metric"] == "rmse"
  assert best["implicit_als"]["valid_metric"] == "recall@20"
  for entry in ("mf", "implicit_als"):
    rows = json.loads((folder / entry / "trials.json").read_text())
    assert len(rows) == 3 and {r["state"] for r in rows} <= {"complete", "pruned"}
  # Our trials' runs hold validation figures only; the best one is the comparison's model.
  for trial in (folder / "mf").glob("trial_*"):
    final = json.loads((trial / "final_metrics.json").read_text())
    assert "test" not in final and final["valid"]["rmse"] > 0
  settings = json.loads(best["mf"]["settings"])
  chosen = json.loads((folder / "mf" / f"trial_{best['mf']['best_trial']}" /
                       "final_metrics.json").read_text())
  assert chosen["valid"]["rmse"] == pytest.approx(best["mf"]["valid_value"])
  saved = loop.run_meta(folder / "mf" / f"trial_{best['mf']['best_trial']}")[0]["config"]
  assert saved["model"]["embed_dim"] == settings["model.embed_dim"]
  assert saved["optimizer"]["embed_l2"] == pytest.approx(settings["optimizer.embed_l2"])
  # The best trial had the best validation figure of its study (RMSE: the lowest).
  mf_rows = json.loads((folder / "mf" / "trials.json").read_text())
  assert best["mf"]["valid_value"] == pytest.approx(
      min(r["value"] for r in mf_rows if r["state"] == "complete"))
  by_model = {r["model"]: r for r in results}
  assert by_model["mf"]["tuning"] == "3 trials"
  assert by_model["surprise_baseline"]["tuning"] == "none"
  md = (tmp_path / "run" / "comparison.md").read_text()
  assert "Tuned on the validation rows only" in md and "3 trials per model" in md


def test_the_seeded_sampler_proposes_the_same_trials(store_root, tmp_path):
  pytest.importorskip("implicit")
  pytest.importorskip("optuna")
  config = _config(store_root, "implicit_als")
  tune.tune(config, tmp_path / "a")
  tune.tune(config, tmp_path / "b")
  rows = [json.loads((tmp_path / d / "tune" / "implicit_als" / "trials.json").read_text())
          for d in ("a", "b")]
  strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
  assert strip(rows[0]) == strip(rows[1])
  assert len({r["factors"] for r in rows[0]}) > 1  # it did search


def test_a_caller_can_stop_training_after_a_validation(store_root, tmp_path):
  """The loop's hook the pruner uses: stopping after the first validation."""
  config = tiny_run_config(store_root, "mf", epochs=4, **TINY_MODEL_FIELDS["mf"])
  config.split.valid_fraction = 0.1
  seen = []

  def stop_at_once(epoch, metric, value, lower):
    seen.append((epoch, metric, lower))
    return True

  final = loop.train_and_evaluate(config, tmp_path / "run", on_validation=stop_at_once,
                                  parts=("valid",))
  assert seen == [(0, "rmse", True)]
  assert final["epochs_run"] == 1 and final["stopped_by_caller"] and "test" not in final
  assert np.isfinite(final["valid"]["rmse"])
  assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))  # on by default


def test_tune_refuses_a_split_without_validation_rows(store_root, tmp_path):
  pytest.importorskip("optuna")
  config = _config(store_root, "mf")
  config.split.valid_fraction = 0.0
  with pytest.raises(ValueError, match="validation rows"):
    tune.tune(config, tmp_path / "run")


# ---------------------------------------------------------------------- the epoch log
def _events(folder):
  """(tag, step, value) of every scalar in TensorBoard event files (TFRecord framing)."""
  import struct
  from tensorboardX.proto import event_pb2
  out = []
  for path in sorted(folder.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    at = 0
    while at < len(data):
      (length,) = struct.unpack("<Q", data[at:at + 8])
      event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
      at += 12 + length + 4
      out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
  return out


def test_epoch_log_writes_jsonl_and_tensorboard_and_cuts_back_on_resume(tmp_path):
  pytest.importorskip("tensorboardX")
  from netrec_jax.train.epoch_log import EpochLog, read_log
  records = [{"epoch": e, "train_loss": 1.0 / (e + 1), "valid_rmse": 0.9 - e / 100,
              "valid_recall@20": 0.1 + e / 100, "time": 1e9 + e} for e in range(3)]
  log = EpochLog(tmp_path, None, tensorboard=True)
  log.write(records)
  log.close()
  assert read_log(tmp_path) == records
  scalars = _events(tmp_path / "tensorboard")
  for r in records:
    assert ("train_loss", r["epoch"], pytest.approx(r["train_loss"])) in scalars
    assert ("valid_rmse", r["epoch"], pytest.approx(r["valid_rmse"])) in scalars
    assert ("valid_recall_at_20", r["epoch"], pytest.approx(r["valid_recall@20"])) in scalars
  resumed = EpochLog(tmp_path, 0, tensorboard=False)  # resumed after epoch 0
  assert read_log(tmp_path) == records[:1]
  resumed.write(records[1:])
  assert read_log(tmp_path) == records

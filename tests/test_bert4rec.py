"""BERT4Rec: cloze loss on masked positions only, no leakage of held-out items, sharding,
checkpoints, the popularity-sampled protocol (loo_pop100) and the launcher round trip."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_run_config

from netrec_jax.eval import evaluator
from netrec_jax.data.sequences import PAD, mask_token
from netrec_jax.models.bert4rec import Bert4Rec, cloze_loss
from netrec_jax.train import family, loop


def seq_config(tmp_path, n_users=120, n_items=300, n_ratings=5000):
  """A tiny leave-last-out BERT4Rec setup: compiles and trains in seconds."""
  return tiny_run_config(tmp_path / "stores", "bert4rec", n_users=n_users, n_items=n_items,
                         n_ratings=n_ratings, split="loo",
                         **{"sequence.max_len": 12, "sequence.hidden": 8, "sequence.layers": 1,
                            "sequence.heads": 2, "sequence.attention_dtype": "float32",
                            "train.batch_size": 32, "train.eval_every": 1,
                            "eval.user_batch": 64, "optimizer.lr": 3e-3})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """Store, loo split, training sequences and model of seq_config (no training)."""
  config = family.resolve(seq_config(tmp_path_factory.mktemp("b4r")))
  fam = family.family("bert4rec")
  s = fam.setup(config)
  return {"store": s.store, "split": s.split, "sequences": s.sequences, "model": s.model,
          "params": fam.init(s)["params"], "config": config}


def test_sequences_are_date_ordered_training_items(setup):
  store, split, seqs = setup["store"], setup["split"], setup["sequences"]
  train = split.rows("train")
  for user in range(store.n_users):
    rows = train[np.take(store.user, train) == user]
    np.testing.assert_array_equal(np.sort(seqs.of(user) - 1), np.sort(store.item[rows]))
    by_token = dict(zip(store.item[rows] + 1, store.date[rows]))
    ordered = [by_token[t] for t in seqs.of(user)]
    assert ordered == sorted(ordered), user


def test_cloze_batch_masks_within_the_limit_and_right_aligns(setup):
  from netrec_jax.data import sequences as sequence
  seqs, n_items = setup["sequences"], setup["store"].n_items
  users = np.arange(10)
  rng = np.random.default_rng(0)
  batch = sequence.cloze_batch(seqs, users, rng, 12, 0.2, 0.0, n_items, batch_size=16)
  limit = sequence.max_predictions(12, 0.2)
  masked = batch["weights"] > 0
  assert ((batch["tokens"] == mask_token(n_items)) == masked).all()
  assert (masked.sum(1)[:10] >= 1).all() and (masked.sum(1) <= limit).all()
  assert not masked[10:].any() and (batch["tokens"][10:] == PAD).all()
  for row, user in enumerate(users):
    window = batch["labels"][row][batch["labels"][row] != PAD]
    assert batch["labels"][row, -1] != PAD  # right-aligned
    seq = seqs.of(user)
    assert any((seq[k:k + len(window)] == window).all() for k in range(len(seq) - len(window) + 1))
  last = sequence.cloze_batch(seqs, users, rng, 12, 0.2, 1.0, n_items, batch_size=10)
  assert (last["weights"][:, -1] == 1).all() and last["weights"].sum() == 10
  np.testing.assert_array_equal(last["labels"][:, -1], [seqs.of(u)[-1] for u in users])


def test_loss_and_gradient_ignore_labels_at_unmasked_positions(setup):
  from netrec_jax.data import sequences as sequence
  n_items = setup["store"].n_items
  model = Bert4Rec(n_items, 12, hidden=8, layers=1, heads=2, dropout=0.1)
  batch = sequence.cloze_batch(setup["sequences"], np.arange(8), np.random.default_rng(1), 12,
                               0.3, 0.0, n_items, batch_size=8)
  params = model.init(jax.random.PRNGKey(0), jnp.asarray(batch["tokens"]))
  limit = sequence.max_predictions(12, 0.3)

  def loss(params, labels):
    b = {**batch, "labels": labels}
    return cloze_loss(model, params, b, limit, train=True, rng=jax.random.PRNGKey(3))

  grad_fn = jax.jit(jax.value_and_grad(loss))
  base_loss, base_grad = grad_fn(params, jnp.asarray(batch["labels"]))
  unmasked = batch["weights"] == 0
  assert unmasked.any() and (~unmasked).any()
  other = np.where(unmasked, np.random.default_rng(2).integers(1, n_items + 1, unmasked.shape),
                   batch["labels"])
  other_loss, other_grad = grad_fn(params, jnp.asarray(other))
  assert float(other_loss) == pytest.approx(float(base_loss), abs=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), base_grad, other_grad)
  # A label at a masked position does change the loss.
  row, col = np.argwhere(~unmasked)[0]
  changed = batch["labels"].copy()
  changed[row, col] = changed[row, col] % n_items + 1
  assert float(grad_fn(params, jnp.asarray(changed))[0]) != pytest.approx(float(base_loss),
                                                                          abs=1e-6)


def test_held_out_items_never_reach_the_scoring_input(setup):
  """Test and validation items are not in the input; changing them leaves scores unchanged."""
  from netrec_jax.recommenders import sequence
  store, split, model = setup["store"], setup["split"], setup["model"]
  config = setup["config"]
  params = setup["params"]
  meta = {"epoch": 0, "step": 0}
  base = sequence.SequenceRecommender(model, params, store, split, config, "init", meta)
  users = np.arange(store.n_users)
  tokens = base.input_tokens(users)
  assert (tokens[:, -1] == mask_token(store.n_items)).all()
  for part in ("test", "valid"):
    rows = split.rows(part)
    held_user, held_token = np.take(store.user, rows), np.take(store.item, rows) + 1
    assert len(rows) > 0
    assert not (tokens[held_user] == held_token[:, None]).any(), part
  scores = base.score_items(users)

  def perturbed(rows):
    item = np.array(store.item)
    item[rows] = (item[rows] + 7) % store.n_items
    other = dataclasses.replace(store, item=item)
    return sequence.SequenceRecommender(model, params, other, split, config, "init",
                                        meta).score_items(users)

  held_out = np.concatenate([split.rows("test"), split.rows("valid")])
  np.testing.assert_array_equal(perturbed(held_out), scores)
  # The check can fail: changing a user's last training item changes that user's scores.
  user = int(np.take(store.user, split.rows("test"))[0])
  last_train = split.rows("train")[np.take(store.user, split.rows("train")) == user][-1]
  moved = perturbed(np.array([last_train]))
  assert np.abs(moved[user] - scores[user]).max() > 1e-4
  np.testing.assert_array_equal(np.delete(moved, user, 0), np.delete(scores, user, 0))


def test_popularity_sampler_is_proportional_and_excludes_seen_items():
  from netrec_jax.eval import evaluator
  rng = np.random.default_rng(0)
  popularity = np.arange(40) % 9  # items 0, 9, 18, ... never rated in training
  seen = np.array([3, 4, 5, 21])
  candidates = np.setdiff1d(np.arange(40), seen)
  draws = np.concatenate([evaluator.sample_negatives(rng, candidates, 1, popularity)
                          for _ in range(20000)])
  counts = np.bincount(draws, minlength=40)
  assert counts[seen].sum() == 0 and counts[popularity == 0].sum() == 0
  expected = np.where(np.isin(np.arange(40), seen), 0, popularity).astype(float)
  expected = expected / expected.sum() * len(draws)
  keep = expected > 0
  chi2 = float((((counts - expected) ** 2)[keep] / expected[keep]).sum())
  assert chi2 < 60, chi2  # 28 degrees of freedom: the 0.999 quantile is about 56.9
  many = evaluator.sample_negatives(rng, candidates, 20, popularity)
  assert len(set(many)) == 20 and not set(many) & set(seen)
  uniform = np.concatenate([evaluator.sample_negatives(rng, candidates, 1) for _ in range(3000)])
  assert np.bincount(uniform, minlength=40)[popularity == 0].sum() > 0  # uniform ignores it
  with pytest.raises(ValueError, match="too small"):
    evaluator.sample_negatives(rng, candidates, 100, popularity)


def test_restores_folds_in_and_reports_both_protocols(tmp_path):
  """(4 devices = 1 and resume are the family contract's, tests/test_families.py.)"""
  config = seq_config(tmp_path)
  config.mesh.data = 4
  final = loop.train_and_evaluate(config, tmp_path / "run")
  restored = loop.load_recommender(tmp_path / "run", config)
  scores = restored.score_items(np.arange(40))
  # A new user given an existing user's training movies (in order) scores like that user.
  user = int(np.argmax(restored.sequences.lengths()))
  history = restored.sequences.of(user) - 1  # tokens are item index + 1
  np.testing.assert_allclose(restored.fold_in(history, np.ones(len(history))),
                             scores[user] if user < 40 else
                             restored.score_items(np.array([user]))[0], atol=1e-5)
  # The restored best checkpoint reproduces the run's final metrics exactly.
  again = evaluator.evaluate_run(restored)
  assert again["test"] == final["test"] and again["valid"] == final["valid"]
  log = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert len(log) == 2
  assert final["protocol"] == "loo" and final["test"]["ranking_protocol"] == "loo_full"
  assert final["test"]["sampled"]["protocol"] == "loo_pop100"
  assert final["test"]["n_users"] == final["test"]["sampled"]["n"] > 0


def test_trains_and_evaluates_through_launch_py(tmp_path):
  """Train, then --mode=eval in a new process reproduces the metrics; a bad shape is named."""
  import os
  import subprocess
  import sys
  from pathlib import Path
  repo = Path(__file__).resolve().parents[1]
  common = ["launch.py", "--experiment=bert4rec_ml100k", "--config.data.source=synthetic",
            f"--config.data.store_root={tmp_path}/stores",
            "--config.data.synthetic.n_users=120", "--config.data.synthetic.n_items=300",
            "--config.data.synthetic.n_ratings=5000", "--config.data.min_user_ratings=5",
            "--config.sequence.max_len=12", "--config.sequence.hidden=8",
            "--config.sequence.layers=1", "--config.train.epochs=2",
            "--config.train.eval_every=1", "--config.eda=False",
            "--config.compare.after_train=False"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  launch = lambda *args: subprocess.run([sys.executable, *common, *args], cwd=repo, env=env,
                                        capture_output=True, text=True, timeout=600,
                                        check=False)
  run = launch(f"--workdir={tmp_path / 'train'}")
  assert run.returncode == 0, run.stderr[-3000:]
  trained = json.loads((tmp_path / "train" / "final_metrics.json").read_text())
  assert trained["model"] == "bert4rec" and trained["test"]["ranking_protocol"] == "loo_full"
  assert "protocol loo_full" in run.stdout
  ev = launch("--mode=eval", f"--restore_from={tmp_path / 'train'}",
              f"--workdir={tmp_path / 'eval'}")
  assert ev.returncode == 0, ev.stderr[-3000:]
  evaluated = json.loads((tmp_path / "eval" / "final_metrics.json").read_text())
  assert evaluated["test"] == trained["test"] and evaluated["valid"] == trained["valid"]
  bad = launch("--config.sequence.hidden=16", "--mode=eval",
               f"--restore_from={tmp_path / 'train'}", f"--workdir={tmp_path / 'bad'}")
  assert bad.returncode != 0
  assert "sequence.hidden: checkpoint 8, config 16" in bad.stderr

"""Fixed sampled-protocol negatives: drawn once per split, stored, verified, the same for all."""

from __future__ import annotations

import numpy as np
import pytest

from netrec_jax.data import negatives, splits, synthetic
from netrec_jax.data.errors import DataError
from netrec_jax.data.store import RatingStore
from netrec_jax.eval import evaluator, metrics


@pytest.fixture()
def store(tmp_path) -> RatingStore:
  cfg = synthetic.SyntheticConfig(n_users=300, n_items=120, n_ratings=9000)
  return synthetic.build_synthetic_store(cfg, tmp_path / "s")


class ScoreModel:
  """Fixed pseudo-random scores per (user, item): a model the evaluator can rank with."""

  rating_note = "ranking only"

  def __init__(self, name: str, seed: int, n_users: int, n_items: int):
    self.name = name
    self.scores = np.random.default_rng(seed).random((n_users, n_items))

  def predict(self, users, items):
    return None

  def score_items(self, users):
    return self.scores[users]


def _spy(monkeypatch) -> list:
  seen = []
  real = negatives.fixed_negatives

  def spy(*args, **kwargs):
    seen.append(real(*args, **kwargs))
    return seen[-1]

  monkeypatch.setattr(negatives, "fixed_negatives", spy)
  return seen


def test_every_model_and_every_rerun_ranks_against_the_same_negatives(store, monkeypatch):
  split = splits.leave_last_out(store)
  data = evaluator.prepare(store, split, relevance_threshold=None)
  seen = _spy(monkeypatch)
  a = ScoreModel("a", 0, store.n_users, store.n_items)
  b = ScoreModel("b", 1, store.n_users, store.n_items)
  results = [evaluator.evaluate(m, data, ks=(10,), ranking=False, sampled_negatives=30,
                                sampler="popularity")["sampled"] for m in (a, b, a)]
  first = seen[0]
  assert first.path is not None and first.path.is_file()
  assert first.path.parent == store.splits_dir / negatives.FOLDER
  assert store.list_splits() == []  # the negatives' files are not taken for splits
  for fixed, result in zip(seen, results):
    np.testing.assert_array_equal(fixed.items, first.items)
    assert result["negatives_sha256"] == first.sha256 == negatives.array_sha256(
        np.load(first.path))
  assert results[0] == results[2]  # a rerun of one model: identical figures
  # Deleting the files redraws exactly the same negatives (seeded by the split's content).
  for path in negatives.paths(store, split, "popularity", 30):
    path.unlink()
  again = negatives.fixed_negatives(store, split, "popularity", 30)
  assert again.sha256 == first.sha256
  # A different split, sampler or n draws other negatives, in another file.
  other = negatives.fixed_negatives(store, split, "uniform", 30)
  assert other.path != first.path and other.sha256 != first.sha256
  # The metrics are the hand computation over the stored negatives (ties against the item).
  users = np.flatnonzero(np.diff(data.relevant.indptr))
  pos = a.scores[users, data.relevant.indices[data.relevant.indptr[users]]]
  neg = np.take_along_axis(a.scores[users], first.of(users), axis=1)
  rank = (neg >= pos[:, None]).sum(1)
  assert results[0]["hr@10"] == pytest.approx(np.mean(rank < 10), abs=1e-12)
  expected = metrics.sampled_rank_metrics(pos, neg, (10,))
  assert results[0]["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)


def test_negatives_exclude_every_known_positive(store):
  split = splits.random_split(store)
  for sampler in negatives.SAMPLERS:
    fixed = negatives.fixed_negatives(store, split, sampler, 25)
    test_users = np.unique(np.take(store.user, split.rows("test")))
    np.testing.assert_array_equal(fixed.users, test_users)
    counts = negatives.train_item_counts(store, split)
    for user, row in zip(fixed.users, fixed.items):
      rows = np.arange(*store.user_offsets[user:user + 2])
      known = set(np.take(store.item, rows[np.asarray(split.assignment)[rows] >= 0]))
      assert len(set(row)) == 25 and not set(row) & known, (sampler, user)
      if sampler == "popularity":
        assert (counts[row] > 0).all()


def test_a_damaged_negatives_file_is_refused(store):
  split = splits.leave_last_out(store)
  fixed = negatives.fixed_negatives(store, split, "uniform", 20)
  raw = bytearray(fixed.path.read_bytes())
  raw[-7] ^= 0x5A  # one byte of the array changed
  fixed.path.write_bytes(bytes(raw))
  with pytest.raises(DataError) as e:
    negatives.fixed_negatives(store, split, "uniform", 20)
  message = str(e.value)
  assert message.startswith(str(fixed.path)) and "\n" not in message
  assert "stored negatives fail their fingerprint" in message
  fixed.path.write_bytes(bytes(raw[:100]))  # truncated
  with pytest.raises(DataError, match=f"{fixed.path.name}: unreadable stored negatives"):
    negatives.fixed_negatives(store, split, "uniform", 20)


def test_the_vectorised_draw_is_sequential_sampling_without_replacement():
  """Inclusion frequencies of the rejection draw equal numpy's choice(replace=False, p)."""
  n_items, n, n_users = 12, 4, 20_000
  weight = np.array([0, 5, 1, 3, 8, 2, 0, 4, 6, 1, 2, 9], np.float64)
  known = np.array([3, 4, 10])  # every user's known items
  keys = np.sort((np.arange(n_users)[:, None] * n_items + known).reshape(-1))
  cdf = np.cumsum(weight)
  drawn = negatives._draw_batch(np.random.default_rng(1), cdf, 11, n_items, n, keys, n_users,
                                weight)
  assert not np.isin(drawn, known).any() and not np.isin(drawn, [0, 6]).any()
  assert all(len(set(r)) == n for r in drawn[:500])
  rng = np.random.default_rng(2)
  candidates = np.setdiff1d(np.arange(n_items), known)
  reference = np.stack([negatives.sample_negatives(rng, candidates, n, weight)
                        for _ in range(n_users)])
  for k in range(n):  # the k-th pick has the same law in both (successive sampling)
    got = np.bincount(drawn[:, k], minlength=n_items) / n_users
    want = np.bincount(reference[:, k], minlength=n_items) / n_users
    np.testing.assert_allclose(got, want, atol=0.015)


def test_too_small_a_catalog_is_a_negatives_error(store):
  split = splits.leave_last_out(store)
  with pytest.raises(negatives.NegativesError, match="too small"):
    negatives.fixed_negatives(store, split, "uniform", store.n_items)


def test_a_run_records_the_negatives_it_ranked_against(store_root, tmp_path):
  import json

  from conftest import tiny_run_config

  from netrec_jax.train import loop
  config = tiny_run_config(store_root, "mf", epochs=1, **{"eval.sampled_negatives": 20})
  final = loop.train_and_evaluate(config, tmp_path / "run")
  sampled = final["test"]["sampled"]
  audit = json.loads((tmp_path / "run" / "leakage_audit.json").read_text())
  assert audit["negatives"]["negatives_sha256"] == sampled["negatives_sha256"]
  assert negatives.array_sha256(np.load(sampled["negatives_file"])) == sampled["negatives_sha256"]
  # A second run (another model's, or a rerun) reads the same file.
  again = loop.train_and_evaluate(config, tmp_path / "run2")
  assert again["test"]["sampled"] == sampled

"""JAX ALS against dense numpy references and against implicit's ALS at equal settings."""

import jax
import numpy as np
import pytest
import scipy.sparse as sp

from netrec_jax.baselines import jax_als
from netrec_jax.baselines.implicit_models import ImplicitRecommender
from netrec_jax.data.row_batches import interaction_matrix
from netrec_jax.data import splits
from netrec_jax.data.synthetic import SyntheticConfig, build_synthetic_store
from netrec_jax.eval import evaluator


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """60 users x 40 items: small enough for dense per-row solves; items 0 and 1 have no
  training ratings (their factors must come out zero)."""
  store = build_synthetic_store(SyntheticConfig(n_users=60, n_items=40, n_ratings=700, seed=3),
                                tmp_path_factory.mktemp("tiny") / "store")
  rows = splits.random_split(store, 0.2, 0.0, seed=0).rows("train")
  return store, rows[np.take(store.item, rows) > 1]


def _ridge(y: np.ndarray, idx: np.ndarray, target: np.ndarray, reg: float) -> np.ndarray:
  """Exact WR-ALS row: (Y_u^T Y_u + reg n_u I) x = Y_u^T r_u; zero without ratings."""
  k = y.shape[1]
  if len(idx) == 0:
    return np.zeros(k)
  yu = y[idx].astype(np.float64)
  return np.linalg.solve(yu.T @ yu + reg * len(idx) * np.eye(k), yu.T @ target)


def test_explicit_half_sweeps_solve_the_normal_equations(tiny):
  store, rows = tiny
  k, reg = 4, 0.1
  rng = np.random.default_rng(0)
  init = (np.zeros((store.n_users, k), np.float32),
          rng.normal(0, 0.3, (store.n_items, k)).astype(np.float32))
  model = jax_als.JaxALS(factors=k, reg=reg, iterations=1, cg_steps=0, chunk=64).fit(
      store, rows, init=init)
  users, items = np.take(store.user, rows), np.take(store.item, rows)
  r = store.stars(rows) - model.mean
  # First half: users given the initial items; second: items given the new users.
  for u in range(store.n_users):
    mine = users == u
    np.testing.assert_allclose(model.user_factors[u], _ridge(init[1], items[mine], r[mine], reg),
                               atol=2e-4)
  for i in range(store.n_items):
    mine = items == i
    np.testing.assert_allclose(model.item_factors[i],
                               _ridge(model.user_factors, users[mine], r[mine], reg), atol=2e-4)
  # k conjugate-gradient steps solve a k-dimensional system: the CG path agrees.
  cg = jax_als.JaxALS(factors=k, reg=reg, iterations=1, cg_steps=k, chunk=64).fit(
      store, rows, init=init)
  np.testing.assert_allclose(cg.item_factors, model.item_factors, atol=1e-3)


def _cg_reference(y, idx, c, x, reg, w0, steps):
  """implicit's least_squares_cg for one row, in float64, with the unobserved weight w0."""
  y = y.astype(np.float64)
  x = x.astype(np.float64)
  if len(idx) == 0:
    return np.zeros_like(x)
  lhs = w0 * y.T @ y + reg * np.eye(y.shape[1]) + (y[idx].T * (c - w0)) @ y[idx]
  rhs = y[idx].T @ c
  if steps == 0:
    return np.linalg.solve(lhs, rhs)
  r = rhs - lhs @ x
  p, rs = r.copy(), r @ r
  for _ in range(steps):
    if rs < 1e-20:
      break
    ap = lhs @ p
    alpha = rs / (p @ ap)
    x, r = x + alpha * p, r - alpha * ap
    rs_new = r @ r
    p, rs = r + rs_new / rs * p, rs_new
  return x


@pytest.mark.parametrize("settings", [
    dict(confidence="linear", alpha=2.0, cg_steps=3),  # implicit 0.7's model
    dict(confidence="hu", alpha=5.0, unobserved_weight=0.3, reg_exponent=0.5, cg_steps=0),
])
def test_ials_half_sweeps_match_a_dense_reference(tiny, settings):
  store, rows = tiny
  matrix = interaction_matrix(store, rows)
  k, reg = 6, 0.05
  model = jax_als.JaxIALS(factors=k, iterations=1, regularization=reg, chunk=64, seed=1,
                          **settings)
  rng = np.random.default_rng(1)
  init = (rng.random((store.n_users, k), np.float32) * 0.01,
          rng.random((store.n_items, k), np.float32) * 0.01)
  model.fit_matrix(matrix, init=init)
  w0, nu, steps = model.unobserved_weight, model.reg_exponent, model.cg_steps
  # Users from the initial items: tight. Items from the new users: 3 CG steps far from
  # convergence amplify float32 rounding (the kernel run in float64 matches to 1e-13; numpy's
  # own float32 CG is off by ~4e-4), so that side is tight only for exact solves.
  for m, x0, y, x1, tol in (
      (matrix, init[0], init[1], model.user_factors, 1e-4),
      (matrix.T.tocsr(), init[1], model.user_factors, model.item_factors,
       2e-2 if steps else 1e-4)):
    for u in range(m.shape[0]):
      idx = m.indices[m.indptr[u]:m.indptr[u + 1]]
      c = jax_als.confidence(m.data[m.indptr[u]:m.indptr[u + 1]], model.alpha, model.confidence)
      reg_u = reg * (len(idx) + w0 * m.shape[1]) ** nu
      ref = _cg_reference(y, idx, c.astype(np.float64), x0[u], reg_u, w0, steps)
      np.testing.assert_allclose(x1[u], ref, atol=tol * max(1.0, np.abs(ref).max()))


def test_ials_matches_implicit_objective_from_the_same_start(tiny):
  """One and three iterations from implicit's own initialisation (same seed, same draws)."""
  import implicit
  from threadpoolctl import threadpool_limits
  store, rows = tiny
  matrix = interaction_matrix(store, rows)
  rng = np.random.default_rng(0)  # implicit's draws for random_state=0
  start = jax_als.ials_objective(matrix, rng.random((store.n_users, 8), np.float32) * 0.01,
                                 rng.random((store.n_items, 8), np.float32) * 0.01, 0.05, 2.0,
                                 "linear")
  for iterations in (1, 3):
    with threadpool_limits(1, "blas"):
      theirs = implicit.als.AlternatingLeastSquares(factors=8, iterations=iterations,
                                                    regularization=0.05, alpha=2.0,
                                                    random_state=0)
      theirs.fit(matrix, show_progress=False)
    ours = jax_als.JaxIALS(factors=8, iterations=iterations, regularization=0.05, alpha=2.0,
                           confidence="linear", seed=0, chunk=64).fit_matrix(matrix)
    expected = jax_als.ials_objective(matrix, theirs.user_factors, theirs.item_factors, 0.05,
                                      2.0, "linear")
    # Float32 rounding differs (summation order): agree to 0.1% of the progress made.
    assert abs(ours.objective(matrix) - expected) < 1e-3 * (start - expected)
    np.testing.assert_allclose(ours.item_factors, theirs.item_factors, atol=1e-2)


def test_ials_ranks_like_implicit_and_does_not_depend_on_devices(tmp_path, monkeypatch):
  store = build_synthetic_store(SyntheticConfig(n_users=1200, n_items=500, n_ratings=40_000),
                                tmp_path / "store")
  split = splits.random_split(store, 0.1, 0.0, seed=0)
  data = evaluator.prepare(store, split)
  settings = dict(factors=32, iterations=8, regularization=0.05, alpha=2.0)
  theirs = ImplicitRecommender("als", **settings).fit(store, data.train_rows)
  ours = jax_als.JaxIALS(confidence="linear", **settings).fit(store, data.train_rows)
  with jax.default_device(jax.devices()[-1]):
    elsewhere = jax_als.JaxIALS(confidence="linear", **settings).fit(store, data.train_rows)
  np.testing.assert_allclose(elsewhere.user_factors, ours.user_factors, atol=1e-5)
  assert len(jax_als._devices()) == 4  # conftest: chunks were spread over 4 devices
  monkeypatch.setattr(jax_als, "_devices", lambda: jax.devices()[:1])
  one = jax_als.JaxIALS(confidence="linear", **settings).fit(store, data.train_rows)
  monkeypatch.undo()
  # Rows are independent and the Gram matrix is summed in the rows' own order: the same bits.
  np.testing.assert_array_equal(one.item_factors, ours.item_factors)
  recall = {m.name: evaluator.evaluate(m, data, ks=(20,))["ranking"]["recall@20"]
            for m in (theirs, ours)}
  assert recall["jax_ials"] > 0.05  # far above random (20 of 500 items: ~0.04 at best)
  assert recall["jax_ials"] == pytest.approx(recall["implicit_als"], abs=0.005)


def test_pack_rows_keeps_every_entry_once_on_its_device():
  """Rows dealt to 2 devices and packed into chunks: every stored entry appears once, in its
  row's segments, on the device that owns the row; padding carries a = b = 0."""
  m = sp.random(30, 200, density=0.2, format="csr", random_state=0, dtype=np.float32)
  m.data[:] = np.arange(1, m.nnz + 1)
  lens = np.diff(m.indptr)
  n_local, segments, rows = 16, 4, 3
  internal = jax_als.deal_rows(lens, 2, n_local)
  assert sorted(internal) == sorted(set(internal)) and (internal % n_local < 15).all()
  other = np.arange(200)[::-1].copy()  # the other side's internal index of each column
  plan = jax_als.plan_chunks(lens, internal, 2, n_local, segments, rows)
  chunks = jax_als.pack_rows(m, m.data, 2 * m.data, np.arange(30, dtype=np.float32), internal,
                             other, plan, n_local, segments, rows, plan.n_groups + 1)
  assert chunks.idx.shape == (plan.n_groups + 1, 2, segments, jax_als.SEGMENT)
  seen = {}
  for g in range(chunks.rows.shape[0]):
    for d in range(2):
      c = jax_als.Chunks(*(v[g, d] for v in chunks))
      assert (np.diff(c.seg_row) >= 0).all()  # sorted, as segment_sum is told
      for slot, (local, reg) in enumerate(zip(c.rows, c.reg)):
        segs = c.seg_row == slot
        if local == n_local:  # a padding row
          assert reg == 1.0 and not c.a[segs].any()
          continue
        row = int(np.flatnonzero(internal == d * n_local + local)[0])
        assert reg == row and row not in seen
        real = c.a[segs] != 0
        seen[row] = (c.idx[segs][real], c.a[segs][real], c.b[segs][real])
  assert sorted(seen) == [r for r in range(30) if lens[r]]
  for row, (idx, a, b) in seen.items():
    entries = slice(m.indptr[row], m.indptr[row + 1])
    np.testing.assert_array_equal(idx, other[m.indices[entries]])
    np.testing.assert_array_equal(a, m.data[entries])
    np.testing.assert_array_equal(b, 2 * a)
  # Both devices get about the same number of entries (dealt by length).
  per_device = [lens[internal // n_local == d].sum() for d in range(2)]
  assert abs(per_device[0] - per_device[1]) <= lens.max()

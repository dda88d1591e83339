"""implicit ALS folds new users in (strong generalization needs it) by the least-squares user
solve, checked against numpy's solve of the same normal equations."""

import numpy as np
import pytest
import scipy.sparse as sp

from netrec_jax.baselines.implicit_models import ImplicitRecommender
from netrec_jax.data.synthetic import SyntheticConfig, build_synthetic_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  return build_synthetic_store(SyntheticConfig(n_users=200, n_items=80, n_ratings=5000),
                               tmp_path_factory.mktemp("s") / "store")


@pytest.mark.parametrize("alpha", [1.0, 4.0])
def test_als_fold_in_solves_the_user_normal_equations(store, alpha):
  rows = np.arange(store.n_ratings)
  model = ImplicitRecommender("als", factors=8, iterations=5, regularization=0.05,
                              alpha=alpha).fit(store, rows)
  y = model.item_factors.astype(np.float64)
  inputs = [np.array([3, 10, 41]), np.array([0, 5, 6, 7, 60, 79])]
  # Confidence c = alpha for each given item (implicit scales the binary row by alpha):
  # (Y^T Y + Y_S^T (c - 1) Y_S + reg I) x = c Y_S^T 1.
  expected = []
  for items in inputs:
    a = y.T @ y + (alpha - 1) * y[items].T @ y[items] + 0.05 * np.eye(8)
    x = np.linalg.solve(a, alpha * y[items].sum(0))
    expected.append(y @ x)
  batch = sp.csr_matrix((np.full(9, 5.0), (np.repeat([0, 1], [3, 6]), np.concatenate(inputs))),
                        shape=(2, store.n_items))
  np.testing.assert_allclose(model.fold_in_batch(batch), np.stack(expected), rtol=2e-3,
                             atol=2e-4)
  np.testing.assert_allclose(model.fold_in(inputs[1], np.ones(6)), expected[1], rtol=2e-3,
                             atol=2e-4)


def test_bpr_says_it_cannot_fold_in(store):
  model = ImplicitRecommender("bpr", factors=8, iterations=2).fit(store,
                                                                   np.arange(store.n_ratings))
  with pytest.raises(NotImplementedError, match="no closed-form"):
    model.fold_in(np.array([1, 2]), np.ones(2))


@pytest.mark.parametrize("unobserved_weight, reg_exponent", [(1.0, 0.0), (0.3, 0.5)])
def test_jax_ials_fold_in_solves_the_user_normal_equations(store, unobserved_weight,
                                                           reg_exponent):
  """JaxIALS's fold-in against numpy's solve of Rendle et al.'s normal equations (confidence,
  unobserved weight w0 and frequency-scaled regularisation included)."""
  from netrec_jax.baselines.jax_als import JaxIALS
  rows = np.arange(store.n_ratings)
  model = JaxIALS(factors=8, iterations=4, regularization=0.05, alpha=2.0, confidence="hu",
                  unobserved_weight=unobserved_weight, reg_exponent=reg_exponent,
                  cg_steps=0).fit(store, rows)
  y = model.item_factors.astype(np.float64)
  w0, n_items = unobserved_weight, store.n_items
  inputs = [np.array([3, 10, 41]), np.array([0, 5, 6, 7, 60, 79])]
  expected = []
  for items in inputs:  # c = 1 + alpha for a given item (Hu), w0 for every other
    c = 1.0 + 2.0
    reg = 0.05 * (len(items) + w0 * n_items) ** reg_exponent
    a = w0 * y.T @ y + (c - w0) * y[items].T @ y[items] + reg * np.eye(8)
    expected.append(y @ np.linalg.solve(a, c * y[items].sum(0)))
  batch = sp.csr_matrix((np.full(9, 4.0), (np.repeat([0, 1], [3, 6]), np.concatenate(inputs))),
                        shape=(2, n_items))
  np.testing.assert_allclose(model.fold_in_batch(batch), np.stack(expected), rtol=2e-3,
                             atol=2e-4)
  np.testing.assert_allclose(model.fold_in(inputs[0], np.ones(3)), expected[0], rtol=2e-3,
                             atol=2e-4)

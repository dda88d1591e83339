"""Explicit-feedback ALS with weighted-lambda regularisation (Zhou et al. 2008), in JAX.

The fair ALS for RMSE: it fits ratings (centred on the training mean), not preferences. Each
half-sweep solves every user's (or item's) normal equations at once:
  (Q_u^T Q_u + lambda * n_u * I) p_u = Q_u^T (r_u - mu)
The k x k Gram matrices are accumulated over chunks of ratings sorted by the solved side: a
chunk covers a contiguous range of at most `chunk` rows, so it is reduced with segment_sum into
that range only and added in place (O(nnz k^2) work in all, O(chunk k^2 + n k^2) memory), then
one batched jnp.linalg.solve per half-sweep.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from netrec_jax.data.store import RatingStore


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _add_chunk(gram: jax.Array, rhs: jax.Array, other: jax.Array, first: jax.Array,
               local: jax.Array, other_idx: jax.Array, r: jax.Array, weight: jax.Array):
  """Adds one chunk's Gram matrices and right-hand sides to rows first + local."""
  chunk = local.shape[0]
  q = other[other_idx] * weight[:, None]
  g = jax.ops.segment_sum(q[:, :, None] * q[:, None, :], local, num_segments=chunk)
  b = jax.ops.segment_sum(q * r[:, None], local, num_segments=chunk)
  rows = first + jnp.arange(chunk)
  return gram.at[rows].add(g, mode="drop"), rhs.at[rows].add(b, mode="drop")


@jax.jit
def _solve(gram: jax.Array, rhs: jax.Array, counts: jax.Array, reg: float) -> jax.Array:
  k = gram.shape[-1]
  ridge = reg * jnp.maximum(counts, 1.0)[:, None, None] * jnp.eye(k, dtype=gram.dtype)
  return jnp.linalg.solve(gram + ridge, rhs[..., None])[..., 0]


class JaxALS:
  """WR-ALS rating model behind the evaluator interface."""

  rating_note = ""
  cold_rule = "training mean for unseen users or items (their factors solve to zero)"

  def __init__(self, factors: int = 64, reg: float = 0.05, iterations: int = 10, seed: int = 0,
               chunk: int = 1 << 14, name: str = "jax_als"):
    if factors <= 0 or iterations <= 0 or reg <= 0:
      raise ValueError("factors, iterations and reg must be positive")
    self.factors, self.reg, self.iterations = factors, reg, iterations
    self.seed, self.chunk, self.name = seed, chunk, name

  def _half_sweep(self, own, other_idx, r, other_factors, n):
    """Solves every row of one side; own must be sorted (ratings grouped by own row)."""
    k = self.factors
    gram = jnp.zeros((n, k, k), jnp.float32)
    rhs = jnp.zeros((n, k), jnp.float32)
    for lo in range(0, len(own), self.chunk):
      sl = slice(lo, lo + self.chunk)
      size = len(own[sl])
      pad = self.chunk - size  # one compiled shape: pad with weight-0 ratings
      first = int(own[lo])
      gram, rhs = _add_chunk(gram, rhs, other_factors, jnp.int32(first),
                             jnp.asarray(np.pad(own[sl] - first, (0, pad))),
                             jnp.asarray(np.pad(other_idx[sl], (0, pad))),
                             jnp.asarray(np.pad(r[sl], (0, pad))),
                             jnp.asarray(np.pad(np.ones(size, np.float32), (0, pad))))
    counts = jnp.asarray(np.bincount(own, minlength=n).astype(np.float32))
    return _solve(gram, rhs, counts, self.reg)

  def fit(self, store: RatingStore, rows: np.ndarray) -> "JaxALS":
    users = np.take(store.user, rows).astype(np.int32)
    items = np.take(store.item, rows).astype(np.int32)
    stars = store.stars(rows).astype(np.float32)
    self.mean = float(stars.mean())
    r = stars - self.mean
    key = jax.random.PRNGKey(self.seed)
    self.item_factors = 0.1 * jax.random.normal(key, (store.n_items, self.factors))
    self.user_factors = jnp.zeros((store.n_users, self.factors))
    by_user = np.argsort(users, kind="stable")
    by_item = np.argsort(items, kind="stable")
    u_sorted = (users[by_user], items[by_user], r[by_user])
    i_sorted = (items[by_item], users[by_item], r[by_item])
    for _ in range(self.iterations):
      self.user_factors = self._half_sweep(*u_sorted, self.item_factors, store.n_users)
      self.item_factors = self._half_sweep(*i_sorted, self.user_factors, store.n_items)
    self.user_factors = np.asarray(self.user_factors)
    self.item_factors = np.asarray(self.item_factors)
    return self

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return self.mean + np.einsum("nk,nk->n", self.user_factors[users], self.item_factors[items])

  def score_items(self, users: np.ndarray) -> np.ndarray:
    return self.user_factors[users] @ self.item_factors.T

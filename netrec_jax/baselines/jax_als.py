"""Alternating least squares in JAX: explicit WR-ALS (ratings) and implicit-feedback iALS.

Both solve, for every row u of one side (users, then items) with the other side Y fixed,
  (G + reg_u I + sum_{i in I_u} a_ui y_i y_i^T) x_u = sum_{i in I_u} b_ui y_i
  explicit WR-ALS (Zhou et al. 2008): G = 0, a = 1, b = r - mean, reg_u = lambda * n_u
  iALS (Hu et al. 2008; Rendle et al. 2021): G = w0 Y^T Y, a = c - w0, b = c, where c is the
    confidence of an observed interaction (1 + alpha r, or implicit's alpha r), w0 the weight
    of every unobserved pair, and reg_u = reg * (n_u + w0 * n_other) ** reg_exponent.
G is one k x k matrix for all rows, so a row costs O(n_u k) per matrix-vector product and
conjugate gradient (a few steps warm-started from the previous factors, as implicit does)
never forms a per-row Gram matrix. Scatter-accumulated Gram matrices were our cost before.

Layout: rows are grouped by length into buckets (bucket_width), each padded to its width L
(padding has a = b = 0) and cut into chunks of about `chunk` ratings. A chunk is one jitted
call on static shapes that depend only on L: products are einsums over the gathered
[rows, L, k] factors (gathered once, in cache for every CG step), with no scatter but the
write of the solved rows into a donated output. Factor matrices are padded to a power of two
of rows, so users and items, and JaxALS and JaxIALS fits of one store, share compiled chunks.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax import lax

from netrec_jax.data.store import RatingStore

# (rows, idx, a, b, reg) of one bucket, each with a leading [n_chunks, rows_per_chunk] shape.
Bucket = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]

_TINY = 1e-20  # implicit's CG stops a row whose squared residual falls below this


def bucket_width(lens: np.ndarray, min_len: int = 16) -> np.ndarray:
  """Padded width of rows of these lengths: the next power of two (at least min_len).

  Padding costs ~45% more work here; adding 1.5 x powers of two cut it to ~20% but doubled
  the compiled shapes (compile 3.6 -> 6.5 s at 1M) with no speed-up we could measure on the
  shared machine (each bucket's last chunk is padded too)."""
  return np.maximum(min_len, 1 << np.ceil(np.log2(np.maximum(lens, 1))).astype(np.int64))


def bucket_rows(matrix: sp.csr_matrix, a: np.ndarray, b: np.ndarray, reg: np.ndarray,
                chunk: int = 1 << 14, min_len: int = 16, pad_row: int | None = None
                ) -> list[Bucket]:
  """Rows of `matrix` with entries, grouped into padded buckets of bucket_width.

  a, b: per stored entry (matrix.data order); reg: per row. Padding rows (to fill the last
  chunk of a bucket) have row index pad_row (default: the number of rows), a = b = 0, reg = 1.
  """
  pad_row = matrix.shape[0] if pad_row is None else pad_row
  lens = np.diff(matrix.indptr)
  width = bucket_width(lens, min_len)
  buckets = []
  for size in np.unique(width[lens > 0]):
    sel = np.flatnonzero((width == size) & (lens > 0))
    # Not fewer for a small bucket (shapes are shared); never one row, which XLA:CPU turns
    # into a strided column reduction ~30x slower per entry.
    per_chunk = max(2, chunk // int(size))
    cols = np.arange(size)
    mask = cols[None, :] < lens[sel, None]
    src = np.where(mask, matrix.indptr[sel, None] + cols[None, :], 0)
    buckets.append(tuple(_in_chunks(values, per_chunk, dtype, fill) for values, dtype, fill in (
        (sel, np.int32, pad_row),
        (np.where(mask, matrix.indices[src], 0), np.int32, 0),
        (np.where(mask, a[src], 0), np.float32, 0),
        (np.where(mask, b[src], 0), np.float32, 0),
        (reg[sel], np.float32, 1.0))))  # reg 1: padding rows stay well-posed
  return buckets


def _in_chunks(values: np.ndarray, per_chunk: int, dtype, fill) -> np.ndarray:
  """values [n, ...] padded with `fill` to whole chunks: [n_chunks, per_chunk, ...]."""
  n_pad = -(-len(values) // per_chunk) * per_chunk
  out = np.full((n_pad,) + values.shape[1:], fill, dtype)
  out[:len(values)] = values
  return out.reshape((n_pad // per_chunk, per_chunk) + values.shape[1:])


def _cg(x, y, gram, idx, a, b, reg, steps: int):
  """`steps` conjugate-gradient steps from x for one chunk (implicit's least_squares_cg)."""
  yg = lax.optimization_barrier(y[idx])  # [rows, L, k], gathered once, reused by every step

  def matvec(p):
    t = a * jnp.einsum("rlk,rk->rl", yg, p)
    return p @ gram + reg[:, None] * p + (t[..., None] * yg).sum(1)

  # r = b - A x in two passes over yg (one product per row entry, one sum of rows).
  r = ((b - a * jnp.einsum("rlk,rk->rl", yg, x))[..., None] * yg).sum(1) - x @ gram - (
      reg[:, None] * x)
  rs = (r * r).sum(-1)

  def step(_, state):
    x, r, p, rs = state
    ap = matvec(p)
    pap = (p * ap).sum(-1)
    alpha = jnp.where(rs > _TINY, rs / jnp.where(pap > 0, pap, 1.0), 0.0)
    x = x + alpha[:, None] * p
    r = r - alpha[:, None] * ap
    rs_new = (r * r).sum(-1)
    beta = jnp.where(rs > _TINY, rs_new / jnp.where(rs > _TINY, rs, 1.0), 0.0)
    return x, r, r + beta[:, None] * p, rs_new

  return lax.fori_loop(0, steps, step, (x, r, r, rs))[0]


def _exact(y, gram, idx, a, b, reg):
  """Direct solves for one chunk: forms each row's k x k matrix (tests, small k)."""
  yg = y[idx]
  k = y.shape[1]
  lhs = gram + reg[:, None, None] * jnp.eye(k, dtype=y.dtype) + jnp.einsum(
      "rlk,rl,rlj->rkj", yg, a, yg)
  rhs = jnp.einsum("rlk,rl->rk", yg, b)
  return jnp.linalg.solve(lhs, rhs[..., None])[..., 0]


_exact_jit = jax.jit(lambda y, gram, idx, a, b, reg: _exact(y, gram, idx, a, b, reg))


@functools.partial(jax.jit, static_argnames=("cg_steps",), donate_argnums=(0,))
def _solve_chunk(out: jax.Array, x_old: jax.Array, y: jax.Array, gram: jax.Array, rows, idx, a, b,
                 reg, cg_steps: int) -> jax.Array:
  """Solves one chunk's rows and writes them into `out` (padding rows are dropped)."""
  if cg_steps:
    x = _cg(x_old.at[rows].get(mode="clip"), y, gram, idx, a, b, reg, cg_steps)
  else:
    x = _exact(y, gram, idx, a, b, reg)
  return out.at[rows].set(x, mode="drop")


@jax.jit
def _gram(y: jax.Array, weight: jax.Array) -> jax.Array:
  return weight * (y.T @ y)


@jax.jit
def _add(a: jax.Array, b: jax.Array) -> jax.Array:
  return a + b


def _pad_rows(n: int) -> int:
  """Factor matrices are padded to a power of two of rows, so both sides (and other fits of a
  similar size) share every compiled chunk program: compile time is per bucket width only."""
  return 1 << max(10, int(np.ceil(np.log2(max(n, 1)))))


def _devices() -> list[jax.Device]:
  """Devices the chunks are spread over: every local device of the default backend."""
  return jax.local_devices()


class _Sweeps:
  """Both sides' chunks on device and the half-sweeps over them.

  A half-sweep dispatches one jitted call per chunk, all with shapes that depend only on the
  bucket width. Chunks are dealt round-robin to the local devices, each with its own copy of
  the factors and its own output buffer: XLA:CPU runs one chunk on one core, and only
  executions on different devices overlap (so with --xla_force_host_platform_device_count=2
  on 2 cores a sweep takes ~0.55x the time; two threads dispatching to one device deadlocked
  in PjRt instead). Rows are disjoint, so summing the buffers is exact and the factors do not
  depend on the number of devices. Padding rows have row index n_pad and are dropped.
  """

  def __init__(self, by_user, by_item, n_pad: int, k: int, gram_weight: float, cg_steps: int):
    self.n_pad, self.k, self.cg_steps = n_pad, k, cg_steps
    # Exact solves stay on one device: LAPACK solves running on two CPU devices at once
    # deadlocked in PjRt (reproduced with 40 chunks on 2 devices; CG chunks ran fine).
    self.devices = _devices() if cg_steps else _devices()[:1]
    self.gram_weight = jnp.float32(gram_weight)
    self.sides = [self._chunks(side) for side in (by_user, by_item)]
    t0 = time.perf_counter()  # compile every chunk shape once per device (a throwaway solve)
    zeros = jnp.zeros((n_pad, k), jnp.float32)
    seen = set()
    for chunks in self.sides:
      for j, chunk in enumerate(chunks):
        device = self.devices[j % len(self.devices)]
        if (chunk[1].shape, device) not in seen:
          seen.add((chunk[1].shape, device))
          z = jax.device_put(zeros, device)
          _solve_chunk(jnp.zeros_like(z), z, z, _gram(z, self.gram_weight), *chunk,
                       cg_steps=cg_steps)
    _add(zeros, zeros).block_until_ready()
    self.compile_seconds = time.perf_counter() - t0

  def _chunks(self, buckets: list[Bucket]) -> list[tuple[jax.Array, ...]]:
    chunks = [tuple(v[j] for v in bucket) for bucket in buckets for j in range(bucket[0].shape[0])]
    return [jax.device_put(chunk, self.devices[j % len(self.devices)])
            for j, chunk in enumerate(chunks)]

  def half(self, side: int, x_old: jax.Array, y: jax.Array) -> jax.Array:
    gram = _gram(y, self.gram_weight)
    # Inputs from another device are made ready before any chunk is dispatched, and outputs
    # before they move: with transfers still pending, PjRt's CPU worker threads all blocked
    # in executions waiting for them (a deadlock seen with 2 devices).
    copies = jax.block_until_ready([jax.device_put((x_old, y, gram), device)
                                    for device in self.devices])
    outs = [jnp.zeros_like(copy[0]) for copy in copies]
    n = len(self.devices)
    for j, chunk in enumerate(self.sides[side]):
      outs[j % n] = _solve_chunk(outs[j % n], *copies[j % n], *chunk, cg_steps=self.cg_steps)
    outs = jax.block_until_ready(outs)
    total = outs[0]
    for out in outs[1:]:
      total = _add(total, jax.block_until_ready(jax.device_put(out, self.devices[0])))
    return total

  def run(self, users: jax.Array, items: jax.Array, iterations: int
          ) -> tuple[jax.Array, jax.Array, list[float], list[float]]:
    """Factors after `iterations`, with each iteration's wall and process CPU seconds."""
    seconds, cpu = [], []
    for _ in range(iterations):
      t0, c0 = time.perf_counter(), time.process_time()
      users = self.half(0, users, items)
      items = self.half(1, items, users)
      items.block_until_ready()
      seconds.append(time.perf_counter() - t0)
      cpu.append(time.process_time() - c0)
    return users, items, seconds, cpu


Values = tuple[np.ndarray, np.ndarray, np.ndarray]  # (a, b) per stored entry, reg per row


def fit_factors(by_user: sp.csr_matrix, by_item: sp.csr_matrix, user_values: Values,
                item_values: Values, init: tuple[np.ndarray, np.ndarray], gram_weight: float,
                cg_steps: int, iterations: int, chunk: int) -> dict:
  """Alternates half-sweeps from init = (users [n_users, k], items [n_items, k]).

  by_user: the users x items CSR; by_item: its transpose as a CSR. Both are passed (not one
  derived from the other here) because user_values / item_values, the (a, b, reg) of each
  side, are in that matrix's own data order, which the caller computed them from. Returns
  the factors and the timings: setup (buckets, transfers), compile (every chunk shape once)
  and each iteration (wall and process CPU seconds).
  """
  t0 = time.perf_counter()
  n_users, n_items = by_user.shape
  if by_item.shape != (n_items, n_users) or by_item.nnz != by_user.nnz:
    raise ValueError(f"by_item must be by_user's transpose: {by_item.shape} with "
                     f"{by_item.nnz} entries vs {by_user.shape} with {by_user.nnz}")
  users, items = (np.asarray(f, np.float32) for f in init)
  k = users.shape[1]
  if users.shape != (n_users, k) or items.shape != (n_items, k):
    raise ValueError(f"init factors must be [{n_users}, k] and [{n_items}, k], got "
                     f"{users.shape} and {items.shape}")
  n_pad = _pad_rows(max(n_users, n_items))
  sides = [bucket_rows(m, *values, chunk=chunk, pad_row=n_pad)
           for m, values in ((by_user, user_values), (by_item, item_values))]
  padded = [jnp.asarray(np.pad(f, ((0, n_pad - len(f)), (0, 0)))) for f in (users, items)]
  sweeps = _Sweeps(*sides, n_pad, k, gram_weight, cg_steps)
  setup = time.perf_counter() - t0 - sweeps.compile_seconds
  users, items, seconds, cpu = sweeps.run(*padded, iterations)
  return {"user_factors": np.asarray(users)[:n_users], "item_factors": np.asarray(items)[:n_items],
          "setup_seconds": setup, "compile_seconds": sweeps.compile_seconds,
          "iteration_seconds": seconds, "iteration_cpu_seconds": cpu}


class JaxALS:
  """WR-ALS rating model behind the evaluator interface (RMSE: fits centred ratings)."""

  rating_note = ""
  cold_rule = "training mean for unseen users or items (their factors solve to zero)"

  def __init__(self, factors: int = 64, reg: float = 0.05, iterations: int = 10, seed: int = 0,
               chunk: int = 1 << 14, cg_steps: int = 3, name: str = "jax_als"):
    """cg_steps: conjugate-gradient steps per solve, warm-started; 0 solves exactly."""
    if factors <= 0 or iterations <= 0 or reg <= 0 or cg_steps < 0:
      raise ValueError("factors, iterations and reg must be positive, cg_steps >= 0")
    self.factors, self.reg, self.iterations = factors, reg, iterations
    self.seed, self.chunk, self.cg_steps, self.name = seed, chunk, cg_steps, name

  def fit(self, store: RatingStore, rows: np.ndarray, *,
          init: tuple[np.ndarray, np.ndarray] | None = None) -> "JaxALS":
    """init: optional (user, item) starting factors; else users 0, items N(0, 0.1^2)."""
    users, items = np.take(store.user, rows), np.take(store.item, rows)
    stars = store.stars(rows).astype(np.float32)
    self.mean = float(stars.mean())
    by_user = sp.csr_matrix((stars - self.mean, (users, items)),
                            shape=(store.n_users, store.n_items))
    by_user.sum_duplicates()
    by_item = by_user.T.tocsr()
    values = [(np.ones(m.nnz, np.float32), m.data, self.reg * np.diff(m.indptr))
              for m in (by_user, by_item)]
    if init is None:
      key = jax.random.PRNGKey(self.seed)
      init = (np.zeros((store.n_users, self.factors), np.float32),
              np.asarray(0.1 * jax.random.normal(key, (store.n_items, self.factors))))
    fitted = fit_factors(by_user, by_item, *values, init, 0.0, self.cg_steps,
                         self.iterations, self.chunk)
    for name, value in fitted.items():
      setattr(self, name, value)
    return self

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return self.mean + np.einsum("nk,nk->n", self.user_factors[users], self.item_factors[items])

  def score_items(self, users: np.ndarray) -> np.ndarray:
    return self.user_factors[users] @ self.item_factors.T

  def ranking_vectors(self) -> tuple[np.ndarray, np.ndarray, None]:
    """Scores are user . item factors: the evaluator may rank them on the device."""
    return self.user_factors, self.item_factors, None


CONFIDENCE = ("hu", "linear")


def confidence(values: np.ndarray, alpha: float, kind: str = "hu") -> np.ndarray:
  """Confidence of observed entries: Hu et al.'s 1 + alpha r, or implicit 0.7's alpha r."""
  if kind not in CONFIDENCE:
    raise ValueError(f"confidence must be one of {CONFIDENCE}, got {kind!r}")
  values = np.asarray(values, np.float32)
  return (1.0 + alpha * values if kind == "hu" else alpha * values).astype(np.float32)


def ials_objective(matrix: sp.csr_matrix, user_factors: np.ndarray, item_factors: np.ndarray,
                   regularization: float, alpha: float, kind: str = "hu",
                   unobserved_weight: float = 1.0, reg_exponent: float = 0.0) -> float:
  """iALS loss in float64: sum_obs c (1 - s)^2 + w0 sum_unobs s^2 + sum of row-scaled L2.

  The yardstick for JaxIALS and implicit's ALS alike (same formula, computed the same way).
  """
  x = np.asarray(user_factors, np.float64)
  y = np.asarray(item_factors, np.float64)
  m = matrix.tocoo()
  c = confidence(m.data, alpha, kind).astype(np.float64)
  s = np.einsum("nk,nk->n", x[m.row], y[m.col])
  w0 = unobserved_weight
  loss = w0 * np.einsum("uk,kj,uj->", x, y.T @ y, x) + np.sum(c * (1 - s) ** 2 - w0 * s ** 2)
  n_users, n_items = matrix.shape
  reg_u = regularization * (np.diff(matrix.indptr) + w0 * n_items) ** reg_exponent
  reg_i = regularization * (np.bincount(m.col, minlength=n_items) + w0 * n_users) ** reg_exponent
  return float(loss + reg_u @ (x * x).sum(1) + reg_i @ (y * y).sum(1))


class JaxIALS:
  """Implicit-feedback ALS (ranking) on the training interactions, in JAX.

  The names and defaults of factors / iterations / regularization / alpha follow implicit's
  AlternatingLeastSquares; confidence="linear" is implicit 0.7's own c = alpha * r, so equal
  settings mean the same model. unobserved_weight (w0) and reg_exponent (nu) are Rendle et al.
  2021's weight of unobserved pairs and frequency-scaled regularisation; 1 and 0 give Hu et al.
  """

  rating_note = "not applicable: iALS scores are preferences, not ratings"

  def __init__(self, factors: int = 64, iterations: int = 15, regularization: float = 0.01,
               alpha: float = 1.0, confidence: str = "hu", unobserved_weight: float = 1.0,
               reg_exponent: float = 0.0, cg_steps: int = 3, min_rating: float | None = None,
               seed: int = 0, chunk: int = 1 << 14, name: str = "jax_ials"):
    if factors <= 0 or iterations <= 0 or regularization < 0 or cg_steps < 0:
      raise ValueError("factors and iterations must be positive, regularization and cg_steps "
                       ">= 0")
    if confidence not in CONFIDENCE:
      raise ValueError(f"confidence must be one of {CONFIDENCE}, got {confidence!r}")
    if unobserved_weight <= 0:
      raise ValueError("unobserved_weight must be positive")
    self.factors, self.iterations, self.regularization = factors, iterations, regularization
    self.alpha, self.confidence, self.unobserved_weight = alpha, confidence, unobserved_weight
    self.reg_exponent, self.cg_steps, self.min_rating = reg_exponent, cg_steps, min_rating
    self.seed, self.chunk, self.name = seed, chunk, name

  def _values(self, m: sp.csr_matrix, n_other: int) -> Values:
    """(a, b, reg) of one side: a = c - w0 and b = c per entry, reg per row."""
    c = confidence(m.data, self.alpha, self.confidence)
    reg = self.regularization * (np.diff(m.indptr) + self.unobserved_weight * n_other
                                 ) ** self.reg_exponent
    return c - self.unobserved_weight, c, reg.astype(np.float32)

  def fit_matrix(self, matrix: sp.csr_matrix, *,
                 init: tuple[np.ndarray, np.ndarray] | None = None) -> "JaxIALS":
    """Fits a users x items CSR of interaction strengths r (entries that are present count)."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sort_indices()
    n_users, n_items = matrix.shape
    if init is None:  # implicit's initialisation: uniform [0, 0.01)
      rng = np.random.default_rng(self.seed)
      init = (rng.random((n_users, self.factors), np.float32) * 0.01,
              rng.random((n_items, self.factors), np.float32) * 0.01)
    by_item = matrix.T.tocsr()
    values = (self._values(matrix, n_items), self._values(by_item, n_users))
    fitted = fit_factors(matrix, by_item, *values, init, self.unobserved_weight, self.cg_steps,
                         self.iterations, self.chunk)
    for name, value in fitted.items():
      setattr(self, name, value)
    return self

  def fit(self, store: RatingStore, rows: np.ndarray, *,
          init: tuple[np.ndarray, np.ndarray] | None = None) -> "JaxIALS":
    """Fits the training interactions (binary, like implicit_models; optionally >= min_rating)."""
    from netrec_jax.data.row_batches import interaction_matrix
    return self.fit_matrix(interaction_matrix(store, rows, self.min_rating or 0.0), init=init)

  def objective(self, matrix: sp.csr_matrix) -> float:
    return ials_objective(matrix, self.user_factors, self.item_factors, self.regularization,
                          self.alpha, self.confidence, self.unobserved_weight, self.reg_exponent)

  def predict(self, users: np.ndarray, items: np.ndarray) -> None:
    return None

  def score_items(self, users: np.ndarray) -> np.ndarray:
    return self.user_factors[users] @ self.item_factors.T

  def ranking_vectors(self) -> tuple[np.ndarray, np.ndarray, None]:
    """Scores are user . item factors: the evaluator may rank them on the device."""
    return self.user_factors, self.item_factors, None

  @property
  def fold_in_method(self) -> str:
    given = (f"movies rated >= {self.min_rating:g}" if self.min_rating else "every movie given")
    return (f"one exact least-squares solve for the user's factors ({given}, interaction 1), "
            "the item factors fixed: the user half-sweep of the fit, for a new row")

  def fold_in_batch(self, rows: sp.csr_matrix) -> np.ndarray:
    """[n, n_items] scores of n new users (a CSR of their stars) from one solve each, the
    same normal equations a training user's factors solve (bucketed, exact, on the device)."""
    m = sp.csr_matrix(rows, dtype=np.float32, copy=True)
    if self.min_rating:
      m.data[m.data < self.min_rating] = 0.0
      m.eliminate_zeros()
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    a, b, reg = self._values(m, m.shape[1])
    y = jnp.asarray(self.item_factors, jnp.float32)
    gram = _gram(y, jnp.float32(self.unobserved_weight))
    x = np.zeros((m.shape[0], self.factors), np.float32)
    for bucket in bucket_rows(m, a, b, reg, self.chunk):
      for rows_c, idx, a_c, b_c, reg_c in zip(*bucket):
        solved = np.asarray(_exact_jit(y, gram, idx, a_c, b_c, reg_c))
        real = rows_c < m.shape[0]  # padding rows of the last chunk
        x[rows_c[real]] = solved[real]
    return x @ self.item_factors.T

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] scores for a new user who rated `items` (dense ids) with `stars`."""
    items = np.asarray(items, np.int64)
    row = sp.csr_matrix((np.asarray(stars, np.float32), (np.zeros(len(items), np.int64), items)),
                        shape=(1, self.item_factors.shape[0]))
    return self.fold_in_batch(row)[0]

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

Layout: each row is cut into segments of SEGMENT entries (the last padded with a = b = 0),
and whole rows are packed into chunks of a fixed number of segments and rows. Every chunk of
every side has the same shape, so one fit compiles one program (the whole half-sweep: a loop
over the chunks, conjugate gradient inside), where per-length buckets compiled one per
power-of-two width (9-12 programs, 5-7 s, more than implicit's whole fit on the quick start).
Products are einsums over the gathered [segments, SEGMENT, k] factors (gathered once, in
cache for every CG step) and a sorted segment sum into the chunk's rows. The factor tables
are sharded by rows over the local devices (mesh axis `model`): a device solves the rows dealt
to it, so with several CPU devices (one core each) the cores share a half-sweep.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from netrec_jax.data.store import RatingStore
from netrec_jax.sharding import MODEL

_TINY = 1e-20  # implicit's CG stops a row whose squared residual falls below this
SEGMENT = 32  # entries per segment: a row of n entries is padded to ceil(n / SEGMENT) segments
# Entries per chunk (more when the longest row needs them): a chunk's gathered factors, 1 MB
# at 64 factors, stay in a core's L2 through the CG steps; at 16,384 (4 MB, out in L3) the
# batched products ran ~3x slower per entry and the quick start's iterations ~1.2x slower.
CHUNK = 1 << 12


Values = tuple[np.ndarray, np.ndarray, np.ndarray]  # (a, b) per stored entry, reg per row


class Chunks(NamedTuple):
  """One side's rows packed for the devices: each field [n_groups, n_devices, ...].

  Chunk (g, d) holds whole rows of device d: `rows` [R] their local slots (n_local: padding,
  dropped) and `reg` [R]; `seg_row` [S] the chunk slot of each segment (sorted; padding
  segments point at the last slot and carry a = b = 0); `idx`, `a`, `b` [S, SEGMENT] the
  other side's internal row, a and b of each entry.
  """
  rows: np.ndarray
  reg: np.ndarray
  seg_row: np.ndarray
  idx: np.ndarray
  a: np.ndarray
  b: np.ndarray


def deal_rows(lens: np.ndarray, n_devices: int, n_local: int) -> np.ndarray:
  """Internal index (device * n_local + slot) of each row: rows sorted by length are dealt
  round-robin, so every device gets about the same number of entries and of rows."""
  order = np.argsort(-lens, kind="stable")
  internal = np.empty(len(lens), np.int64)
  position = np.arange(len(lens))
  internal[order] = (position % n_devices) * n_local + position // n_devices
  return internal


def _next_fit(nseg: np.ndarray, segments: int, rows: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
  """Chunk, slot and first segment of rows with these (descending) segment counts, filling
  each chunk in turn up to `segments` segments and `rows` rows; loops once per run of equal
  counts and per chunk, not per row."""
  n = len(nseg)
  chunk, slot, first = (np.empty(n, np.int64) for _ in range(3))
  c = used_s = used_r = i = 0
  _, starts = np.unique(-nseg, return_index=True)  # runs of equal count, descending
  bounds = list(np.sort(starts)) + [n]
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    width, left = int(nseg[lo]), hi - lo
    while left:
      fit = min((segments - used_s) // width, rows - used_r, left)
      if fit == 0:
        c, used_s, used_r = c + 1, 0, 0
        continue
      step = np.arange(fit)
      chunk[i:i + fit], slot[i:i + fit] = c, used_r + step
      first[i:i + fit] = used_s + width * step
      used_s, used_r, i, left = used_s + width * fit, used_r + fit, i + fit, left - fit
  return chunk, slot, first, (c + 1 if n else 0)


class Plan(NamedTuple):
  """Where one side's rows go: per device, its rows with entries (longest first) and each
  row's chunk, slot and first segment (_next_fit); n_groups the most chunks on a device."""
  per_device: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
  n_groups: int


def plan_chunks(lens: np.ndarray, internal: np.ndarray, n_devices: int, n_local: int,
                segments: int, rows: int) -> Plan:
  """Whole rows in chunks of `segments` x SEGMENT entries and at most `rows` rows, on the
  device their internal index names (deal_rows)."""
  nseg = -(-lens // SEGMENT)
  if nseg.max(initial=0) > segments:
    raise ValueError(f"a row of {lens.max()} entries does not fit a chunk of {segments} "
                     f"segments of {SEGMENT}")
  per_device, n_groups = [], 1
  for d in range(n_devices):
    mine = np.flatnonzero((internal // n_local == d) & (lens > 0))
    mine = mine[np.argsort(-nseg[mine], kind="stable")]
    chunk, slot, first, n_chunks = _next_fit(nseg[mine], segments, rows)
    per_device.append((mine, chunk, slot, first))
    n_groups = max(n_groups, n_chunks)
  return Plan(per_device, n_groups)


def pack_rows(matrix: sp.csr_matrix, a: np.ndarray, b: np.ndarray, reg: np.ndarray,
              internal: np.ndarray, other_internal: np.ndarray, plan: Plan, n_local: int,
              segments: int, rows: int, groups: int) -> Chunks:
  """The chunks of `plan` filled from `matrix`, padded to `groups` chunks per device (both
  sides of a fit share one compiled half-sweep).

  a, b: per stored entry (matrix.data order); reg: per row; internal: this side's internal
  index of each row; other_internal: the other side's, of each column.
  """
  lens = np.diff(matrix.indptr)
  nseg = -(-lens // SEGMENT)
  shape = (len(plan.per_device), groups)
  out = Chunks(rows=np.full(shape + (rows,), n_local, np.int32),
               reg=np.ones(shape + (rows,), np.float32),  # 1: padding rows stay well-posed
               seg_row=np.full(shape + (segments,), rows - 1, np.int32),
               idx=np.zeros(shape + (segments, SEGMENT), np.int32),
               a=np.zeros(shape + (segments, SEGMENT), np.float32),
               b=np.zeros(shape + (segments, SEGMENT), np.float32))
  for d, (mine, chunk, slot, first) in enumerate(plan.per_device):
    out.rows[d][chunk, slot] = internal[mine] - d * n_local
    out.reg[d][chunk, slot] = reg[mine]
    seg_of = np.repeat(np.arange(len(mine)), nseg[mine])  # each segment's row (in `mine`)
    seg_pos = first[seg_of] + np.arange(len(seg_of)) - np.repeat(
        np.cumsum(nseg[mine]) - nseg[mine], nseg[mine])
    out.seg_row[d][chunk[seg_of], seg_pos] = slot[seg_of]
    entry_of = np.repeat(np.arange(len(mine)), lens[mine])
    t = np.arange(len(entry_of)) - np.repeat(np.cumsum(lens[mine]) - lens[mine], lens[mine])
    src = matrix.indptr[mine][entry_of] + t
    where = (chunk[entry_of], first[entry_of] + t // SEGMENT, t % SEGMENT)
    out.idx[d][where] = other_internal[matrix.indices[src]]
    out.a[d][where] = a[src]
    out.b[d][where] = b[src]
  # [groups, n_devices, ...]: a group is one chunk per device, solved at once.
  return Chunks(*(np.ascontiguousarray(np.swapaxes(v, 0, 1)) for v in out))


def _solve_chunk(x_old, y, gram, rows, reg, seg_row, idx, a, b, cg_steps: int):
  """Solves one chunk's rows: `cg_steps` conjugate-gradient steps warm-started from x_old
  (implicit's least_squares_cg), or exact solves when 0 (forms each row's k x k matrix)."""
  n_rows = rows.shape[0]
  yg = lax.optimization_barrier(y[idx])  # [S, SEGMENT, k], gathered once, read by every step

  def to_rows(t):  # sum over each row's entries of t * y: [S, SEGMENT] -> [R, k]
    return jax.ops.segment_sum(jnp.einsum("sl,slk->sk", t, yg), seg_row, n_rows,
                               indices_are_sorted=True)

  def dots(p):  # y_i . p_u for every entry: [R, k] -> [S, SEGMENT]
    return jnp.einsum("slk,sk->sl", yg, p[seg_row])

  def base(p):  # (G + reg I) p
    out = reg[:, None] * p
    return out if gram is None else out + p @ gram

  if not cg_steps:
    k = y.shape[1]
    lhs = jax.ops.segment_sum(jnp.einsum("slk,sl,slj->skj", yg, a, yg), seg_row, n_rows,
                              indices_are_sorted=True)
    lhs = lhs + reg[:, None, None] * jnp.eye(k, dtype=y.dtype)
    if gram is not None:
      lhs = lhs + gram
    return jnp.linalg.solve(lhs, to_rows(b)[..., None])[..., 0]

  x = x_old.at[rows].get(mode="clip")
  r = to_rows(b - a * dots(x)) - base(x)
  rs = (r * r).sum(-1)

  def step(_, state):
    x, r, p, rs = state
    ap = base(p) + to_rows(a * dots(p))
    pap = (p * ap).sum(-1)
    alpha = jnp.where(rs > _TINY, rs / jnp.where(pap > 0, pap, 1.0), 0.0)
    x = x + alpha[:, None] * p
    r = r - alpha[:, None] * ap
    rs_new = (r * r).sum(-1)
    beta = jnp.where(rs > _TINY, rs_new / jnp.where(rs > _TINY, rs, 1.0), 0.0)
    return x, r, r + beta[:, None] * p, rs_new

  return lax.fori_loop(0, cg_steps, step, (x, r, r, rs))[0]


@functools.partial(jax.jit, static_argnames=("mesh", "cg_steps", "use_gram"))
def _half_sweep(x_old: jax.Array, y: jax.Array, y_rows: jax.Array, gram_weight: jax.Array,
                chunks: Chunks, *, mesh: Mesh, cg_steps: int, use_gram: bool) -> jax.Array:
  """New factors of one side (row-sharded like x_old) given the other side y (replicated).

  One program for the whole half-sweep: each device loops over its chunks, with no
  collective; a device's rows are its own, so the solved table needs no reduction.
  y_rows: the internal index of each of the other side's rows in their own order (padded
  with an index past the table: zero rows); the Gram matrix sums them in that order, so it
  (and every factor) is the same for any number of devices, which deal the rows differently.
  """
  def local(x_old, y, y_rows, gram_weight, chunks):
    y_own = y.at[y_rows].get(mode="fill", fill_value=0)
    gram = gram_weight * (y_own.T @ y_own) if use_gram else None
    chunks = Chunks(*(v[:, 0] for v in chunks))  # this device's [n_groups, ...]

    def solve(g, out):
      chunk = Chunks(*(v[g] for v in chunks))
      x = _solve_chunk(x_old, y, gram, *chunk, cg_steps=cg_steps)
      return out.at[chunk.rows].set(x, mode="drop")

    return lax.fori_loop(0, chunks.rows.shape[0], solve, jnp.zeros_like(x_old))

  sharded = P(None, MODEL)
  return jax.shard_map(local, mesh=mesh,
                       in_specs=(P(MODEL), P(), P(), P(), Chunks(*[sharded] * 6)),
                       out_specs=P(MODEL))(x_old, y, y_rows, gram_weight, chunks)


def _pad_rows(n: int) -> int:
  """Rows per device of the factor tables: a power of two, so both sides (and other fits of
  a similar size) share the compiled half-sweep."""
  return 1 << max(8, int(np.ceil(np.log2(max(n, 1)))))


def _chunk_shape(longest: int, chunk: int) -> tuple[int, int]:
  """(segments, rows) of a chunk: about `chunk` entries, more when the longest row needs it
  (a power of two of segments), and rows for half as many rows as segments (never one row:
  XLA:CPU turns that into a strided reduction ~30x slower per entry)."""
  need = -(-max(longest, 1) // SEGMENT)
  segments = max(chunk // SEGMENT, 1 << int(np.ceil(np.log2(need))))
  return segments, max(2, segments // 2)


def solve_rows(matrix: sp.csr_matrix, values: Values, y: np.ndarray, gram_weight: float,
               chunk: int) -> np.ndarray:
  """Exact factors of every row of `matrix` with the other side's y [n_cols, k] fixed: one
  half-sweep on one device, the same normal equations a fit's rows solve (fold-in)."""
  mesh = Mesh(np.array(_devices()[:1]), (MODEL,))
  lens = np.diff(matrix.indptr)
  n_local = _pad_rows(matrix.shape[0])
  internal = deal_rows(lens, 1, n_local)
  segments, rows = _chunk_shape(int(lens.max(initial=0)), chunk)
  plan = plan_chunks(lens, internal, 1, n_local, segments, rows)
  chunks = pack_rows(matrix, *values, internal, np.arange(matrix.shape[1]), plan, n_local,
                     segments, rows, plan.n_groups)
  x = _half_sweep(jnp.zeros((n_local, y.shape[1]), jnp.float32), jnp.asarray(y, jnp.float32),
                  jnp.arange(len(y)), jnp.float32(gram_weight), chunks, mesh=mesh, cg_steps=0,
                  use_gram=bool(gram_weight))
  return np.asarray(x)[internal]


def _devices() -> list[jax.Device]:
  """Devices the rows are dealt to: every local device of the default backend."""
  return jax.local_devices()


def fit_factors(by_user: sp.csr_matrix, by_item: sp.csr_matrix, user_values: Values,
                item_values: Values, init: tuple[np.ndarray, np.ndarray], gram_weight: float,
                cg_steps: int, iterations: int, chunk: int) -> dict:
  """Alternates half-sweeps from init = (users [n_users, k], items [n_items, k]).

  by_user: the users x items CSR; by_item: its transpose as a CSR. Both are passed (not one
  derived from the other here) because user_values / item_values, the (a, b, reg) of each
  side, are in that matrix's own data order, which the caller computed them from. Returns
  the factors and the timings: setup (packing, transfers), compile (the half-sweep program,
  once for both sides) and each iteration (wall and process CPU seconds).

  The factor tables are sharded by rows over the local devices (mesh axis `model`): each
  device solves and keeps its own rows, and receives a replicated copy of the other side
  before each half-sweep. Rows are dealt by length (deal_rows), so the factors do not depend
  on the number of devices beyond float rounding.
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
  # Exact solves stay on one device: LAPACK solves running on two CPU devices at once
  # deadlocked in PjRt (reproduced with 40 chunks on 2 devices; CG chunks ran fine).
  devices = _devices() if cg_steps else _devices()[:1]
  n_dev = len(devices)
  mesh = Mesh(np.array(devices), (MODEL,))
  n_local = _pad_rows(-(-max(n_users, n_items) // n_dev))
  lens = [np.diff(m.indptr) for m in (by_user, by_item)]
  internal = [deal_rows(n, n_dev, n_local) for n in lens]
  segments, rows = _chunk_shape(max(int(n.max(initial=0)) for n in lens), chunk)
  sides = ((by_user, user_values), (by_item, item_values))
  plans = [plan_chunks(n, index, n_dev, n_local, segments, rows)
           for n, index in zip(lens, internal)]
  groups = max(plan.n_groups for plan in plans)
  row_sharded, chunk_sharded = NamedSharding(mesh, P(MODEL)), NamedSharding(mesh, P(None, MODEL))
  replicated = NamedSharding(mesh, P())
  # One side at a time on the host: its copy is dropped once the device holds it.
  sides = [jax.device_put(pack_rows(m, *values, internal[side], internal[1 - side], plans[side],
                                    n_local, segments, rows, groups), chunk_sharded)
           for side, (m, values) in enumerate(sides)]
  tables = []
  for f, index in zip((users, items), internal):
    table = np.zeros((n_dev * n_local, k), np.float32)
    table[index] = f
    tables.append(jax.device_put(table, row_sharded))
  weight = jax.device_put(jnp.float32(gram_weight), replicated)
  use_gram = bool(gram_weight)
  t1 = time.perf_counter()
  longer = max(n_users, n_items)  # both sides' y_rows: one shape, padded past the table
  own = [jax.device_put(np.pad(index, (0, longer - len(index)), constant_values=n_dev * n_local
                               ).astype(np.int32), replicated) for index in internal]
  half = _half_sweep.lower(tables[0], jax.device_put(tables[1], replicated), own[1], weight,
                           sides[0], mesh=mesh, cg_steps=cg_steps, use_gram=use_gram).compile()
  compile_seconds = time.perf_counter() - t1
  seconds, cpu = [], []
  x_users, x_items = tables
  for _ in range(iterations):
    t2, c2 = time.perf_counter(), time.process_time()
    x_users = half(x_users, jax.device_put(x_items, replicated), own[1], weight, sides[0])
    x_items = half(x_items, jax.device_put(x_users, replicated), own[0], weight, sides[1])
    x_items.block_until_ready()
    seconds.append(time.perf_counter() - t2)
    cpu.append(time.process_time() - c2)
  return {"user_factors": np.asarray(x_users)[internal[0]],
          "item_factors": np.asarray(x_items)[internal[1]],
          "setup_seconds": t1 - t0, "compile_seconds": compile_seconds,
          "iteration_seconds": seconds, "iteration_cpu_seconds": cpu}


class JaxALS:
  """WR-ALS rating model behind the evaluator interface (RMSE: fits centred ratings)."""

  rating_note = ""
  cold_rule = "training mean for unseen users or items (their factors solve to zero)"

  def __init__(self, factors: int = 64, reg: float = 0.05, iterations: int = 10, seed: int = 0,
               chunk: int = CHUNK, cg_steps: int = 3, name: str = "jax_als"):
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
    if init is None:  # numpy's generator: jax.random would compile its own kernel first
      rng = np.random.default_rng(self.seed)
      init = (np.zeros((store.n_users, self.factors), np.float32),
              (0.1 * rng.standard_normal((store.n_items, self.factors))).astype(np.float32))
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
  The observed entries are summed a block at a time, so memory stays bounded at Netflix scale
  (the ials family records it at every fit).
  """
  x = np.asarray(user_factors, np.float64)
  y = np.asarray(item_factors, np.float64)
  m = matrix.tocoo()
  w0 = unobserved_weight
  loss = w0 * np.einsum("uk,kj,uj->", x, y.T @ y, x)
  block = 1 << 20
  for lo in range(0, m.nnz, block):
    rows, cols = m.row[lo:lo + block], m.col[lo:lo + block]
    c = confidence(m.data[lo:lo + block], alpha, kind).astype(np.float64)
    s = np.einsum("nk,nk->n", x[rows], y[cols])
    loss += np.sum(c * (1 - s) ** 2 - w0 * s ** 2)
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
               seed: int = 0, chunk: int = CHUNK, name: str = "jax_ials"):
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
    same normal equations a training user's factors solve (exact, on the device)."""
    m = sp.csr_matrix(rows, dtype=np.float32, copy=True)
    if self.min_rating:
      m.data[m.data < self.min_rating] = 0.0
      m.eliminate_zeros()
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    x = solve_rows(m, self._values(m, m.shape[1]), self.item_factors, self.unobserved_weight,
                   self.chunk)
    return x @ self.item_factors.T

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] scores for a new user who rated `items` (dense ids) with `stars`."""
    items = np.asarray(items, np.int64)
    row = sp.csr_matrix((np.asarray(stars, np.float32), (np.zeros(len(items), np.int64), items)),
                        shape=(1, self.item_factors.shape[0]))
    return self.fold_in_batch(row)[0]

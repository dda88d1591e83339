"""Row-sparse optimizers for embedding tables: only the rows a batch touches are updated.

A dense optax step over a 480k x 64 table reads and writes every row each step; these touch
B rows. Duplicate indices in a batch are merged first (a segment_sum over the batch's distinct
rows, static size), so Adagrad and Adam see one summed gradient per row, as a dense optimizer
would. The distinct rows come from a mark-and-cumsum over the table's row range (O(rows + B),
no sort) when the table has at most MARK_ROWS_PER_INDEX rows per index of the batch, else from
jnp.unique (a sort, O(B log B)), which a billion-row table needs: on XLA:CPU the sort of 65,536
indices cost 52 ms against 17 ms for marking a 480k-row table (benchmarks/train_benchmark.py).
`l2` is applied to the touched rows only ("lazy" weight decay, as SGD matrix factorization
does it).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

SPARSE_OPTIMIZERS = ("sgd", "adagrad", "lazy_adam")
DEDUP = ("auto", "mark", "sort")
# "auto" marks when n_rows + 1 <= this x the batch's indices: on XLA:CPU marking a 480k-row
# table beat sorting 8,192 indices 2.1x (MF step 15 vs 32 ms), 65,536 indices 1.9x.
MARK_ROWS_PER_INDEX = 256


def init_slots(kind: str, table: jax.Array) -> dict[str, jax.Array]:
  """Per-table optimizer state: none (sgd), a scalar per row (adagrad), m and v (lazy_adam)."""
  if kind == "sgd":
    return {}
  if kind == "adagrad":
    return {"accum": jnp.zeros((table.shape[0],), jnp.float32)}
  if kind == "lazy_adam":
    return {"m": jnp.zeros_like(table), "v": jnp.zeros_like(table)}
  raise ValueError(f"unknown sparse optimizer {kind!r}; expected one of {SPARSE_OPTIMIZERS}")


def distinct_rows(indices: jax.Array, n_rows: int, method: str = "auto"
                  ) -> tuple[jax.Array, jax.Array]:
  """(rows, inverse): the distinct values of `indices` (in [0, n_rows]; n_rows is padding)
  ascending, padded with n_rows to min(B, n_rows + 1), and each index's position in them."""
  size = min(indices.shape[0], n_rows + 1)
  if method == "auto":
    method = "mark" if n_rows + 1 <= MARK_ROWS_PER_INDEX * indices.shape[0] else "sort"
  if method == "sort":
    rows, inverse = jnp.unique(indices, size=size, fill_value=n_rows, return_inverse=True)
    return rows, inverse.reshape(-1)
  if method != "mark":
    raise ValueError(f"dedup must be one of {DEDUP}, got {method!r}")
  touched = jnp.zeros(n_rows + 1, jnp.int32).at[indices].set(1)
  position = jnp.cumsum(touched) - 1  # rank of each touched row among the touched ones
  rows = jnp.full(size, n_rows, indices.dtype).at[
      jnp.where(touched > 0, position, size)].set(
          jnp.arange(n_rows + 1, dtype=indices.dtype), mode="drop")
  return rows, position[indices]


def _merge_duplicates(indices: jax.Array, grads: jax.Array, n_rows: int, method: str = "auto"):
  """Distinct rows (padded with n_rows, an out-of-range index) and their summed gradients.

  A batch touches at most min(B, n_rows + 1) distinct rows (padding counts as one), so the
  merged arrays are that long: for a 17,770-item table at B = 65,536 that is 3.7x less work.
  """
  rows, inverse = distinct_rows(indices, n_rows, method)
  return rows, jax.ops.segment_sum(grads, inverse, num_segments=rows.shape[0])


def apply(kind: str, table: jax.Array, slots: dict[str, jax.Array], indices: jax.Array,
          grads: jax.Array, *, lr: jax.Array, l2: float, step: jax.Array,
          hyper: dict[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Updates `table` rows `indices` [B] with per-example gradients `grads` [B, dim].

  Indices equal to the table's row count are padding and leave the table untouched.
  """
  n_rows = table.shape[0]  # indices == n_rows mark padding examples: read as 0, never written
  if kind == "sgd":
    g = grads + l2 * table.at[indices].get(mode="fill", fill_value=0)
    return table.at[indices].add((-lr * g).astype(table.dtype), mode="drop"), slots
  rows, g = _merge_duplicates(indices, grads, n_rows, hyper.get("dedup", "auto"))
  current = table.at[rows].get(mode="fill", fill_value=0)
  g = g + l2 * current
  if kind == "adagrad":
    accum = slots["accum"].at[rows].get(mode="fill", fill_value=0) + jnp.mean(g * g, axis=-1)
    update = -lr * g / (jnp.sqrt(accum)[:, None] + hyper.get("eps", 1e-8))
    return (table.at[rows].add(update, mode="drop"),
            {"accum": slots["accum"].at[rows].set(accum, mode="drop")})
  b1, b2, eps = hyper.get("b1", 0.9), hyper.get("b2", 0.999), hyper.get("eps", 1e-8)
  m = b1 * slots["m"].at[rows].get(mode="fill", fill_value=0) + (1 - b1) * g
  v = b2 * slots["v"].at[rows].get(mode="fill", fill_value=0) + (1 - b2) * g * g
  t = (step + 1).astype(jnp.float32)
  m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
  update = -lr * m_hat / (jnp.sqrt(v_hat) + eps)
  return (table.at[rows].add(update, mode="drop"),
          {"m": slots["m"].at[rows].set(m, mode="drop"),
           "v": slots["v"].at[rows].set(v, mode="drop")})

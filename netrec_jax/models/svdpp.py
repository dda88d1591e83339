"""SVD++ (Koren 2008, "Factorization Meets the Neighborhood"), as plain arrays and jnp functions.

  r_ui = mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)

N(u) is the user's training items. Every parameter is an embedding table (biases are 1 wide),
so training gathers the rows a batch touches and updates only those (row-sparse, as MF).

A batch holds whole users, flat: every training rating of each user in it ([R] item, rating,
weight, segment = the user's slot) and the slots' users ([S] user). A user's training ratings
are exactly N(u), so the rows gathered for q_i are also the y_j of the implicit term: it is one
`segment_sum` per batch (once per user, not once per rating as Surprise recomputes it), and
every one of the user's ratings is then predicted from it.

The objective is Surprise's (and the paper's), summed over ratings:
  sum_(u,i)  1/2 (r_ui - r_ui_hat)^2
             + l2/2 (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2 + sum_{j in N(u)} |y_j|^2)
so the gradient of one rating's term is Surprise's SGD update for it, y_j's included.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

USER_TABLES = ("user_bias", "user_vec")  # indexed by the batch's slot users [S]
ITEM_TABLES = ("item_bias", "item_vec", "implicit")  # indexed by the batch's items [R]
TABLES = USER_TABLES + ITEM_TABLES


def init_tables(key: jax.Array, n_users: int, n_items: int, dim: int, init_std: float
                ) -> dict[str, jax.Array]:
  """Biases 0; p, q and y normal(0, init_std) (Surprise's init, its default std is 0.1)."""
  k_user, k_item, k_implicit = jax.random.split(key, 3)
  normal = lambda k, n: init_std * jax.random.normal(k, (n, dim), jnp.float32)
  return {"user_bias": jnp.zeros((n_users, 1), jnp.float32),
          "user_vec": normal(k_user, n_users),
          "item_bias": jnp.zeros((n_items, 1), jnp.float32),
          "item_vec": normal(k_item, n_items),
          "implicit": normal(k_implicit, n_items)}


def implicit_term(implicit_rows: jax.Array, weight: jax.Array, segment: jax.Array,
                  n_slots: int) -> tuple[jax.Array, jax.Array]:
  """(|N(u)|^-1/2 sum_j y_j [S, d], |N(u)| [S]) of each slot from its ratings' y rows [R, d].

  Padding ratings have weight 0 and add nothing; an empty slot gets 0 (not a division by 0).
  """
  chex.assert_rank(implicit_rows, 2)
  chex.assert_equal_shape((weight, segment))
  counts = jax.ops.segment_sum(weight, segment, num_segments=n_slots)
  sums = jax.ops.segment_sum(implicit_rows * weight[:, None], segment, num_segments=n_slots)
  return sums * jax.lax.rsqrt(jnp.maximum(counts, 1.0))[:, None], counts


def user_factors(rows: dict[str, jax.Array], batch: dict[str, jax.Array]
                 ) -> tuple[jax.Array, jax.Array]:
  """(p_u + |N(u)|^-1/2 sum y_j [S, d], |N(u)| [S]) of the batch's slots."""
  implicit, counts = implicit_term(rows["implicit"], batch["weight"], batch["segment"],
                                   rows["user_vec"].shape[0])
  return rows["user_vec"] + implicit, counts


def predict_batch(rows: dict[str, jax.Array], batch: dict[str, jax.Array], global_mean: float,
                  bias: jax.Array | None = None, factor_shift: jax.Array | None = None
                  ) -> tuple[jax.Array, jax.Array]:
  """(predicted rating of each of the batch's ratings [R], |N(u)| of each slot [S]).

  rows: the gathered table rows, user tables [S, .] (the slots' users), item tables [R, .].
  bias [R] is added to each rating's prediction and factor_shift [R, d] to its user factor:
  timeSVD++'s time terms (netrec_jax/models/timesvdpp.py); None for SVD++.
  """
  n_slots, dim = rows["user_vec"].shape
  chex.assert_shape(rows["user_bias"], (n_slots, 1))
  chex.assert_shape([rows["item_vec"], rows["implicit"]], (batch["item"].shape[0], dim))
  factors, counts = user_factors(rows, batch)
  segment = batch["segment"]
  factor = factors[segment] if factor_shift is None else factors[segment] + factor_shift
  pred = (global_mean + rows["user_bias"][segment, 0] + rows["item_bias"][:, 0]
          + jnp.sum(rows["item_vec"] * factor, axis=-1))
  return (pred if bias is None else pred + bias), counts


def batch_loss(rows: dict[str, jax.Array], batch: dict[str, jax.Array], global_mean: float,
               l2: float, bias: jax.Array | None = None, factor_shift: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
  """(the objective summed over the batch's ratings, their summed squared error).

  Every regulariser is counted once per rating as Surprise applies it: b_u and p_u |N(u)|
  times, b_i and q_i once per rating, and each y_j of N(u) once per rating of u, i.e. |N(u)|
  times per (u, j). Padding ratings (weight 0) and empty slots add nothing. bias and
  factor_shift: as predict_batch's (their own parameters' penalties are the caller's).
  """
  pred, counts = predict_batch(rows, batch, global_mean, bias, factor_shift)
  weight = batch["weight"]
  sse = jnp.sum(weight * jnp.square(batch["rating"] - pred))
  square = lambda x: jnp.sum(jnp.square(x), axis=-1)
  user_penalty = jnp.sum(counts * (square(rows["user_bias"]) + square(rows["user_vec"])))
  per_rating = square(rows["item_bias"]) + square(rows["item_vec"])
  implicit_penalty = counts[batch["segment"]] * square(rows["implicit"])
  item_penalty = jnp.sum(weight * (per_rating + implicit_penalty))
  return 0.5 * sse + 0.5 * l2 * (user_penalty + item_penalty), sse


def curvature_bounds(rows: dict[str, jax.Array], batch: dict[str, jax.Array], l2: float,
                     n_items: int, factor_shift: jax.Array | None = None
                     ) -> dict[str, jax.Array]:
  """Per gathered row, an upper bound of the largest eigenvalue of batch_loss's Hessian in
  that row (every other row fixed): the sum, over the ratings that touch it, of the squared
  norm of what it multiplies, plus its L2 terms. [S] for user tables, [R] for item tables.

    b_u  |N(u)| (1 + l2)               p_u  sum_{i in N(u)} |q_i|^2 + |N(u)| l2
    b_i  c_i (1 + l2)                  q_i  sum_{u: (u,i) in batch} |factor_u|^2 + c_i l2
    y_j  (the block of all y_j of u, which move the implicit term together) = p_u's bound

  c_i is item i's number of ratings in the batch; factor_u = p_u + |N(u)|^-1/2 sum y_j (plus,
  per rating, factor_shift: timeSVD++'s drift of p_u, which q_i multiplies as well).
  The y bound is per user: a y_j touched by several users of a batch adds their terms, which
  this does not count (a popular movie has a few users per batch of a few thousand ratings).
  """
  rows = jax.lax.stop_gradient(rows)
  weight, segment, item = batch["weight"], batch["segment"], batch["item"]
  n_slots = rows["user_vec"].shape[0]
  factors, counts = user_factors(rows, batch)
  square = lambda x: jnp.sum(jnp.square(x), axis=-1)
  user = (jax.ops.segment_sum(weight * square(rows["item_vec"]), segment, num_segments=n_slots)
          + counts * l2)
  item_counts = jax.ops.segment_sum(weight, item, num_segments=n_items)[item]
  factor = factors[segment] if factor_shift is None else factors[segment] + factor_shift
  item_vec = jax.ops.segment_sum(weight * square(factor), item,
                                 num_segments=n_items)[item] + item_counts * l2
  return {"user_bias": counts * (1.0 + l2), "user_vec": user,
          "item_bias": item_counts * (1.0 + l2), "item_vec": item_vec,
          "implicit": user[segment]}


def step_factor(lr: jax.Array | float, bound: jax.Array) -> jax.Array:
  """(1 - exp(-lr T)) / (lr T): what a row's SGD step on a summed gradient is scaled by.

  One step of lr on the summed gradient of the n ratings that touch a row overshoots once
  lr T > 1 (T: the row's curvature bound, curvature_bounds) and diverges past 2: a batch
  holds a user's whole gradient (ML-100K has users with 700 ratings; b_u's T is then 714 at
  l2 0.02, and lr 0.007). Per-rating SGD, Surprise's, takes those n steps one at a time and
  shrinks the row's error by about exp(-lr T); scaled by this factor, the one step does the
  same along the row's stiffest direction. It is about 1 for a light row (plain SGD), and
  1 / (lr T) for a heavy one (a Newton step), so lr * factor * T < 1 always: no divergence.
  """
  x = jnp.maximum(lr * bound, 1e-6)
  return -jnp.expm1(-x) / x

"""timeSVD++ (Koren 2009/2010, "Collaborative Filtering with Temporal Dynamics"): SVD++'s
prediction (netrec_jax/models/svdpp.py) plus time terms at the rating's day t,

  r_ui(t) = mu + b_i + b_{i,Bin(t)} + b_u + alpha_u dev_u(t) + b_{u,t}
            + q_i . (p_u + alpha^p_u dev_u(t) + |N(u)|^-1/2 sum_{j in N(u)} y_j)
  dev_u(t) = sign(t - t_u) |t - t_u|^beta      (t_u: the user's mean training day)

b_{i,Bin(t)} is one bias per (item, time bin), b_{u,t} one per (user, day) pair seen in
training (a held-out day never seen gets 0), alpha_u and alpha^p_u (the paper's alpha_uk,
one per factor) one per user. Each term can be switched off (TimeSpec).

The batch is SVD++'s flat whole-user batch with, per rating, `day` (days since the training's
first day), `user_day` (the (user, day) pair's row of the per-day table) and, per slot,
`mean_day` (t_u in the same days). The objective is SVD++'s, every time term's L2 counted
once per rating as the others are (alpha_u and alpha^p_u |N(u)| times, the bin and day biases
once per rating on them), each with its own lambda.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from netrec_jax.models import svdpp

USER_TABLES = ("user_alpha", "user_vec_alpha")  # indexed by the batch's slot users [S]
BIN_TABLES = ("item_bin_bias",)  # indexed per rating by item * n_bins + Bin(day)
DAY_TABLES = ("user_day_bias",)  # indexed per rating by batch["user_day"]
TERMS = {"user_alpha": "user_alpha", "user_vec_alpha": "factor_drift",
         "item_bin_bias": "item_bins", "user_day_bias": "user_day"}  # table -> switch


@dataclasses.dataclass(frozen=True)
class TimeSpec:
  """Which time terms are on, the bins over the training days, beta and each term's L2."""

  n_bins: int  # item-bias bins over [0, n_days); later days fall in the last bin
  n_days: int  # days from the training's first to its last day, inclusive
  beta: float = 0.4
  item_bins: bool = True
  user_alpha: bool = True
  user_day: bool = True
  factor_drift: bool = True
  bin_l2: float = 5.0
  alpha_l2: float = 200.0
  day_l2: float = 0.005
  drift_l2: float = 100.0

  def tables(self) -> tuple[str, ...]:
    """The time tables of the terms that are on."""
    return tuple(name for name, switch in TERMS.items() if getattr(self, switch))


def init_time_tables(n_users: int, n_items: int, n_user_days: int, dim: int, spec: TimeSpec
                     ) -> dict[str, jax.Array]:
  """All zeros (Koren starts them at 0): an untrained row predicts as SVD++ does."""
  shapes = {"user_alpha": (n_users, 1), "user_vec_alpha": (n_users, dim),
            "item_bin_bias": (n_items * spec.n_bins, 1), "user_day_bias": (max(n_user_days, 1), 1)}
  return {name: jnp.zeros(shapes[name], jnp.float32) for name in spec.tables()}


def deviation(day: jax.Array, mean_day: jax.Array, beta: float) -> jax.Array:
  """dev_u(t) = sign(t - t_u) |t - t_u|^beta, in days."""
  x = day.astype(jnp.float32) - mean_day
  return jnp.sign(x) * jnp.abs(x) ** beta


def day_bin(day: jax.Array, spec: TimeSpec) -> jax.Array:
  """Bin(t) of days since the training's first day; outside the training range: the nearest
  end bin (a day after training is predicted with the latest bin)."""
  return jnp.clip(day.astype(jnp.int32) * spec.n_bins // spec.n_days, 0, spec.n_bins - 1)


def bin_index(batch: dict[str, jax.Array], spec: TimeSpec) -> jax.Array:
  """Row of item_bin_bias of each rating: item * n_bins + Bin(day)."""
  return batch["item"].astype(jnp.int32) * spec.n_bins + day_bin(batch["day"], spec)


def time_terms(rows: dict[str, jax.Array], batch: dict[str, jax.Array], spec: TimeSpec
               ) -> tuple[jax.Array, jax.Array | None, jax.Array]:
  """(bias [R], shift of the user factor [R, d] or None, dev_u(t) [R]) of the batch's ratings.

  bias = b_{i,Bin(t)} + alpha_u dev_u(t) + b_{u,t}; shift = alpha^p_u dev_u(t).
  """
  segment = batch["segment"]
  dev = deviation(batch["day"], batch["mean_day"][segment], spec.beta)
  bias = jnp.zeros(dev.shape, jnp.float32)
  if spec.item_bins:
    bias = bias + rows["item_bin_bias"][:, 0]
  if spec.user_alpha:
    bias = bias + rows["user_alpha"][segment, 0] * dev
  if spec.user_day:
    bias = bias + rows["user_day_bias"][:, 0]
  shift = rows["user_vec_alpha"][segment] * dev[:, None] if spec.factor_drift else None
  return bias, shift, dev


def predict_batch(rows: dict[str, jax.Array], batch: dict[str, jax.Array], global_mean: float,
                  spec: TimeSpec) -> tuple[jax.Array, jax.Array]:
  """(predicted rating of each of the batch's ratings at its day [R], |N(u)| per slot [S])."""
  bias, shift, _ = time_terms(rows, batch, spec)
  return svdpp.predict_batch(rows, batch, global_mean, bias, shift)


def batch_loss(rows: dict[str, jax.Array], batch: dict[str, jax.Array], global_mean: float,
               l2: float, spec: TimeSpec) -> tuple[jax.Array, jax.Array]:
  """(SVD++'s summed objective with the time terms, summed squared error)."""
  bias, shift, _ = time_terms(rows, batch, spec)
  objective, sse = svdpp.batch_loss(rows, batch, global_mean, l2, bias, shift)
  weight = batch["weight"]
  counts = jax.ops.segment_sum(weight, batch["segment"], num_segments=batch["user"].shape[0])
  square = lambda x: jnp.sum(jnp.square(x), axis=-1)
  penalty = 0.0
  if spec.user_alpha:
    penalty += spec.alpha_l2 * jnp.sum(counts * square(rows["user_alpha"]))
  if spec.factor_drift:
    penalty += spec.drift_l2 * jnp.sum(counts * square(rows["user_vec_alpha"]))
  if spec.item_bins:
    penalty += spec.bin_l2 * jnp.sum(weight * square(rows["item_bin_bias"]))
  if spec.user_day:
    penalty += spec.day_l2 * jnp.sum(weight * square(rows["user_day_bias"]))
  return objective + 0.5 * penalty, sse


def curvature_bounds(rows: dict[str, jax.Array], batch: dict[str, jax.Array], l2: float,
                     n_items: int, spec: TimeSpec) -> dict[str, jax.Array]:
  """svdpp.curvature_bounds with the time tables', each multiplied by the number of tables
  that move the same thing together (svdpp.step_factor then stays below a Newton step of the
  joint block):

    alpha_u     sum_{i in N(u)} dev^2 + |N(u)| alpha_l2
    alpha^p_u   sum_{i in N(u)} dev^2 |q_i|^2 + |N(u)| drift_l2
    b_{i,bin}   c_{i,bin} (1 + bin_l2)      b_{u,t}  c_{u,t} (1 + day_l2)

  c: ratings of that (item, bin) or (user, day) in the batch. b_u, alpha_u and b_{u,t} all
  shift a user's predictions: a user with one day has b_u and b_{u,t} exactly collinear, and
  two full Newton steps would overshoot by the whole residual and oscillate. Scaled each by
  its own bound, the joint Hessian's largest eigenvalue is at most the number of blocks (a PSD
  matrix's is at most the sum of its diagonal blocks'), so each bound is multiplied by it:
  the user bias tables by 1 + user_alpha + user_day, p_u, y and alpha^p_u by 1 +
  factor_drift, b_i and b_{i,bin} by 1 + item_bins.
  """
  rows = jax.lax.stop_gradient(rows)
  _, shift, dev = time_terms(rows, batch, spec)
  bounds = dict(svdpp.curvature_bounds(rows, batch, l2, n_items, shift))
  weight, segment = batch["weight"], batch["segment"]
  n_slots = batch["user"].shape[0]
  counts = jax.ops.segment_sum(weight, segment, num_segments=n_slots)
  square = lambda x: jnp.sum(jnp.square(x), axis=-1)
  if spec.user_alpha:
    bounds["user_alpha"] = (jax.ops.segment_sum(weight * dev ** 2, segment,
                                                num_segments=n_slots) + counts * spec.alpha_l2)
  if spec.factor_drift:
    bounds["user_vec_alpha"] = (
        jax.ops.segment_sum(weight * dev ** 2 * square(rows["item_vec"]), segment,
                            num_segments=n_slots) + counts * spec.drift_l2)
  if spec.item_bins:
    index = bin_index(batch, spec)
    bounds["item_bin_bias"] = (jax.ops.segment_sum(weight, index,
                                                   num_segments=n_items * spec.n_bins)[index]
                               * (1.0 + spec.bin_l2))
  if spec.user_day:
    # A user's ratings of one day are consecutive in the batch (the CSR is ordered by day
    # within each user): count each run, not a segment sum over every (user, day) pair.
    user_day = batch["user_day"]
    run = jnp.cumsum(jnp.concatenate([jnp.ones(1, jnp.int32),
                                      (user_day[1:] != user_day[:-1]).astype(jnp.int32)])) - 1
    size = user_day.shape[0]
    bounds["user_day_bias"] = (jax.ops.segment_sum(weight, run, num_segments=size)[run]
                               * (1.0 + spec.day_l2))
  user_biases = 1 + spec.user_alpha + spec.user_day
  for name in ("user_bias", "user_alpha", "user_day_bias"):
    if name in bounds:
      bounds[name] = bounds[name] * user_biases
  for name in ("user_vec", "implicit", "user_vec_alpha"):
    if name in bounds:
      bounds[name] = bounds[name] * (1 + spec.factor_drift)
  for name in ("item_bias", "item_bin_bias"):
    if name in bounds:
      bounds[name] = bounds[name] * (1 + spec.item_bins)
  return bounds

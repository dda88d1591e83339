"""A seeded Netflix-like rating generator: the embedded default dataset and the scale test.

Ratings are  round(mu + b_user + b_item + <p_user, q_item> + noise), clipped to 1..5, which
with the defaults gives Netflix's skew toward 3-4 stars (mean ~3.6, std ~1.1). Users have
power-law (Lomax) activity, items Zipf-like popularity, and popular items are rated a little
higher, as on Netflix. Each user rates inside an activity window; windows start later more often
than earlier, so the rating volume grows over the years like the real data, and no rating
predates its movie's release year.

Optionally (off by default: the data are then byte for byte what they were) the biases drift
in time, for timeSVD++ (Koren 2009) to recover: item i's bias moves linearly over the date
range, by item_drift[i] stars from the middle to either end, and user u's bias by user_drift[u]
stars per year after the midpoint of u's activity window (before it: as much lower).

The ground truth (factors, biases, popularity, drifts) is deterministic in the seed and
available from `generate_truth`, so tests can check that a model recovers it. Chunks are
generated user block by user block, so 100M ratings never sit in memory at once.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from netrec_jax.data.builder import StoreBuilder
from netrec_jax.data.store import RatingStore, iso_to_days

NETFLIX_MAX_CUSTOMER_ID = 2_649_429
GENERATOR_VERSION = 1  # bump when generated data changes, so cached stores are rebuilt


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Sizes and shape of the generated data; the defaults finish in seconds on 2 cores."""

  n_users: int = 6_000
  n_items: int = 1_500
  n_ratings: int = 500_000  # target; duplicates removed per user make it a little lower
  rank: int = 8  # rank of the true user/item factors
  seed: int = 0
  global_mean: float = 3.55
  user_bias_std: float = 0.45
  item_bias_std: float = 0.45
  popularity_bias: float = 0.15  # item bias gained per std of log popularity
  factor_std: float = 0.55  # std of <p, q> for unit-variance factors is factor_std**2 * sqrt(rank)
  noise_std: float = 0.85
  activity_shape: float = 2.2  # Lomax shape of ratings per user: smaller is heavier-tailed
  min_ratings_per_user: int = 3
  popularity_exponent: float = 1.1  # Zipf exponent of item popularity ...
  popularity_offset: float = 0.003  # ... over (rank + offset * n_items)
  start_date: str = "1999-11-11"
  end_date: str = "2005-12-31"
  chunk_ratings: int = 1 << 21  # ratings per generated chunk (memory bound)
  # Time drift of the biases (0: none, and not one random draw more than without it).
  drift_item_std: float = 0.0  # std of item_drift: stars from the date range's middle to its ends
  drift_user_std: float = 0.0  # std of user_drift: stars per year from the window's midpoint

  @property
  def has_drift(self) -> bool:
    return self.drift_item_std > 0 or self.drift_user_std > 0

  def __post_init__(self):
    for name in ("n_users", "n_items", "n_ratings", "rank", "chunk_ratings"):
      if getattr(self, name) <= 0:
        raise ValueError(f"SyntheticConfig.{name} must be positive, got {getattr(self, name)}")
    for name in ("drift_item_std", "drift_user_std"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"SyntheticConfig.{name} must be >= 0, got {getattr(self, name)}")
    if self.n_ratings > self.n_users * self.n_items // 2:
      raise ValueError("n_ratings must be at most half of n_users * n_items for a sparse matrix")


@dataclasses.dataclass
class SyntheticTruth:
  """The generating parameters, indexed by generator user/item number (not store index)."""

  user_ids: np.ndarray  # original ids written to the data, [n_users]
  item_ids: np.ndarray  # [n_items], 1..n_items like Netflix movie ids
  user_factors: np.ndarray  # [n_users, rank]
  item_factors: np.ndarray  # [n_items, rank]
  user_bias: np.ndarray
  item_bias: np.ndarray
  global_mean: float
  item_popularity: np.ndarray  # sampling probability per item, sums to 1
  ratings_per_user: np.ndarray  # target count per user
  window_start: np.ndarray  # days since epoch
  window_end: np.ndarray
  item_year: np.ndarray  # release year; 0 = unknown (written as NULL)
  # Time drift (zeros without it): see item_drift_at / user_drift_at.
  item_drift: np.ndarray = None  # [n_items] stars from the date range's middle to its ends
  user_drift: np.ndarray = None  # [n_users] stars per year from the window's midpoint
  date_range: tuple[int, int] = (0, 1)  # (first, last) day of the generated dates

  def item_drift_at(self, items: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Item bias drift at these days: item_drift times (day - middle) / half the range."""
    first, last = self.date_range
    half = max((last - first) / 2.0, 1.0)
    return self.item_drift[items] * ((np.asarray(days, np.float64) - first) / half - 1.0)

  def user_drift_at(self, users: np.ndarray, days: np.ndarray) -> np.ndarray:
    """User bias drift at these days: user_drift per year from the window's midpoint."""
    middle = (self.window_start[users] + self.window_end[users]) / 2.0
    return self.user_drift[users] * (np.asarray(days, np.float64) - middle) / 365.25

  def expected_rating(self, users: np.ndarray, items: np.ndarray,
                      days: np.ndarray | None = None) -> np.ndarray:
    """Noise-free rating before rounding and clipping (at `days`, when the biases drift)."""
    dot = np.einsum("nk,nk->n", self.user_factors[users], self.item_factors[items])
    mean = self.global_mean + self.user_bias[users] + self.item_bias[items] + dot
    if days is not None and (np.any(self.item_drift) or np.any(self.user_drift)):
      mean = mean + self.item_drift_at(items, days) + self.user_drift_at(users, days)
    return mean


def generate_truth(cfg: SyntheticConfig) -> SyntheticTruth:
  rng = np.random.default_rng([cfg.seed, 0])
  n_users, n_items = cfg.n_users, cfg.n_items
  id_space = max(NETFLIX_MAX_CUSTOMER_ID, 6 * n_users)
  user_ids = np.sort(rng.choice(id_space, size=n_users, replace=False) + 1).astype(np.int64)
  rng.shuffle(user_ids)  # generator order is unrelated to id order, as in real data
  item_ids = np.arange(1, n_items + 1, dtype=np.int64)

  scale = cfg.factor_std / cfg.rank ** 0.25
  user_factors = rng.normal(0, scale, (n_users, cfg.rank)).astype(np.float32)
  item_factors = rng.normal(0, scale, (n_items, cfg.rank)).astype(np.float32)

  popularity_rank = rng.permutation(n_items)
  weights = (popularity_rank + 1 + cfg.popularity_offset * n_items) ** -cfg.popularity_exponent
  popularity = weights / weights.sum()
  log_pop = np.log(popularity)
  item_bias = (rng.normal(0, cfg.item_bias_std, n_items)
               + cfg.popularity_bias * (log_pop - log_pop.mean()) / log_pop.std()
               ).astype(np.float32)
  user_bias = rng.normal(0, cfg.user_bias_std, n_users).astype(np.float32)

  max_per_user = n_items // 2
  activity = rng.pareto(cfg.activity_shape, n_users)
  counts = activity / activity.sum() * cfg.n_ratings
  counts = np.clip(np.round(counts), cfg.min_ratings_per_user, max_per_user).astype(np.int64)
  # Clipping moves the total; rescale the unclipped users once to hit the target closely.
  free = (counts > cfg.min_ratings_per_user) & (counts < max_per_user)
  deficit = cfg.n_ratings - counts.sum()
  if free.any():
    counts[free] = np.clip(np.round(counts[free] * (1 + deficit / counts[free].sum())),
                           cfg.min_ratings_per_user, max_per_user)

  start, end = iso_to_days(cfg.start_date), iso_to_days(cfg.end_date)
  span = end - start
  window_start = start + (span * rng.beta(2.0, 1.6, n_users)).astype(np.int64)
  window_len = rng.exponential(span / 3, n_users).astype(np.int64) + 1
  window_end = np.minimum(window_start + window_len, end)

  first_year = int(str(np.datetime64(start, "D"))[:4])
  item_year = (first_year + 1 - rng.exponential(9.0, n_items)).astype(np.int64)
  item_year = np.clip(item_year, 1915, first_year + 1)
  item_year[rng.random(n_items) < 0.0005] = 0  # a few unknown years, as in movie_titles.txt
  # The drifts come from their own stream: without them nothing above changes.
  drift_rng = np.random.default_rng([cfg.seed, 2])
  item_drift = drift_rng.normal(0, cfg.drift_item_std, n_items) if cfg.drift_item_std else None
  user_drift = drift_rng.normal(0, cfg.drift_user_std, n_users) if cfg.drift_user_std else None
  return SyntheticTruth(user_ids, item_ids, user_factors, item_factors, user_bias, item_bias,
                        cfg.global_mean, popularity, counts, window_start, window_end, item_year,
                        np.zeros(n_items) if item_drift is None else item_drift,
                        np.zeros(n_users) if user_drift is None else user_drift, (start, end))


def _sample_items(rng: np.random.Generator, counts: np.ndarray, popularity: np.ndarray,
                  cdf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Distinct items per user, drawn by popularity; returns (local user, item) pairs."""
  n_items = len(popularity)
  heavy = counts > n_items // 20
  users_out, items_out = [], []
  light_users = np.flatnonzero(~heavy)
  if len(light_users):
    draws = np.ceil(counts[light_users] * 1.3).astype(np.int64) + 2
    local = np.repeat(light_users, draws)
    items = np.minimum(np.searchsorted(cdf, rng.random(len(local)), side="right"), n_items - 1)
    key = local * n_items + items
    _, first = np.unique(key, return_index=True)
    first.sort()  # keep draw order, so truncation below is a random subset
    local, items = local[first], items[first]
    run_start = np.flatnonzero(np.concatenate(([True], local[1:] != local[:-1])))
    rank = np.arange(len(local)) - np.repeat(run_start, np.diff(np.append(run_start, len(local))))
    keep = rank < counts[local]
    users_out.append(local[keep])
    items_out.append(items[keep])
  log_pop = np.log(popularity)
  for user in np.flatnonzero(heavy):  # few users: Gumbel top-k, exact sampling w/o replacement
    keys = log_pop + rng.gumbel(size=n_items)
    chosen = np.argpartition(-keys, counts[user] - 1)[:counts[user]]
    users_out.append(np.full(len(chosen), user))
    items_out.append(chosen)
  return np.concatenate(users_out), np.concatenate(items_out)


def generate_chunks(cfg: SyntheticConfig, truth: SyntheticTruth | None = None
                    ) -> Iterator[dict[str, np.ndarray]]:
  """Yields chunks with original `user_id`, `item_id`, integer `rating` 1..5, `date` in days."""
  truth = truth or generate_truth(cfg)
  cdf = np.cumsum(truth.item_popularity)
  year_start = np.array([iso_to_days(f"{y}-01-01") if y else -(1 << 30)
                         for y in truth.item_year], np.int64)
  bounds = np.concatenate(([0], np.cumsum(truth.ratings_per_user)))
  lo = 0
  chunk_index = 0
  while lo < cfg.n_users:
    hi = int(np.searchsorted(bounds, bounds[lo] + cfg.chunk_ratings, side="right")) - 1
    hi = min(max(hi, lo + 1), cfg.n_users)
    rng = np.random.default_rng([cfg.seed, 1, chunk_index])
    local, items = _sample_items(rng, truth.ratings_per_user[lo:hi], truth.item_popularity, cdf)
    users = local + lo
    mean = truth.expected_rating(users, items)
    noisy = mean + rng.normal(0, cfg.noise_std, len(users))
    w_start, w_end = truth.window_start[users], truth.window_end[users]
    dates = w_start + (rng.random(len(users)) * (w_end - w_start + 1)).astype(np.int64)
    dates = np.maximum(dates, year_start[items])
    if cfg.has_drift:  # the same draws as without drift, and the drift at each rating's date
      noisy = noisy + truth.item_drift_at(items, dates) + truth.user_drift_at(users, dates)
    ratings = np.clip(np.rint(noisy), 1, 5).astype(np.int32)
    yield {"user_id": truth.user_ids[users], "item_id": truth.item_ids[items],
           "rating": ratings, "date": dates.astype(np.int32)}
    lo = hi
    chunk_index += 1


def item_info(truth: SyntheticTruth) -> pa.Table:
  """Titles and years in the shape of movie_titles.txt (year null where unknown)."""
  years = pa.array(truth.item_year, mask=truth.item_year == 0, type=pa.int32())
  titles = [f"Synthetic Movie {i}" for i in truth.item_ids]
  return pa.table({"original_id": truth.item_ids, "title": titles, "year": years})


def build_synthetic_store(cfg: SyntheticConfig, dest: str | os.PathLike, *,
                          min_user_ratings: int = 0, min_item_ratings: int = 0,
                          overwrite: bool = False, progress=None) -> RatingStore:
  """Generates `cfg` straight into a store (no text round trip)."""
  truth = generate_truth(cfg)
  params = {"source": "synthetic", "generator_version": GENERATOR_VERSION,
            **config_params(cfg)}
  with StoreBuilder(dest, name=f"synthetic_{cfg.n_ratings}_seed{cfg.seed}", rating_scale=1,
                    rating_range=(1, 5), min_user_ratings=min_user_ratings,
                    min_item_ratings=min_item_ratings, overwrite=overwrite,
                    build_params=params) as builder:
    done = 0
    for chunk in generate_chunks(cfg, truth):
      builder.add(chunk["user_id"], chunk["item_id"], chunk["rating"], chunk["date"])
      done += len(chunk["rating"])
      if progress is not None:
        progress(done, cfg.n_ratings)
    builder.set_item_info(item_info(truth))
    return builder.finish()


def config_params(cfg: SyntheticConfig) -> dict:
  """cfg as a dict, without the drift fields when they are off: a store generated without
  drift keeps the parameters (and cache key) it had before the drift option existed."""
  params = dataclasses.asdict(cfg)
  for name in DRIFT_FIELDS:
    if not params[name]:
      del params[name]
  return params


DRIFT_FIELDS = ("drift_item_std", "drift_user_std")


def default_store_path(root: str | os.PathLike, cfg: SyntheticConfig) -> Path:
  return Path(root) / f"synthetic_u{cfg.n_users}_i{cfg.n_items}_r{cfg.n_ratings}_s{cfg.seed}"

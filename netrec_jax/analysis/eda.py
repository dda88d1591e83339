"""Exploratory data analysis of a rating store: four plots and a Markdown summary.

`write_eda(store, out_dir)` writes

  rating_distribution.png   ratings per star value, with each value's share
  user_activity.png         ratings per user: log-binned density and CCDF, log-log
  movie_popularity.png      ratings per movie: rank-frequency (the long tail) and density
  ratings_over_time.png     ratings and mean rating per month (only if the store has dates)
  summary.md                counts, density, distributions, top movies, the list of plots

Passes over the rating columns go block by block (`store.iter_row_blocks`) and accumulate
with np.bincount, so memory stays at one block of one or two int32 columns plus arrays of
size n_users, n_items and n_months, even for a 100M-rating store. The small helpers
(`rating_histogram`, `monthly_ratings`, `activity_stats`, ...) return plain numbers so that
tests can check them against numpy on the full columns.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure  # not pyplot: no global backend switch, no open windows
import numpy as np
from matplotlib import ticker

from netrec_jax.data.errors import DataError
from netrec_jax.data.store import NO_DATE, RatingStore

BLOCK_ROWS = 1 << 22  # 4M rows, 16 MB per int32 column: the unit of every pass
PLOT_FILES = {
    "rating_distribution": "rating_distribution.png",
    "user_activity": "user_activity.png",
    "movie_popularity": "movie_popularity.png",
    "ratings_over_time": "ratings_over_time.png",
}
SUMMARY_FILE = "summary.md"
TOP_SHARES = (0.01, 0.1)  # "the top 1% / 10% of movies receive X% of the ratings"
_DPI = 120
_MAX_LABELLED_BARS = 25  # beyond this many rating values, bars get no % labels
_MAX_CURVE_POINTS = 2000  # rank-frequency curves are drawn at log-spaced ranks beyond this
_COLOR = "#3b6ea8"
_MEDIAN_COLOR = "#d1495b"
_MEAN_COLOR = "#edae49"


# --------------------------------------------------------------------------- statistics
def rating_histogram(store: RatingStore, *, block_rows: int = BLOCK_ROWS) -> dict[float, int]:
  """Ratings per value in stars, for every value on the store's grid (zeros included).

  Counting on the scaled integers keeps half stars exact; keys are ascending star values.
  """
  scale = store.rating_scale
  lo_stars, hi_stars = store.rating_range
  lo, hi = math.floor(lo_stars * scale), math.ceil(hi_stars * scale)
  counts = np.zeros(hi - lo + 1, np.int64)
  for rows in store.iter_row_blocks(block_rows):
    raw = np.asarray(store.rating[rows])
    if raw.min() < lo or raw.max() > hi:
      raise DataError(store.path, f"ratings outside the declared range {store.rating_range}: "
                      "the store is inconsistent")
    counts += np.bincount((raw - lo).astype(np.int64), minlength=len(counts))
  return {(lo + k) / scale: int(c) for k, c in enumerate(counts)}


def histogram_moments(hist: dict[float, int]) -> tuple[float, float]:
  """Mean and standard deviation of the ratings described by a histogram."""
  values = np.fromiter(hist.keys(), np.float64, len(hist))
  counts = np.fromiter(hist.values(), np.float64, len(hist))
  total = counts.sum()
  if total == 0:
    return math.nan, math.nan
  mean = float((values * counts).sum() / total)
  std = float(math.sqrt(((values - mean) ** 2 * counts).sum() / total))
  return mean, std


def activity_stats(counts: np.ndarray) -> dict[str, float]:
  """min / median / mean / max of ratings per user (or per movie)."""
  counts = np.asarray(counts)
  if counts.size == 0:
    return {"n": 0, "min": 0, "median": math.nan, "mean": math.nan, "max": 0}
  return {"n": int(counts.size), "min": int(counts.min()), "median": float(np.median(counts)),
          "mean": float(counts.mean()), "max": int(counts.max())}


def log_bin_edges(values: np.ndarray, bins_per_decade: int = 10) -> np.ndarray:
  """Integer bin edges spaced evenly in log10, from min(values) to past max(values).

  Bin k holds the integers in [edges[k], edges[k+1]); the last edge is max + 1 so that
  np.histogram counts every positive value exactly once. Non-positive values are ignored.
  """
  values = np.asarray(values)
  values = values[values > 0]
  if values.size == 0:
    return np.array([1, 2], np.int64)
  lo, hi = int(values.min()), int(values.max()) + 1
  n = max(2, int(math.ceil(math.log10(hi / lo) * bins_per_decade)) + 1)
  inner = np.round(np.geomspace(lo, hi, n)).astype(np.int64)
  return np.unique(np.clip(np.concatenate(([lo], inner, [hi])), lo, hi))


def ccdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Distinct values x (ascending) and the share of entries >= x."""
  x, counts = np.unique(np.asarray(values), return_counts=True)
  at_least = np.cumsum(counts[::-1])[::-1]
  return x, at_least / max(1, int(counts.sum()))


def _top_count(counts: np.ndarray, fraction: float) -> int:
  return max(1, int(math.ceil(fraction * len(counts))))


def top_share(counts: np.ndarray, fraction: float) -> float:
  """Share of all ratings that go to the top `fraction` of movies (at least one movie)."""
  counts = np.sort(np.asarray(counts, np.int64))[::-1]
  total = int(counts.sum())
  if total == 0:
    return math.nan
  return float(counts[:_top_count(counts, fraction)].sum() / total)


@dataclasses.dataclass(frozen=True)
class MonthlyRatings:
  """Ratings per calendar month: counts, mean rating, and what had no date."""

  months: np.ndarray  # datetime64[M], consecutive (empty months included)
  counts: np.ndarray  # int64, ratings per month
  mean_rating: np.ndarray  # float64 stars; NaN for empty months
  n_undated: int  # rows with NO_DATE
  first_day: str | None  # YYYY-MM-DD of the earliest / latest dated rating
  last_day: str | None


def monthly_ratings(store: RatingStore, *, block_rows: int = BLOCK_ROWS) -> MonthlyRatings:
  """Counts and mean ratings per month, in one blockwise pass over date and rating."""
  base = 0  # months since 1970-01 of counts[0]
  counts = np.zeros(0, np.int64)
  sums = np.zeros(0, np.float64)
  n_undated = 0
  first, last = None, None
  for rows in store.iter_row_blocks(block_rows):
    days = np.asarray(store.date[rows])
    dated = days != NO_DATE
    n_undated += int(days.size - dated.sum())
    if not dated.any():
      continue
    days = days[dated]
    raw = np.asarray(store.rating[rows])[dated]
    lo_day, hi_day = int(days.min()), int(days.max())
    first = lo_day if first is None else min(first, lo_day)
    last = hi_day if last is None else max(last, hi_day)
    month = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    lo, hi = int(month.min()), int(month.max())
    if counts.size == 0:
      base = lo
    new_base, new_end = min(base, lo), max(base + counts.size, hi + 1)
    if (new_base, new_end) != (base, base + counts.size):
      pad = (base - new_base, new_end - base - counts.size)
      counts, sums, base = np.pad(counts, pad), np.pad(sums, pad), new_base
    counts += np.bincount(month - base, minlength=counts.size)
    sums += np.bincount(month - base, weights=raw, minlength=counts.size)
  months = (base + np.arange(counts.size)).astype("datetime64[M]")
  with np.errstate(invalid="ignore", divide="ignore"):
    mean = np.where(counts > 0, sums / np.maximum(counts, 1) / store.rating_scale, np.nan)
  iso = lambda d: None if d is None else str(np.datetime64(d, "D"))
  return MonthlyRatings(months=months, counts=counts, mean_rating=mean, n_undated=n_undated,
                        first_day=iso(first), last_day=iso(last))


def top_items(store: RatingStore, k: int = 20) -> list[dict[str, Any]]:
  """The k most rated movies (ties by index), with title, year and mean rating.

  A missing title reads as "item <original id>"; a missing year stays None.
  """
  per_item = store.ratings_per_item()
  order = np.argsort(-per_item, kind="stable")[:max(0, k)]
  table = store.items_table().take(order)
  names = set(table.column_names)
  columns = {name: table.column(name).to_pylist() if name in names else [None] * len(order)
             for name in ("original_id", "title", "year", "mean_rating")}
  result = []
  for rank, item in enumerate(order):
    row = {name: values[rank] for name, values in columns.items()}
    year = row["year"]
    if isinstance(year, float):
      year = None if math.isnan(year) else int(year)
    result.append({
        "rank": rank + 1,
        "index": int(item),
        "original_id": row["original_id"],
        "title": row["title"] if row["title"] else f"item {row['original_id']}",
        "year": year,
        "n_ratings": int(per_item[item]),
        "mean_rating": None if row["mean_rating"] is None else float(row["mean_rating"]),
    })
  return result


# -------------------------------------------------------------------------------- plots
def _save(fig: Figure, path: Path) -> Path:
  fig.savefig(path, dpi=_DPI)
  return path


def _log_axes(ax: Axes) -> None:
  """Log-log axes labelled at decades only (minor labels overlap on short ranges)."""
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())
  ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _mark_center(ax: Axes, values: np.ndarray, *, horizontal: bool = False) -> None:
  """Median and mean as labelled lines (vertical on a value axis, horizontal on a count axis)."""
  line = ax.axhline if horizontal else ax.axvline
  median, mean = float(np.median(values)), float(np.mean(values))
  line(median, color=_MEDIAN_COLOR, linestyle="--", linewidth=1.5,
       label=f"median {_num(median)}")
  line(mean, color=_MEAN_COLOR, linestyle="-.", linewidth=1.5, label=f"mean {_num(mean)}")
  ax.legend(loc="best", fontsize=9)


def _log_density_panel(ax: Axes, values: np.ndarray, noun: str, per: str) -> None:
  edges = log_bin_edges(values)
  counts, _ = np.histogram(values, bins=edges)
  density = counts / np.diff(edges)
  shown = counts > 0
  ax.bar(edges[:-1][shown], density[shown], width=np.diff(edges)[shown], align="edge",
         color=_COLOR, alpha=0.85, edgecolor="white", linewidth=0.4)
  _log_axes(ax)
  ax.set_xlabel(f"ratings per {per}")
  ax.set_ylabel(f"{noun} per unit count (log bins)")
  ax.set_title(f"Distribution (log-binned, {len(edges) - 1} bins)", fontsize=10)
  ax.grid(True, which="major", alpha=0.3)
  _mark_center(ax, values)


def plot_rating_distribution(hist: dict[float, int], name: str, path: str | os.PathLike) -> Path:
  """Bar chart of ratings per star value, each bar labelled with its share."""
  values = np.fromiter(hist.keys(), np.float64, len(hist))
  counts = np.fromiter(hist.values(), np.int64, len(hist))
  total = max(1, int(counts.sum()))
  step = float(np.min(np.diff(values))) if len(values) > 1 else 1.0
  mean, _ = histogram_moments(hist)
  fig = Figure(figsize=(7.5, 4.5), layout="constrained")
  ax = fig.subplots()
  bars = ax.bar(values, counts, width=0.8 * step, color=_COLOR)
  if len(values) <= _MAX_LABELLED_BARS:
    ax.bar_label(bars, labels=[f"{100 * c / total:.1f}%" for c in counts], padding=2,
                 fontsize=9)
    ax.set_xticks(values, [f"{v:g}" for v in values])
  ax.margins(y=0.12)
  ax.yaxis.set_major_formatter(ticker.EngFormatter(sep=""))
  ax.set_xlabel("rating (stars)")
  ax.set_ylabel("ratings")
  ax.set_title(f"{name}: rating distribution ({int(counts.sum()):,} ratings, mean {mean:.2f})")
  ax.grid(True, axis="y", alpha=0.3)
  return _save(fig, Path(path))


def plot_user_activity(per_user: np.ndarray, name: str, path: str | os.PathLike) -> Path:
  """Ratings per user on log-log axes: log-binned density and the CCDF."""
  per_user = np.asarray(per_user)
  fig = Figure(figsize=(12, 4.6), layout="constrained")
  left, right = fig.subplots(1, 2)
  _log_density_panel(left, per_user, "users", "user")
  x, p = ccdf(per_user)
  right.step(x, p, where="post", color=_COLOR, linewidth=1.5)
  _log_axes(right)
  right.set_xlabel("ratings per user, x")
  right.set_ylabel("share of users with ≥ x ratings")
  right.set_title("Complementary CDF", fontsize=10)
  right.grid(True, which="major", alpha=0.3)
  _mark_center(right, per_user)
  fig.suptitle(f"{name}: ratings per user ({per_user.size:,} users)")
  return _save(fig, Path(path))


def plot_movie_popularity(per_item: np.ndarray, name: str, path: str | os.PathLike) -> Path:
  """Ratings per movie: rank-frequency on log-log axes (the long tail) and the density."""
  per_item = np.asarray(per_item)
  fig = Figure(figsize=(12, 4.6), layout="constrained")
  left, right = fig.subplots(1, 2)
  ordered = np.sort(per_item)[::-1]
  ranks = np.arange(1, ordered.size + 1)
  if ordered.size > _MAX_CURVE_POINTS:  # a monotone curve: log-spaced ranks lose nothing
    ranks = np.unique(np.geomspace(1, ordered.size, _MAX_CURVE_POINTS).astype(np.int64))
  left.plot(ranks, ordered[ranks - 1], color=_COLOR, linewidth=1.8, marker="." if
            ranks.size < 200 else None)
  _log_axes(left)
  left.set_xlabel("movie rank (most rated first)")
  left.set_ylabel("ratings")
  left.set_title("Rank-frequency (long tail)", fontsize=10)
  left.grid(True, which="major", alpha=0.3)
  _mark_center(left, per_item, horizontal=True)
  shares = "\n".join(f"top {100 * f:g}% of movies: {100 * top_share(per_item, f):.1f}% of ratings"
                     for f in TOP_SHARES)
  left.text(0.03, 0.04, shares, transform=left.transAxes, fontsize=9, va="bottom",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})
  _log_density_panel(right, per_item, "movies", "movie")
  fig.suptitle(f"{name}: ratings per movie ({per_item.size:,} movies)")
  return _save(fig, Path(path))


def plot_ratings_over_time(monthly: MonthlyRatings, name: str, path: str | os.PathLike) -> Path:
  """Ratings per month (bars) above the monthly mean rating."""
  fig = Figure(figsize=(11, 6), layout="constrained")
  top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
  starts = monthly.months.astype("datetime64[D]")
  widths = (monthly.months + 1).astype("datetime64[D]") - starts
  top.bar(starts, monthly.counts, width=0.9 * widths.astype(np.float64), align="edge",
          color=_COLOR)
  top.yaxis.set_major_formatter(ticker.EngFormatter(sep=""))
  top.set_ylabel("ratings per month")
  top.grid(True, axis="y", alpha=0.3)
  centers = starts + widths // 2
  rated = monthly.counts > 0
  bottom.plot(centers[rated], monthly.mean_rating[rated], color=_MEDIAN_COLOR, marker=".",
              markersize=4, linewidth=1)
  bottom.set_ylabel("mean rating (stars)")
  bottom.set_xlabel("month")
  bottom.grid(True, alpha=0.3)
  undated = f", {monthly.n_undated:,} undated ratings not shown" if monthly.n_undated else ""
  fig.suptitle(f"{name}: ratings over time ({monthly.first_day} to {monthly.last_day}"
               f"{undated})")
  return _save(fig, Path(path))


# ------------------------------------------------------------------------------ summary
def _num(x: float) -> str:
  """Counts as 1,234; other numbers with up to 4 significant digits."""
  if isinstance(x, (int, np.integer)) or float(x).is_integer():
    return f"{int(x):,}"
  return f"{x:,.4g}" if abs(x) >= 1000 else f"{x:.4g}"


def _md(text: Any) -> str:
  """Text safe for a Markdown table cell."""
  text = " ".join(str(text).split())
  for ch in "\\|*_`[]<>":
    text = text.replace(ch, "\\" + ch)
  return text


def render_summary(store: RatingStore, hist: dict[float, int], per_user: np.ndarray,
                   per_item: np.ndarray, monthly: MonthlyRatings | None,
                   top: Sequence[dict[str, Any]], plots: Sequence[str],
                   notes: Sequence[str] = ()) -> str:
  """The Markdown summary from precomputed statistics (no pass over the columns)."""
  n = store.n_ratings
  density = n / max(1, store.n_users * store.n_items)
  mean, std = histogram_moments(hist)
  lo, hi = store.rating_range
  lines = [f"# EDA: {store.name}", "",
           f"Store `{store.path}`, fingerprint `{store.fingerprint}`.", "",
           "## Counts", "", "| | |", "|---|---:|",
           f"| ratings | {n:,} |",
           f"| users | {store.n_users:,} |",
           f"| movies | {store.n_items:,} |",
           f"| density | {100 * density:.3g}% (sparsity {100 * (1 - density):.6g}%) |",
           f"| rating scale | {lo:g} to {hi:g} stars in steps of {1 / store.rating_scale:g} |",
           f"| mean rating | {mean:.3f} (std {std:.3f}) |"]
  if monthly is not None and monthly.first_day is not None:
    lines.append(f"| dates | {monthly.first_day} to {monthly.last_day} "
                 f"({monthly.months.size} months) |")
    if monthly.n_undated:
      lines.append(f"| undated ratings | {monthly.n_undated:,} |")
  else:
    lines.append("| dates | none (the store has no rating dates) |")

  lines += ["", "## Ratings per user and per movie", "",
            "| | min | median | mean | max |", "|---|---:|---:|---:|---:|"]
  for label, counts in (("per user", per_user), ("per movie", per_item)):
    s = activity_stats(counts)
    lines.append(f"| {label} | {_num(s['min'])} | {_num(s['median'])} | {s['mean']:,.1f} | "
                 f"{_num(s['max'])} |")
  shares = "; ".join(f"the top {100 * f:g}% of movies ({_top_count(per_item, f):,}) receive "
                     f"{100 * top_share(per_item, f):.1f}%" for f in TOP_SHARES)
  lines += ["", f"Concentration: {shares} of all ratings."]

  total = max(1, sum(hist.values()))
  lines += ["", "## Rating distribution", "", "| rating (stars) | ratings | share |",
            "|---:|---:|---:|"]
  for value, count in hist.items():
    if count:
      lines.append(f"| {value:g} | {count:,} | {100 * count / total:.1f}% |")

  lines += ["", f"## Top {len(top)} movies by number of ratings", "",
            "| # | title | year | ratings | mean rating |", "|---:|---|---:|---:|---:|"]
  for row in top:
    year = "n/a" if row["year"] is None else row["year"]
    rating = "n/a" if row["mean_rating"] is None else f"{row['mean_rating']:.2f}"
    lines.append(f"| {row['rank']} | {_md(row['title'])} | {year} | {row['n_ratings']:,} | "
                 f"{rating} |")

  lines += ["", "## Plots", ""]
  lines += [f"- [{p}]({p})" for p in plots]
  lines += [f"- {note}" for note in notes]
  return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- main
def write_eda(store: RatingStore, out_dir: str | os.PathLike, *, top_k: int = 20,
              block_rows: int = BLOCK_ROWS) -> dict[str, Path]:
  """Writes the EDA plots and summary.md into out_dir (created if missing).

  Returns the files written, by name: the plot stems ("rating_distribution", ...) and
  "summary". "ratings_over_time" is absent when the store has no dates.
  """
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  hist = rating_histogram(store, block_rows=block_rows)
  per_user, per_item = store.ratings_per_user(), store.ratings_per_item()
  monthly = monthly_ratings(store, block_rows=block_rows) if store.has_dates else None

  written: dict[str, Path] = {}
  written["rating_distribution"] = plot_rating_distribution(
      hist, store.name, out / PLOT_FILES["rating_distribution"])
  written["user_activity"] = plot_user_activity(
      per_user, store.name, out / PLOT_FILES["user_activity"])
  written["movie_popularity"] = plot_movie_popularity(
      per_item, store.name, out / PLOT_FILES["movie_popularity"])
  notes = []
  if monthly is not None and monthly.counts.size:
    written["ratings_over_time"] = plot_ratings_over_time(
        monthly, store.name, out / PLOT_FILES["ratings_over_time"])
  else:
    notes.append(f"{PLOT_FILES['ratings_over_time']}: not written (the store has no dates)")

  summary = render_summary(store, hist, per_user, per_item, monthly, top_items(store, top_k),
                           plots=[p.name for p in written.values()], notes=notes)
  written["summary"] = out / SUMMARY_FILE
  written["summary"].write_text(summary, encoding="utf-8")
  return written

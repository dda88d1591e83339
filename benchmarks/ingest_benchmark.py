"""Ingest benchmark: Netflix-format text -> store, against a straightforward pandas parse.

  python benchmarks/ingest_benchmark.py --n_ratings=100480507 --out=bench_out/ingest

Steps, all on this machine in one run:
  1. generate a synthetic Netflix-scale store and write it as combined_data_*.txt (not timed);
  2. ingest the text into a new store in a child process: wall time and peak RSS;
  3. pandas.read_csv of the first --pandas_lines lines of the same file (nrows; header rows
     masked, movie ids forward-filled, dates parsed): the straightforward way, in a child
     process, scaled per line;
  4. open the ingested store and read one user's ratings: milliseconds, for a small and the big
     store, to show the cost does not grow with the store.
pandas is needed only here (pip install pandas).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_N = flags.DEFINE_integer("n_ratings", 10_000_000, "Ratings to generate (100480507 = Netflix).")
_USERS = flags.DEFINE_integer("n_users", 480_189, "Users to generate.")
_ITEMS = flags.DEFINE_integer("n_items", 17_770, "Movies to generate.")
_FILES = flags.DEFINE_integer("n_files", 4, "combined_data_*.txt files to write.")
_PANDAS_LINES = flags.DEFINE_integer("pandas_lines", 10_000_000, "Lines for the pandas parse.")
_OUT = flags.DEFINE_string("out", "bench_out/ingest", "Scratch folder (several GB at 100M).")
_KEEP = flags.DEFINE_bool("keep", True, "Reuse generated text from an earlier run.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Ingest and pandas runs (alternating); medians "
                                "are reported, and every run's ratio.")

# Peak RSS from VmHWM: ru_maxrss survives exec and would report the parent's peak.
_PEAK = ("int(next(x for x in open('/proc/self/status') if x.startswith('VmHWM')).split()[1])"
         " / 2**20")

_CHILD_INGEST = """
import sys, time, json
from netrec_jax.data import netflix
t = time.time()
store = netflix.build_netflix_store(sys.argv[1], sys.argv[2], min_user_ratings=0, overwrite=True)
total = time.time() - t
build = store.meta["build_seconds"]
print(json.dumps({"seconds": total, "parse_seconds": total - build, "store_build_seconds": build,
                  "build_phase_seconds": store.meta["build_stats"]["phase_seconds"],
                  "threads": store.meta["build_stats"]["threads"],
                  "n_ratings": store.n_ratings,
                  "peak_rss_gb": PEAK}))
""".replace("PEAK", _PEAK)

# The straightforward pandas parse of the same file (its first N lines, via nrows): read_csv,
# mask the "MOVIE:" rows, forward-fill movie ids, let pandas parse the dates.
_CHILD_PANDAS = """
import sys, time, json
import pandas as pd
path, n = sys.argv[1], int(sys.argv[2])
t = time.time()
df = pd.read_csv(path, header=None, names=["user", "rating", "date"], nrows=n)
header = df["rating"].isna()
df["movie"] = df["user"].where(header).str.rstrip(":").ffill().astype("int32")
df = df[~header]
df["user"] = df["user"].astype("int64")
df["rating"] = df["rating"].astype("int8")
df["date"] = pd.to_datetime(df["date"])
print(json.dumps({"seconds": time.time() - t, "lines": int(len(header)), "rows": len(df),
                  "pandas": pd.__version__, "peak_rss_gb": PEAK}))
""".replace("PEAK", _PEAK)


def _child(code: str, *args: str) -> dict:
  env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
  out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                       text=True, env=env)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  from netrec_jax.data import netflix, synthetic
  from netrec_jax.data.store import RatingStore

  out = Path(_OUT.value)
  text_dir = out / f"text_{_N.value}"
  if not (_KEEP.value and (text_dir / "movie_titles.txt").is_file()):
    cfg = synthetic.SyntheticConfig(n_users=_USERS.value, n_items=_ITEMS.value,
                                    n_ratings=_N.value, rank=16, seed=0)
    t = time.time()
    store = synthetic.build_synthetic_store(cfg, out / f"generated_{_N.value}", overwrite=True)
    print(f"generated {store.n_ratings:,} ratings in {time.time() - t:.1f}s")
    t = time.time()
    netflix.write_netflix_files(store, text_dir, n_files=_FILES.value)
    print(f"wrote Netflix text in {time.time() - t:.1f}s")
  text_bytes = sum(p.stat().st_size for p in text_dir.glob("*.txt"))

  # Ingest and pandas alternate, so drift in the machine's speed hits both; medians reported.
  lines = None
  ingests, pandas_runs = [], []
  for _ in range(_REPEATS.value):
    shutil.rmtree(out / f"ingested_{_N.value}", ignore_errors=True)  # a new store each time
    ingests.append(_child(_CHILD_INGEST, str(text_dir), str(out / f"ingested_{_N.value}")))
    try:
      pandas_runs.append(_child(_CHILD_PANDAS, str(text_dir / "combined_data_1.txt"),
                                str(_PANDAS_LINES.value)))
    except subprocess.CalledProcessError as e:
      print("pandas run failed (is pandas installed?):", e.stderr[-500:])
  ingest = sorted(ingests, key=lambda r: r["seconds"])[len(ingests) // 2]
  lines = ingest["n_ratings"] + _ITEMS.value
  ours_per_line = ingest["seconds"] / lines
  pandas = (sorted(pandas_runs, key=lambda r: r["seconds"])[len(pandas_runs) // 2]
            if pandas_runs else None)
  pandas_per_line = pandas["seconds"] / pandas["lines"] if pandas else float("nan")
  ratios = [(p["seconds"] / p["lines"]) / (i["seconds"] / lines)
            for i, p in zip(ingests, pandas_runs)]

  store = RatingStore.open(out / f"ingested_{_N.value}")
  user = store.n_users // 2
  t = time.perf_counter()
  reopened = RatingStore.open(store.path)
  rows = reopened.user_rows(user)
  items, ratings = reopened.item[rows].copy(), reopened.rating[rows].copy()
  open_read_ms = (time.perf_counter() - t) * 1e3
  t = time.perf_counter()
  for u in range(0, store.n_users, max(1, store.n_users // 1000)):
    reopened.item[reopened.user_rows(u)].copy()
  per_user_us = (time.perf_counter() - t) / len(range(0, store.n_users,
                                                     max(1, store.n_users // 1000))) * 1e6

  result = {
      "machine": f"{os.cpu_count()} cores, "
                 f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
      "text_gb": text_bytes / 2**30,
      "ingest": ingest,
      "ingest_m_lines_per_s": lines / ingest["seconds"] / 1e6,
      "pandas": pandas,
      "pandas_m_lines_per_s": 1 / pandas_per_line / 1e6 if pandas else None,
      "speedup_vs_pandas": pandas_per_line / ours_per_line if pandas else None,
      "parse_speedup_vs_pandas": (pandas_per_line / (ingest["parse_seconds"] / lines)
                                  if pandas else None),
      "ingest_seconds_all_runs": [round(r["seconds"], 2) for r in ingests],
      "pandas_seconds_all_runs": [round(r["seconds"], 2) for r in pandas_runs],
      "speedup_each_run": [round(r, 2) for r in ratios],
      "open_and_read_one_user_ms": open_read_ms,
      "one_user_items": int(len(items)),
      "read_user_row_us": per_user_us,
      "this_process_peak_rss_gb": eval(_PEAK),
  }
  print(json.dumps(result, indent=2))
  (out / f"result_{_N.value}.json").write_text(json.dumps(result, indent=2))
  del ratings


if __name__ == "__main__":
  app.run(main)

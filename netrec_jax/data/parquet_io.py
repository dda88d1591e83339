"""Parquet export and import of a whole store (the source documents keep ratings in Parquet).

Export writes a folder with ratings.parquet (original ids, rating in stars, date), users.parquet
and items.parquet, streaming row groups so memory stays bounded. Import reads such a folder, or
any Parquet file with user_id, item_id, rating (stars) and optionally date columns, back into a
store; an exported store imports to the same fingerprint.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netrec_jax.data.builder import StoreBuilder
from netrec_jax.data.errors import DataError
from netrec_jax.data.store import NO_DATE, RatingStore

RATINGS_FILE = "ratings.parquet"
_SCALE_KEY = b"netrec.rating_scale"
_RANGE_KEY = b"netrec.rating_range"


def export_parquet(store: RatingStore, out_dir: str | os.PathLike, *,
                   rows_per_group: int = 1 << 22) -> Path:
  """Writes the store as Parquet into out_dir (atomically: temp folder, then rename)."""
  out = Path(out_dir)
  if out.exists():
    raise DataError(out, "output already exists")
  tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
  tmp.mkdir(parents=True)
  try:
    user_ids, item_ids = store.user_original_ids(), store.item_original_ids()
    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()),
                        ("rating", pa.float32()), ("date", pa.date32())],
                       metadata={_SCALE_KEY: str(store.rating_scale).encode(),
                                 _RANGE_KEY: json.dumps(store.rating_range).encode(),
                                 b"netrec.meta": json.dumps(store.meta).encode()})
    with pq.ParquetWriter(tmp / RATINGS_FILE, schema) as writer:
      for sl in store.iter_row_blocks(rows_per_group):
        dates = np.asarray(store.date[sl])
        writer.write_table(pa.table({
            "user_id": user_ids[np.asarray(store.user[sl])],
            "item_id": item_ids[np.asarray(store.item[sl])],
            "rating": store.stars(sl),
            "date": pa.array(dates, mask=dates == NO_DATE, type=pa.int32()).cast(pa.date32()),
        }, schema=schema))
    shutil.copy(store.path / "users.parquet", tmp / "users.parquet")
    shutil.copy(store.path / "items.parquet", tmp / "items.parquet")
    os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out


def import_parquet(source: str | os.PathLike, dest: str | os.PathLike, *, name: str | None = None,
                   rating_scale: int | None = None,
                   rating_range: tuple[float, float] | None = None, min_user_ratings: int = 0,
                   min_item_ratings: int = 0, overwrite: bool = False) -> RatingStore:
  """A ratings Parquet file (or an exported folder) -> store."""
  source = Path(source)
  path = source / RATINGS_FILE if source.is_dir() else source
  if not path.is_file():
    raise DataError(path, "file not found")
  try:
    parquet = pq.ParquetFile(path)
  except (pa.ArrowInvalid, OSError) as e:
    raise DataError(path, f"not a readable Parquet file ({e})") from None
  names = parquet.schema_arrow.names
  missing = [c for c in ("user_id", "item_id", "rating") if c not in names]
  if missing:
    raise DataError(path, f"missing column(s) {missing}; found {names}")
  metadata = parquet.schema_arrow.metadata or {}
  scale = rating_scale or int(metadata.get(_SCALE_KEY, b"1"))
  lo_hi = rating_range or tuple(json.loads(metadata.get(_RANGE_KEY, b"[1, 5]")))
  has_dates = "date" in names
  params = {"source": "parquet", "file": str(path)}
  exported_name = json.loads(metadata.get(b"netrec.meta", b"{}")).get("name")
  with StoreBuilder(dest, name=name or exported_name or path.stem,
                    rating_scale=scale, rating_range=lo_hi, min_user_ratings=min_user_ratings,
                    min_item_ratings=min_item_ratings, overwrite=overwrite, has_dates=has_dates,
                    build_params=params) as builder:
    builder.add_source(path, role="ratings")
    row = 0
    for batch in parquet.iter_batches(batch_size=1 << 22):
      stars = batch.column("rating").to_numpy(zero_copy_only=False).astype(np.float64)
      scaled = np.rint(stars * scale)
      off_grid = np.flatnonzero(np.abs(scaled - stars * scale) > 1e-6)
      if len(off_grid):
        raise DataError(path, f"rating {stars[off_grid[0]]} is not a multiple of 1/{scale} "
                        "(pass rating_scale)", line=row + int(off_grid[0]) + 1)
      outside = np.flatnonzero((scaled < lo_hi[0] * scale) | (scaled > lo_hi[1] * scale))
      if len(outside):
        raise DataError(path, f"rating {stars[outside[0]]} outside {lo_hi}",
                        line=row + int(outside[0]) + 1)
      dates = None
      if has_dates:
        column = batch.column("date").cast(pa.date32())
        dates = pc.fill_null(column.cast(pa.int32()), NO_DATE).to_numpy(zero_copy_only=False)
      builder.add(batch.column("user_id").to_numpy(zero_copy_only=False),
                  batch.column("item_id").to_numpy(zero_copy_only=False),
                  scaled.astype(np.int32), dates)
      row += batch.num_rows
    if source.is_dir():
      for table_name, setter in (("items.parquet", builder.set_item_info),
                                 ("users.parquet", builder.set_user_info)):
        if (source / table_name).is_file():
          table = pq.read_table(source / table_name)
          drop = [c for c in ("index", "n_ratings", "mean_rating", "log_n_ratings")
                  if c in table.column_names]
          setter(table.drop_columns(drop))
    return builder.finish()

"""Vectorised line-oriented parsing with pyarrow: every source reads its text files through here.

Files are streamed as batches of whole lines (pyarrow's CSV reader with a delimiter that never
occurs), so we keep exact line numbers for error messages, and all field splitting, casting
and validation runs in Arrow compute kernels, never a Python loop per line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from netrec_jax.data.builder import BadLines
from netrec_jax.data.errors import DataError

BLOCK_BYTES = 64 << 20


def check_readable(path: str | os.PathLike) -> Path:
  """A clear error for a missing, unreadable or empty input file."""
  path = Path(path)
  if not path.exists():
    raise DataError(path, "file not found")
  if path.is_dir():
    raise DataError(path, "expected a file, found a folder")
  if path.stat().st_size == 0:
    raise DataError(path, "file is empty")
  if not os.access(path, os.R_OK):
    raise DataError(path, "file is not readable")
  return path


def iter_lines(path: str | os.PathLike, encoding: str = "utf8", skip_header: bool = False,
               block_bytes: int = BLOCK_BYTES, data: pa.Buffer | None = None,
               first_line: int = 1, bad: BadLines | None = None,
               odd: BadLines | None = None,
               keep_undecodable: Callable[[bytes], bool] | None = None
               ) -> Iterator[tuple[int, pa.StringArray]]:
  """Yields (line number of the first line, lines) batches; .gz/.bz2 are decompressed.

  With `data`, the lines are read from that buffer (a piece of `path` starting at line
  `first_line`) and `path` only names the file in messages.

  A line that is not valid `encoding` text is reported to `bad` (fatal in strict mode) and
  yielded empty, so one bad byte costs one line, not the file; without `bad` it is an error.
  Lines for which `keep_undecodable(raw bytes)` is true are yielded with replacement
  characters instead, for the caller to reject (a damaged Netflix movie header must not be
  skipped: the ratings after it would land on the previous movie). A UTF-8 byte-order mark
  is dropped. With `bad` or `odd`, a file whose last line has no line end is reported:
  fatal in strict mode (the file looks truncated), else counted in `odd`.
  """
  if data is None:
    path = check_readable(path)
    _check_text_encoding(path, encoding)
  else:
    path = Path(path)
  read = pacsv.ReadOptions(column_names=["line"], block_size=block_bytes, encoding=encoding,
                           skip_rows=1 if skip_header else 0, use_threads=True)
  parse = pacsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False,
                             ignore_empty_lines=False, newlines_in_values=False)
  # Binary, not string: the reader would reject a whole block for one undecodable byte.
  convert = pacsv.ConvertOptions(column_types={"line": pa.binary()}, strings_can_be_null=False,
                                 quoted_strings_can_be_null=False, null_values=[])
  first = first_line + (1 if skip_header else 0)
  start = first
  try:
    stream = (pa.input_stream(str(path), compression="detect") if data is None
              else pa.BufferReader(data))
    reader = pacsv.open_csv(stream, read_options=read, parse_options=parse,
                            convert_options=convert)
    for batch in reader:
      lines = _decode_lines(batch.column(0), path, first, encoding, bad, keep_undecodable)
      if first == 1 and len(lines) and lines[0].as_py().startswith("\ufeff"):
        lines = pa.concat_arrays([pa.array([lines[0].as_py()[1:]], pa.string()), lines[1:]])
      yield first, lines
      first += len(lines)
  except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError) as e:
    # The reader fails per block, so we know only that the problem is at or after `first`.
    raise DataError(path, f"cannot read as {encoding} text lines at or after line {first}; "
                    f"file truncated, corrupt or in another format "
                    f"({str(e).splitlines()[0]})") from None
  if data is None and first > start and (bad is not None or odd is not None):
    check_line_end(path, first - 1, bad, odd)


NO_LINE_END = "last line has no line end (the file may be truncated)"


def check_line_end(path: Path, last_line: int, bad: BadLines | None,
                   odd: BadLines | None) -> None:
  """A plain file must end with a newline: a cut-off last line may still parse (a u.data
  timestamp cut to 88125 is a valid date in 1970), so only the missing line end shows it."""
  if path.stat().st_size == 0:
    return
  if path.suffix in (".gz", ".bz2"):  # the last byte of the decompressed text
    import bz2
    import gzip
    last = b""
    with (gzip.open if path.suffix == ".gz" else bz2.open)(path, "rb") as f:
      while chunk := f.read(1 << 22):
        last = chunk[-1:]
    if last in (b"\n", b""):
      return
  else:
    with open(path, "rb") as f:
      f.seek(-1, os.SEEK_END)
      if f.read(1) == b"\n":
        return
  if bad is not None and bad.strict:
    bad.add(path, [last_line], NO_LINE_END)
  elif odd is not None:
    odd.add(path, [last_line], NO_LINE_END)


def _decode_lines(raw: pa.Array, path: Path, first: int, encoding: str, bad: BadLines | None,
                  keep_undecodable: Callable[[bytes], bool] | None) -> pa.StringArray:
  """Binary lines as strings; undecodable ones reported (and emptied) one by one."""
  try:
    return raw.cast(pa.string())
  except pa.ArrowInvalid:
    pass
  # Only lines with a byte >= 0x80 can be invalid UTF-8: find those, decode them in Python.
  offsets = np.frombuffer(raw.buffers()[1], np.int32)[raw.offset:raw.offset + len(raw) + 1]
  data = np.frombuffer(raw.buffers()[2], np.uint8)
  high = np.flatnonzero(data[offsets[0]:offsets[-1]] >= 0x80) + offsets[0]
  candidates = np.unique(np.searchsorted(offsets, high, side="right") - 1)
  texts = {}
  for k in candidates.tolist():
    line = raw[k].as_py()
    try:
      line.decode("utf-8")
      continue
    except UnicodeDecodeError as e:
      problem = (f"line is not valid {encoding} text (byte 0x{line[e.start]:02x} at column "
                 f"{e.start + 1})")
    if keep_undecodable is not None and keep_undecodable(line):
      texts[k] = line.decode("utf-8", errors="replace")
      continue
    shown = line.decode("utf-8", errors="backslashreplace")[:80]
    if bad is None:
      raise DataError(path, f"{problem}; is the file in another encoding?", line=first + k)
    bad.add(path, [first + k], problem, texts=[shown])
    texts[k] = ""
  if not texts:
    return raw.cast(pa.string())
  mask = np.zeros(len(raw), bool)
  mask[list(texts)] = True
  replacements = pa.array([texts[k].encode() for k in sorted(texts)], pa.binary())
  return pc.replace_with_mask(raw, pa.array(mask), replacements).cast(pa.string())


_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32-LE"), (b"\x00\x00\xfe\xff", "UTF-32-BE"),
         (b"\xff\xfe", "UTF-16-LE"), (b"\xfe\xff", "UTF-16-BE"))


def _check_text_encoding(path: Path, encoding: str) -> None:
  """UTF-16/32 text (or binary data) named as such, instead of failing somewhere inside."""
  try:
    with pa.input_stream(str(path), compression="detect") as f:
      head = f.read(4096)
  except (pa.ArrowInvalid, OSError, EOFError):
    return  # the reader reports a damaged stream with its line
  for bom, name in _BOMS:
    if head.startswith(bom):
      raise DataError(path, f"cannot read as {encoding} text lines: the file is {name} encoded "
                      f"(byte-order mark {bom.hex(' ').upper()}); convert it to UTF-8, e.g. "
                      f"iconv -f {name} -t UTF-8")
  if b"\x00" not in head:
    return
  even, odd = head[0::2].count(0), head[1::2].count(0)
  half = max(1, len(head) // 2)
  if odd > 0.3 * half and even == 0:
    name = "UTF-16-LE"
  elif even > 0.3 * half and odd == 0:
    name = "UTF-16-BE"
  else:
    raise DataError(path, f"cannot read as {encoding} text lines: the file has NUL bytes "
                    "(binary data, or text in UTF-16/UTF-32?)")
  raise DataError(path, f"cannot read as {encoding} text lines: the file looks {name} encoded "
                  f"(every other byte is NUL); convert it to UTF-8, e.g. iconv -f {name} -t "
                  "UTF-8")


def line_numbers(first: int, n: int) -> np.ndarray:
  return np.arange(first, first + n, dtype=np.int64)


def report_bad(bad: BadLines, path: Path, mask: np.ndarray, numbers: np.ndarray,
               lines: pa.Array | None, reason: str) -> None:
  """Records the lines where `mask` is true (texts kept for the first few, when known)."""
  where = np.flatnonzero(mask)
  if len(where) and lines is None:
    bad.add(path, numbers[where], reason)
  elif len(where):
    shown = where[:bad.max_examples]
    bad.add(path, numbers[where], reason,
            texts=[str(t) for t in lines.take(pa.array(shown)).to_pylist()]
            + [None] * (len(where) - len(shown)))


def parse_ints(strings: pa.Array, numbers: np.ndarray, bad: BadLines, path: Path, what: str,
               lines: pa.Array, dtype=pa.int64(),  # noqa: B008 (an immutable type)
               active: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Casts strings to integers; returns (values, ok) and reports the lines that are not.

  Only lines in `active` (still good after earlier fields) are reported, so a line with
  several bad fields counts once.
  """
  stripped = pc.utf8_trim_whitespace(strings)
  try:
    values = pc.cast(stripped, dtype)
    return values.to_numpy(zero_copy_only=False), np.ones(len(strings), bool)
  except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
    ok = pc.match_substring_regex(stripped, r"^[+-]?\d{1,18}$").to_numpy(zero_copy_only=False)
    report_bad(bad, path, _active(active, ~ok), numbers, lines, f"{what} is not an integer")
    filled = pc.if_else(pa.array(ok), stripped, pa.scalar("0"))
    try:
      values = pc.cast(filled, dtype)
    except pa.ArrowInvalid:  # out of range for dtype
      values = pc.cast(filled, pa.int64())
      values = pc.if_else(pc.less_equal(pc.abs(values), 2**31 - 1), values, 0).cast(dtype)
    return values.to_numpy(zero_copy_only=False), ok


def parse_floats(strings: pa.Array, numbers: np.ndarray, bad: BadLines, path: Path, what: str,
                 lines: pa.Array, active: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
  stripped = pc.utf8_trim_whitespace(strings)
  try:
    values = pc.cast(stripped, pa.float64()).to_numpy(zero_copy_only=False)
    ok = np.isfinite(values)
  except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
    ok = pc.match_substring_regex(stripped, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    ok = ok.to_numpy(zero_copy_only=False)
    values = pc.cast(pc.if_else(pa.array(ok), stripped, pa.scalar("0")), pa.float64())
    values = values.to_numpy(zero_copy_only=False)
  report_bad(bad, path, _active(active, ~ok), numbers, lines, f"{what} is not a number")
  return values, ok


def parse_iso_dates(strings: pa.Array, numbers: np.ndarray, bad: BadLines, path: Path,
                    lines: pa.Array, active: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
  """YYYY-MM-DD strings to days since 1970-01-01 (int32), rejecting impossible dates."""
  stripped = pc.utf8_trim_whitespace(strings)
  parsed = pc.strptime(stripped, format="%Y-%m-%d", unit="s", error_is_null=True)
  # strptime rolls 2005-02-30 over to March and accepts odd widths: the date must print back
  # exactly as written.
  printed = pc.strftime(parsed, format="%Y-%m-%d")
  ok = pc.fill_null(pc.equal(printed, stripped), False).to_numpy(zero_copy_only=False)
  report_bad(bad, path, _active(active, ~ok), numbers, lines,
             "date is not a valid YYYY-MM-DD date")
  days = pc.cast(pc.fill_null(parsed, 0), pa.timestamp("s")).cast(pa.int64()).to_numpy(
      zero_copy_only=False) // 86400
  return days.astype(np.int32), ok


def _active(active: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
  return mask if active is None else mask & active


def split_fields(lines: pa.Array, sep: str, n_fields: int, numbers: np.ndarray, bad: BadLines,
                 path: Path, max_splits: int | None = None) -> tuple[list[pa.Array], np.ndarray]:
  """Splits lines on `sep`; lines without exactly n_fields fields are reported and masked."""
  parts = pc.split_pattern(lines, sep, max_splits=max_splits)
  counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
  ok = counts == n_fields
  report_bad(bad, path, ~ok, numbers, lines,
             f"expected {n_fields} fields separated by {sep!r}")
  if not ok.all():
    parts = parts.filter(pa.array(ok))
  fields = [pc.list_element(parts, k) for k in range(n_fields)]
  return fields, ok

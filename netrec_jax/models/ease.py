"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed form.

With X the users x items binary interaction matrix and G = X^T X its item Gram matrix,

    P = (G + lambda I)^-1,    B = I - P diag(1 / diag(P)),    i.e. B_ij = -P_ij / P_jj, B_jj = 0

is the item-item weight matrix that minimises ||X - X B||^2 + lambda ||B||^2 subject to
diag(B) = 0; a user's scores are their row times B (scores = X_u B), and a new user's are their
row times B too: fold-in is free.

Pure functions, no data or training code: `gram` builds G from a scipy.sparse matrix one block
of item columns at a time (X is never densified; only G is dense), `fit` solves on the default
JAX device (Cholesky, float32, or float64 under jax.enable_x64), `score` multiplies sparse rows
by B.

Memory: G, the Cholesky factor, the identity it solves against, P and B are each
n_items^2 floats, so the solve peaks at about PEAK_MATRICES n_items^2 floats on the device
(Netflix, 17,770 movies: 1.26 GB per float32 matrix, about 6.3 GB at the peak) and two on the
host (G built, B fetched back). `check_fits` refuses, in one line, a catalog that does not
fit before any of it is allocated.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

DTYPES = ("float32", "float64")
# Dense n_items^2 matrices alive at once on the device during `fit` (G + lambda I, its
# Cholesky factor, the identity, P, B), the figure the memory check multiplies.
PEAK_MATRICES = 5


def bytes_needed(n_items: int, dtype: str = "float32") -> int:
  """Device bytes at the peak of `fit` for a catalog of n_items."""
  return PEAK_MATRICES * int(n_items) ** 2 * np.dtype(dtype).itemsize


def available_bytes() -> tuple[int | None, str]:
  """(bytes free for the solve, where): the default device's free memory where JAX reports
  it (GPU, TPU), else the host's MemAvailable (CPU); (None, ...) when neither is known."""
  import jax
  device = jax.devices()[0]
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # noqa: BLE001 - backends without memory stats (CPU) raise or return None
    stats = None
  if stats and stats.get("bytes_limit"):
    free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return free, f"{device.platform} memory"
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024, "host MemAvailable"
  except OSError:
    pass
  pages = getattr(os, "sysconf", lambda _: -1)("SC_AVPHYS_PAGES")
  if pages and pages > 0:
    return int(pages) * os.sysconf("SC_PAGE_SIZE"), "host free memory"
  return None, "unknown"


def check_fits(n_items: int, dtype: str = "float32", max_items: int | None = None,
               available: int | None = None, where: str = "memory") -> None:
  """A one-line ValueError when a catalog of n_items cannot be solved densely.

  Refused when n_items > max_items (the config's ease.max_items) or when the peak of `fit`
  exceeds `available` bytes (None: not checked).
  """
  need = bytes_needed(n_items, dtype)
  what = (f"EASE needs a dense {n_items:,} x {n_items:,} solve: about {need / 2**30:.2f} GiB "
          f"({PEAK_MATRICES} matrices of {n_items:,}^2 {dtype})")
  if max_items is not None and n_items > max_items:
    raise ValueError(f"{what}, but the catalog has {n_items:,} items > ease.max_items="
                     f"{max_items:,}; raise ease.max_items if the device has the memory, or "
                     "filter items (data.min_item_ratings)")
  if available is not None and need > available:
    raise ValueError(f"{what}, but only {available / 2**30:.2f} GiB of {where} is free; "
                     "use a device with more memory, lower ease.max_items to refuse earlier, "
                     "or filter items (data.min_item_ratings)")


def gram(x: sp.spmatrix, dtype: str = "float32", block_items: int = 2048) -> np.ndarray:
  """Dense [n_items, n_items] X^T X from sparse X, a block of item columns at a time.

  Each block is a sparse product X^T X[:, block] (integer counts for binary X, exact in
  float32 below 2^24), densified into its columns of G: no dense copy of X, and no sparse
  n_items^2 intermediate (which would cost 12 bytes per cell on a dense Gram).
  """
  x = sp.csc_matrix(x, dtype=np.float64)
  xt = x.T.tocsr()
  n = x.shape[1]
  out = np.empty((n, n), dtype)
  for lo in range(0, n, block_items):
    hi = min(lo + block_items, n)
    out[:, lo:hi] = (xt @ x[:, lo:hi]).toarray()
  return out


def fit(g: np.ndarray, l2: float, dtype: str = "float32") -> np.ndarray:
  """B (host numpy, `dtype`) from the Gram matrix G: the dense solve on the default device."""
  import jax
  import jax.numpy as jnp
  import jax.scipy.linalg as jsl
  if dtype not in DTYPES:
    raise ValueError(f"ease.dtype must be one of {DTYPES}, got {dtype!r}")
  if l2 <= 0:
    raise ValueError(f"ease.l2 must be > 0 (the solve needs G + lambda I positive definite), "
                     f"got {l2}")

  def solve(gram_matrix):
    n = gram_matrix.shape[0]
    eye = jnp.eye(n, dtype=gram_matrix.dtype)
    factor = jsl.cho_factor(gram_matrix + l2 * eye, lower=True)
    p = jsl.cho_solve(factor, eye)
    b = -p / jnp.diag(p)[None, :]
    return b.at[jnp.diag_indices(n)].set(0.0)

  with jax.enable_x64(dtype == "float64"):
    b = jax.jit(solve)(jnp.asarray(g, dtype))
    out = np.asarray(jax.device_get(b))
  if not np.isfinite(out).all():
    raise FloatingPointError(f"EASE solve gave non-finite weights (lambda {l2}, {dtype}); "
                             "raise ease.l2 or use ease.dtype=float64")
  return out


def score(rows: sp.spmatrix, b: np.ndarray) -> np.ndarray:
  """[n_rows, n_items] scores of interaction rows (sparse) against B."""
  return np.asarray(sp.csr_matrix(rows) @ b)

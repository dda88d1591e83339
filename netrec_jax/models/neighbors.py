"""Item-item neighbourhood models fitted by counting: item-kNN (cosine with shrinkage) and
RP3beta (Paudel et al. 2017), as in Dacrema et al.'s reference code (RecSys2019_Deep
Learning_Evaluation: Compute_Similarity_Python, ItemKNNCFRecommender, RP3betaRecommender).

Both build a sparse item-item matrix W from the users x items binary interactions X; a user's
scores are X_u W (score_uj = sum over the user's items i of W_ij), and a new user's are their
row times W. Pure functions on scipy.sparse, a block of items at a time (each block densified
to [n_items, block], never the whole n_items^2 matrix).

Item-kNN (reference: Compute_Similarity_Python with similarity="cosine"):
    sim_ij = x_i . x_j / (|x_i| |x_j| + shrink + 1e-6)   (normalize=True; else x_i . x_j / shrink
                                                          when shrink > 0, plain dot when 0)
    sim_jj = 0; for each TARGET item j (each column), keep the k largest sim_ij over i.
RP3beta (reference: RP3betaRecommender.fit):
    P_ui = X row-normalised (l1), P_iu = X^T row-normalised, both raised elementwise to alpha,
    W_ij = (P_iu P_ui)_ij / pop_j^beta (pop_j = users of item j; 0 where pop_j = 0), W_ii = 0;
    keep the k largest per ROW (source item i); with normalize, rows rescaled to sum 1 (l1);
    then, as the reference's final similarityMatrixTopK does, the k largest per COLUMN.
Zeros are never kept. Entries are chosen on their float32 values (what W stores), and ties
at the k-th value keep the lower item index: the reference's argsort leaves ties to numpy,
and with binary X exact ties are common (sums of 1/degree), so a fixed rule on the stored
values makes W reproducible whatever order the sums were added in.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Items per dense block: a block costs n_items x BLOCK float64 (17,770 movies: 36 MB).
BLOCK = 256


def top_k_mask(values: np.ndarray, k: int, axis: int = 0) -> np.ndarray:
  """Boolean mask of the k largest nonzero entries along `axis` (ties: lower index first)."""
  values = np.asarray(values)
  n = values.shape[axis]
  if k >= n:
    return values != 0
  kth = -np.partition(-values, k - 1, axis=axis).take([k - 1], axis=axis)  # k-th largest
  above = values > kth
  tied = values == kth
  need = k - above.sum(axis=axis, keepdims=True)
  keep = above | (tied & (np.cumsum(tied, axis=axis) <= need))
  return keep & (values != 0)


def _binary_csc(x: sp.spmatrix) -> sp.csc_matrix:
  x = sp.csc_matrix(x, dtype=np.float64, copy=True)
  x.data[:] = 1.0
  x.eliminate_zeros()
  return x


def item_knn(x: sp.spmatrix, k: int = 100, shrink: float = 10.0, normalize: bool = True,
             block: int = BLOCK) -> sp.csr_matrix:
  """[n_items, n_items] float32 W: column j holds the k items most cosine-similar to j."""
  x = _binary_csc(x)
  xt = x.T.tocsr()
  n = x.shape[1]
  norms = np.sqrt(np.asarray(x.multiply(x).sum(0)).ravel())
  rows, cols, vals = [], [], []
  for lo in range(0, n, block):
    hi = min(lo + block, n)
    sim = (xt @ x[:, lo:hi]).toarray()  # [n_items, block]: dots of every item with the block
    sim[np.arange(lo, hi), np.arange(hi - lo)] = 0.0
    if normalize:
      sim /= norms[:, None] * norms[None, lo:hi] + shrink + 1e-6
    elif shrink != 0:
      sim /= shrink
    sim = sim.astype(np.float32)
    keep = top_k_mask(sim, k, axis=0)
    r, c = np.nonzero(keep)
    rows.append(r)
    cols.append(c + lo)
    vals.append(sim[r, c])
  return _csr(rows, cols, vals, n)


def rp3beta(x: sp.spmatrix, alpha: float = 1.0, beta: float = 0.6, k: int = 100,
            normalize: bool = True, block: int = BLOCK) -> sp.csr_matrix:
  """[n_items, n_items] float32 W of RP3beta: row i = 3-step walk item i -> user -> item j,
  popularity-discounted, top-k per row, l1 row-normalised (normalize), top-k per column."""
  x = _binary_csc(x)
  n = x.shape[1]
  x_csr = x.tocsr()
  user_degree = np.diff(x_csr.indptr).astype(np.float64)
  p_ui = sp.diags(1.0 / np.maximum(user_degree, 1.0)) @ x_csr  # users x items, rows sum to 1
  pop = np.diff(x.indptr).astype(np.float64)
  p_iu = (sp.diags(1.0 / np.maximum(pop, 1.0)) @ x.T.tocsr()).tocsr()  # items x users
  if alpha != 1.0:
    p_ui = p_ui.power(alpha)
    p_iu = p_iu.power(alpha)
  p_ui = sp.csr_matrix(p_ui)
  degree = np.zeros(n)
  degree[pop > 0] = pop[pop > 0] ** -beta
  rows, cols, vals = [], [], []
  for lo in range(0, n, block):
    hi = min(lo + block, n)
    walk = (p_iu[lo:hi] @ p_ui).toarray() * degree[None, :]  # [block, n_items]
    walk[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
    walk = walk.astype(np.float32)
    keep = top_k_mask(walk, k, axis=1)
    r, c = np.nonzero(keep)
    rows.append(r + lo)
    cols.append(c)
    vals.append(walk[r, c])
  w = _csr(rows, cols, vals, n, dtype=np.float64)
  if normalize:
    sums = np.asarray(w.sum(1)).ravel()
    w = (sp.diags(1.0 / np.where(sums > 0, sums, 1.0)) @ w).tocsr()
  return column_top_k(w.astype(np.float32), k)


def column_top_k(w: sp.spmatrix, k: int) -> sp.csr_matrix:
  """w with only the k largest nonzero entries of each column kept (ties: lower row first)."""
  w = sp.csc_matrix(w)
  w.sort_indices()
  keep = np.zeros(w.nnz, bool)
  for j in range(w.shape[1]):
    lo, hi = w.indptr[j], w.indptr[j + 1]
    if hi - lo <= k:
      keep[lo:hi] = True
      continue
    col = w.data[lo:hi]
    order = np.lexsort((w.indices[lo:hi], -col))[:k]  # value desc, then row index asc
    keep[lo + order] = True
  keep &= w.data != 0
  col_of = np.repeat(np.arange(w.shape[1]), np.diff(w.indptr))
  out = sp.csr_matrix((w.data[keep], (w.indices[keep], col_of[keep])), shape=w.shape)
  out.sort_indices()
  return out


def _csr(rows, cols, vals, n: int, dtype=np.float32) -> sp.csr_matrix:
  if not rows:
    return sp.csr_matrix((n, n), dtype=dtype)
  w = sp.csr_matrix((np.concatenate(vals).astype(dtype),
                     (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
  w.sort_indices()
  return w


def score(rows: sp.spmatrix, w: sp.spmatrix) -> np.ndarray:
  """[n_rows, n_items] dense scores of interaction rows against a sparse item-item W."""
  return (sp.csr_matrix(rows) @ w).toarray()

"""A trained graph model (GC-MC, LightGCN) behind the evaluator interface.

Embeddings are computed once per restored model by propagating over the training graph (the
family's setup holds the graph, already on the devices); GC-MC predicts the expected rating
under its decoder's softmax over rating levels, LightGCN only ranks.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from netrec_jax.eval import evaluator
from netrec_jax.models import graph as graph_lib


def valid_k(config) -> int:
  """K of graph.valid_metric (recall@K / ndcg@K), reported beside the evaluator's ks."""
  return int(config.graph.valid_metric.partition("@")[2])


def serving_functions(s: dict[str, Any]) -> dict[str, Any]:
  """Device edges and jitted embed/decode functions, made once per setup (no recompiles)."""
  if "eval_fns" in s:
    return s["eval_fns"]
  model, mesh = s["model"], s["mesh"]
  replicated = NamedSharding(mesh, P())
  edges_sh = graph_lib.edge_sharding(mesh)
  is_gcmc = isinstance(model, graph_lib.GCMC)
  if is_gcmc:
    embed = lambda p, e: model.apply(p, e, method=graph_lib.GCMC.encode)
  else:
    embed = lambda p, e: model.apply(p, e)
  fns = {"edges": s["edges"],
         "embed": jax.jit(embed, in_shardings=(replicated, edges_sh),
                          out_shardings=(replicated, replicated))}
  if is_gcmc:
    levels = jnp.asarray(s["level_values"])
    fns["pair_ratings"] = jax.jit(lambda p, u, v: graph_lib.expected_rating(
        model.apply(p, u, v, method=graph_lib.GCMC.decode), levels))
    fns["all_ratings"] = jax.jit(lambda p, u, v: graph_lib.expected_rating(
        model.apply(p, u, v, method=graph_lib.GCMC.decode_all), levels))
  s["eval_fns"] = fns
  return fns


class GraphRecommender:
  """A graph model behind the evaluator interface (netrec_jax/eval/evaluator.py).

  Embeddings are computed once by propagating over the training graph; GC-MC predicts the
  expected rating under its decoder's softmax over rating levels, LightGCN only ranks (dot
  product of layer-mean embeddings).
  """

  def __init__(self, s: dict[str, Any], config, params, which: str, meta: dict[str, Any]):
    self.s, self.config, self.params, self.which, self.meta = s, config, params, which, meta
    self.store, self.split, self.model = s["store"], s["split"], s["model"]
    self.name = config.model.name
    self.is_gcmc = config.model.name == "gcmc"
    self.global_mean = float(s["global_mean"])
    self.trained = s["trained"]
    self.rating_note = "" if self.is_gcmc else (
        "not applicable: LightGCN is trained for ranking (BPR scores are not ratings)")
    self.cold_rule = ("training mean for a user or item with no training rating (the graph "
                      "gives it no message)" if self.is_gcmc else
                      "a node without training edges keeps its initial ego embedding")
    self.fold_in_method = (
        "not available for GC-MC (a new user needs new edges)" if self.is_gcmc else
        "one propagation step from the given movies: the new user's vector is the sum of their "
        "final item embeddings weighted 1 / sqrt(n_given x item degree), LightGCN's symmetric "
        "normalisation (the new user's own ego embedding is unknown and left out)")
    fns = serving_functions(s)
    users, items = fns["embed"](params, fns["edges"])
    self._users, self._items = np.asarray(users), np.asarray(items)
    self._pair_ratings, self._all_ratings = fns.get("pair_ratings"), fns.get("all_ratings")
    self.batch = max(1, int(config.train.eval_batch_size))
    self.prediction_note = (
        f"expected rating over levels {s['level_values'].tolist()}, clipped to the rating "
        f"range {list(self.store.rating_range)}" if self.is_gcmc
        else "scores (dot products of layer-mean embeddings)")
    self.extra_ks = () if self.is_gcmc else (valid_k(config),)

  # -- evaluator interface
  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    if not self.is_gcmc:
      return None
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    out = np.empty(len(users), np.float64)
    for lo in range(0, len(users), self.batch):
      u, i = users[lo:lo + self.batch], items[lo:lo + self.batch]
      out[lo:lo + len(u)] = np.asarray(self._pair_ratings(self.params, self._users[u],
                                                          self._items[i]))
    return self.trained.fill_pairs(out, users, items, self.global_mean)

  def score_items(self, users: np.ndarray) -> np.ndarray:
    users = np.asarray(users, np.int64)
    if not self.is_gcmc:
      return self._users[users] @ self._items.T
    scores = np.asarray(self._all_ratings(self.params, self._users[users], self._items),
                        np.float64)
    return self.trained.fill_scores(scores, users, self.global_mean)

  def item_vectors(self) -> np.ndarray:
    """Final item embeddings (GC-MC: after the dense layer; LightGCN: the layer mean)."""
    return self._items

  def ranking_vectors(self):
    """LightGCN ranks by the dot product of its layer-mean embeddings (device top-K)."""
    if self.is_gcmc:
      return None  # GC-MC's decoder does not factorise: the host path ranks it
    return self._users, self._items, None

  def user_vectors(self) -> np.ndarray:
    return self._users

  def biases(self) -> dict[str, np.ndarray]:
    raise NotImplementedError(f"{self.name} has no user/item bias terms")

  def fold_in(self, items: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """[n_items] scores for a new user who interacted with `items` (LightGCN; stars unused)."""
    if self.is_gcmc:
      raise NotImplementedError(f"{self.name}: a new user needs new graph edges and a new "
                                "propagation; fold-in is not implemented for GC-MC")
    items, _ = evaluator.check_fold_in_input(items, stars, self.store.n_items)
    degree = np.bincount(np.take(self.store.item, self.split.rows("train")),
                         minlength=self.store.n_items)[items]
    weight = 1.0 / np.sqrt(len(items) * np.maximum(degree, 1))
    user = (weight[:, None] * self._items[items]).sum(0)
    return (self._items @ user).astype(np.float32)

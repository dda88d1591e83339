"""One evaluator for every model: the same split, the same metrics, the same code path.

A model enters the evaluator through the `Recommender` interface:
  predict(users, items) -> ratings in stars, or None for models that do not predict ratings
  predict_rows(rows)    optional: ratings of these store rows, for models that need more of a
                        rating than its pair (timeSVD++: its date); preferred when present
  score_items(users)    -> [len(users), n_items] scores for ranking (higher is better)
Models restored from a checkpoint (netrec_jax/train/families.py, load_recommender) also carry
what using a trained model needs (launch.py's recommend / similar / analyze / serve modes):
  store, split          the data and split it was trained on (training items are excluded)
  item_vectors()        -> [n_items, d] item embeddings, for similar movies by cosine
  user_vectors()        -> [n_users, d] user embeddings (analysis), where the model has them
  biases()              -> {"user": [n_users], "item": [n_items]} where the model has them
  fold_in(items, stars) -> [n_items] scores for a new user who rated a few movies (dense item
                           indices, stars); `fold_in_method` says how (regularised solve with
                           item factors fixed, or an encoder pass)
  fold_in_batch(inputs)  optional: [n, n_items] scores for n new users at once, `inputs` a
                           scipy.sparse CSR [n, n_items] of their fold-in items with stars as
                           values; the strong-generalization evaluation uses it when present,
                           else calls fold_in once per user
A model without one of these raises NotImplementedError naming the model.

Rating metrics are computed on the split's test rows (predictions clipped to the rating range),
overall and separately on warm rows (user and item seen in training); ranking metrics rank the
full catalog for each test user with the user's training items excluded.

Under the strong-generalization protocol (split.protocol == "strong_generalization", Liang et
al. 2018) the test users have no training rows: each is folded in from its fold-in rows
(split part test_fold_in; for validation, valid_fold_in), those items are excluded, the
catalog of items with a training interaction is ranked (Liang keeps only those items), and
the user's targets (test rows, every one relevant) are scored. recall@K there is Liang's
hits / min(K, n_targets) (recall_uncapped@K: hits / n_targets), ndcg@K binary; K = 20, 50
and 100 are always included. Rating metrics do not apply (the targets are interactions) and
are reported as not applicable, never as numbers; so is the sampled protocol.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from absl import logging

from netrec_jax.data import negatives as negatives_lib
from netrec_jax.data.negatives import SAMPLERS, NegativesError, sample_negatives  # noqa: F401
from netrec_jax.data.splits import STRONG_PROTOCOL, Split
from netrec_jax.data.store import RatingStore
from netrec_jax.eval import device_topk
from netrec_jax.eval import metrics as metrics_lib
from netrec_jax.progress import Progress

STRONG_KS = (20, 50, 100)  # strong generalization: Recall@20, Recall@50, NDCG@100 (+ 20, 50)
STRONG_VALID_METRIC = "ndcg@100"
STRONG_RATING_NOTE = ("not applicable under strong generalization: held-out users' targets "
                      "are interactions (ratings >= the split's threshold), not ratings")


class Recommender(Protocol):
  name: str
  rating_note: str  # why predict() is None, when it is

  def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    ...

  def score_items(self, users: np.ndarray) -> np.ndarray:
    ...


def check_fold_in_input(items: np.ndarray, stars: np.ndarray, n_items: int
                        ) -> tuple[np.ndarray, np.ndarray]:
  """A new user's (dense movie indices, stars) as flat arrays, or a ValueError saying why not."""
  items = np.asarray(items, np.int64).reshape(-1)
  stars = np.asarray(stars, np.float64).reshape(-1)
  if len(items) == 0:
    raise ValueError("fold_in needs at least one (movie, stars) pair")
  if len(items) != len(stars):
    raise ValueError(f"fold_in got {len(items)} movies but {len(stars)} ratings")
  if items.min() < 0 or items.max() >= n_items:
    raise ValueError(f"fold_in: dense movie indices must be in [0, {n_items})")
  return items, stars


def predict_rows(model: Recommender, store: RatingStore, rows: np.ndarray) -> np.ndarray | None:
  """The model's ratings of these store rows: model.predict_rows(rows) where it has one (a
  model that predicts at the rating's date), else model.predict of the rows' pairs."""
  if hasattr(model, "predict_rows"):
    return model.predict_rows(rows)
  return model.predict(np.take(store.user, rows), np.take(store.item, rows))


def rating_metrics_on(model: Recommender, store: RatingStore, rows: np.ndarray
                      ) -> dict[str, Any]:
  """Rating metrics (clipped to the rating range) of the model on these store rows."""
  if len(rows) == 0:
    return {"n": 0}
  pred = predict_rows(model, store, rows)
  return metrics_lib.rating_metrics(pred, store.stars(rows).astype(np.float64),
                                    store.rating_range)


@dataclasses.dataclass
class EvalData:
  """What every evaluation on one split needs, computed once and shared by all models."""

  store: RatingStore
  split: Split
  train_rows: np.ndarray
  test_rows: np.ndarray
  train_matrix: sp.csr_matrix  # users x items, stars (for exclusion and popularity)
  relevant: sp.csr_matrix  # users x items, 1 where a test rating is relevant
  item_popularity: np.ndarray  # training ratings per item
  warm: np.ndarray  # per test row: user and item both have training ratings
  relevance_threshold: float
  # Strong generalization only: users x items, stars of the test users' fold-in rows, and
  # the ranked catalog (items with a training interaction).
  fold_in: sp.csr_matrix | None = None
  catalog: np.ndarray | None = None


def is_strong(split: Split) -> bool:
  return split.protocol == STRONG_PROTOCOL


def prepare(store: RatingStore, split: Split, relevance_threshold: float | None = 4.0
            ) -> EvalData:
  """Train matrix, relevant test items and warm/cold flags for `split`.

  relevance_threshold: a test rating at or above it is relevant for ranking; None makes every
  test rating relevant (leave-last-out protocols). Under strong generalization every test row
  is a relevant target (it is an interaction already) and the threshold is not used.
  """
  strong = is_strong(split)
  if strong:
    relevance_threshold = None
  train, test = split.rows("train"), split.rows("test")
  shape = (store.n_users, store.n_items)
  train_users, train_items = np.take(store.user, train), np.take(store.item, train)
  train_matrix = sp.csr_matrix((store.stars(train), (train_users, train_items)), shape=shape)
  test_users, test_items = np.take(store.user, test), np.take(store.item, test)
  stars = store.stars(test)
  keep = np.ones(len(test), bool) if relevance_threshold is None else stars >= relevance_threshold
  relevant = sp.csr_matrix((np.ones(int(keep.sum())), (test_users[keep], test_items[keep])),
                           shape=shape)
  user_seen = np.bincount(train_users, minlength=store.n_users) > 0
  item_popularity = np.bincount(train_items, minlength=store.n_items)
  warm = user_seen[test_users] & (item_popularity[test_items] > 0)
  fold_in = catalog = None
  if strong:
    rows = split.rows("test_fold_in")
    fold_in = sp.csr_matrix((store.stars(rows), (np.take(store.user, rows),
                                                 np.take(store.item, rows))), shape=shape)
    catalog = item_popularity > 0
  return EvalData(store, split, train, test, train_matrix, relevant, item_popularity, warm,
                  relevance_threshold, fold_in, catalog)


def ranking_protocol(split: Split) -> str:
  """Name of the full-catalog ranking protocol on this split (protocols-and-anchors.md)."""
  if is_strong(split):
    return STRONG_PROTOCOL  # full ranking of the training catalog by definition
  return "loo_full" if split.protocol == "loo" else f"{split.protocol}_full_ranking"


def evaluate(model: Recommender, data: EvalData, *, ks: tuple[int, ...] = (5, 10, 20),
             ranking: bool = True, user_batch: int = 256, sampled_negatives: int = 0,
             sampler: str = "uniform", keep_predictions: bool = False,
             rating: bool = True, per_user: bool = False, ranker: str = "auto"
             ) -> dict[str, Any]:
  """Rating and ranking metrics of `model` on data's split, labelled with the protocol.

  sampled_negatives > 0 adds the sampled protocol (NCF's loo_99neg with 99): each relevant
  test item ranked against that many items the user never rated (the split's fixed ones,
  data/negatives.py); sampler="popularity" draws them by training popularity (BERT4Rec's
  loo_pop100 with 100).
  keep_predictions adds the clipped test predictions under "_predictions" (for plots);
  per_user adds each test user's values under "_per_user" (rating: sse, sae, n; ranking: every
  ranking metric), what the comparison's intervals and paired tests resample.
  ranker (eval.ranker): auto | host | device, where the top-K is taken (eval/device_topk.py).
  """
  store = data.store
  result: dict[str, Any] = {"model": model.name, "protocol": data.split.protocol,
                            "split": data.split.name, "store_fingerprint": store.fingerprint}
  if data.fold_in is not None:
    return _evaluate_strong(model, data, result, ks=ks, ranking=ranking,
                            user_batch=user_batch, sampled_negatives=sampled_negatives,
                            rating=rating, per_user=per_user)
  t0 = time.time()
  users = np.take(store.user, data.test_rows)
  pred = predict_rows(model, store, data.test_rows) if rating else None
  truth = store.stars(data.test_rows).astype(np.float64)
  if not rating:
    pass
  elif pred is None:
    result["rating"] = {"applicable": False, "reason": model.rating_note}
  else:
    pred = np.asarray(pred, np.float64)
    result["rating"] = metrics_lib.rating_metrics(pred, truth, store.rating_range)
    if per_user:
      result.setdefault("_per_user", {})["rating"] = metrics_lib.rating_errors_per_user(
          users, pred, truth, store.rating_range)
    if keep_predictions:
      result["_predictions"] = np.clip(pred, *store.rating_range)
    if data.warm.any():
      result["rating_warm"] = metrics_lib.rating_metrics(pred[data.warm], truth[data.warm],
                                                         store.rating_range)
    result["cold"] = {"n_test": int(len(truth)), "n_cold": int((~data.warm).sum()),
                      "fallback": getattr(model, "cold_rule", "model-specific")}
  result["predict_seconds"] = time.time() - t0

  if ranking:
    t0 = time.time()
    k_max = max(ks)
    accumulator = metrics_lib.RankingAccumulator(ks, coverage=True,
                                                 item_popularity=data.item_popularity,
                                                 per_user=per_user)
    test_users = np.flatnonzero(np.diff(data.relevant.indptr) > 0)
    device = device_topk.ranker_for(model, k_max, user_batch, ranker, len(test_users),
                                    store.n_items)
    progress = Progress(f"{model.name} ranking", len(test_users), "users")
    batches = [test_users[lo:lo + user_batch] for lo in range(0, len(test_users), user_batch)]
    if device is not None:  # the next batch ranks on the device while this one is scored
      tops = device.stream((batch, data.train_matrix[batch]) for batch in batches)
    else:
      tops = (metrics_lib.topk_from_scores(np.asarray(model.score_items(batch), np.float64),
                                           data.train_matrix[batch], k_max)
              for batch in batches)
    done = 0
    for batch, topk in zip(batches, tops):
      accumulator.update(topk, data.relevant[batch], users=batch)
      done += len(batch)
      progress(done)
    result["ranking"] = accumulator.result()
    if per_user:
      result.setdefault("_per_user", {})["ranking"] = accumulator.per_user_values()
    result["ranking"]["relevance"] = ("every test rating" if data.relevance_threshold is None
                                      else f"test rating >= {data.relevance_threshold:g}")
    result["ranking"]["protocol"] = ranking_protocol(data.split)
    result["ranking"]["ranker"] = "device (lax.top_k)" if device is not None else "host"
    result["ranking_seconds"] = time.time() - t0
  if sampled_negatives > 0:
    result["sampled"] = sampled_ranking(model, data, sampled_negatives, ks, user_batch,
                                        sampler=sampler)
  return result


def fold_in_scores(model: Recommender, inputs: sp.csr_matrix,
                   progress: Progress | None = None, done: int = 0) -> np.ndarray:
  """[n, n_items] scores of n new users from their fold-in rows (CSR, stars as values):
  model.fold_in_batch(inputs) when the model has it, else model.fold_in per user."""
  batch_fn = getattr(model, "fold_in_batch", None)
  if batch_fn is not None:
    scores = np.asarray(batch_fn(inputs), np.float64)
    if scores.shape != inputs.shape:
      raise ValueError(f"{model.name}.fold_in_batch returned shape {scores.shape}, expected "
                       f"{inputs.shape}")
    return scores
  if not hasattr(model, "fold_in"):
    raise NotImplementedError(f"{model.name} has no fold_in: it cannot score new users")
  scores = np.empty(inputs.shape, np.float64)
  for r in range(inputs.shape[0]):
    lo, hi = inputs.indptr[r], inputs.indptr[r + 1]
    scores[r] = model.fold_in(inputs.indices[lo:hi], inputs.data[lo:hi])
    if progress is not None:
      progress(done + r + 1)
  return scores


def _evaluate_strong(model: Recommender, data: EvalData, result: dict[str, Any], *,
                     ks: tuple[int, ...], ranking: bool, user_batch: int,
                     sampled_negatives: int, rating: bool, per_user: bool) -> dict[str, Any]:
  """evaluate() under strong generalization (see the module docstring)."""
  split = data.split
  if rating:
    result["rating"] = {"applicable": False, "reason": STRONG_RATING_NOTE}
  result["predict_seconds"] = 0.0
  if ranking:
    t0 = time.time()
    threshold = split.params.get("interaction_threshold")
    base = {"protocol": ranking_protocol(split),
            "relevance": "every held-out target" + (
                "" if threshold is None else f" (an interaction: rating >= {threshold:g})"),
            "recall_definition": "recall@K = hits@K / min(K, n_targets) (Liang et al. 2018); "
                                 "recall_uncapped@K = hits@K / n_targets",
            "catalog_items": int(data.catalog.sum())}
    test_users = np.flatnonzero(np.diff(data.relevant.indptr) > 0)
    batched = getattr(model, "fold_in_batch", None) is not None
    base["fold_in"] = ("fold_in_batch" if batched else "fold_in per user") + (
        f": {model.fold_in_method}" if getattr(model, "fold_in_method", "") else "")
    accumulator = metrics_lib.RankingAccumulator(ks, coverage=True,
                                                 item_popularity=data.item_popularity,
                                                 per_user=per_user, recall="min_k")
    progress = None if batched else Progress(f"{model.name}: folding in held-out users",
                                             len(test_users), "users")
    outside = ~data.catalog
    try:
      for lo in range(0, len(test_users), user_batch):
        batch = test_users[lo:lo + user_batch]
        inputs = data.fold_in[batch]
        scores = fold_in_scores(model, inputs, progress, lo)
        exclude = np.zeros(scores.shape, bool)
        exclude[:, outside] = True
        exclude[np.repeat(np.arange(len(batch)), np.diff(inputs.indptr)), inputs.indices] = True
        topk = metrics_lib.topk_from_scores(scores, exclude, max(ks))
        accumulator.update(topk, data.relevant[batch], users=batch)
    except NotImplementedError as e:
      result["ranking"] = {**base, "applicable": False,
                           "reason": f"cannot fold in new users: {e}"}
      logging.warning("%s: strong generalization not evaluated: %s", model.name, e)
      return result
    result["ranking"] = {**accumulator.result(), **base}
    if per_user:
      result.setdefault("_per_user", {})["ranking"] = accumulator.per_user_values()
    result["ranking_seconds"] = time.time() - t0
  if sampled_negatives > 0:
    result["sampled"] = {"skipped": "the sampled protocol does not apply under strong "
                                    "generalization (held-out users have no training rows)"}
  return result


def sampled_ranking(model: Recommender, data: EvalData, n_negatives: int,
                    ks: tuple[int, ...], user_batch: int = 256,
                    sampler: str = "uniform") -> dict[str, Any]:
  """Each relevant test item vs n_negatives never-rated items (ties count against it).

  sampler: uniform over never-rated items, or popularity (proportional to training counts).
  On a leave-last-out split, 99 uniform negatives is protocol loo_99neg and 100 popularity
  negatives loo_pop100 (BERT4Rec). Never-rated excludes every item the user has a row for in
  the split (train, validation, test). The negatives are the split's fixed ones
  (data/negatives.py: drawn once, stored with the split, verified by sha256), so every model
  and every rerun ranks against the same items; the result names their sha256. Sampled
  metrics are far higher than full-ranking ones; report both (RecBole #1785).
  """
  fixed = negatives_lib.fixed_negatives(data.store, data.split, sampler, n_negatives)
  test_users = np.flatnonzero(np.diff(data.relevant.indptr) > 0)
  pos_all, neg_all = [], []
  for lo in range(0, len(test_users), user_batch):
    batch = test_users[lo:lo + user_batch]
    scores = np.asarray(model.score_items(batch), np.float64)
    relevant = data.relevant[batch]
    per_user = np.diff(relevant.indptr)
    pos_all.append(scores[np.repeat(np.arange(len(batch)), per_user), relevant.indices])
    neg_all.append(np.repeat(np.take_along_axis(scores, fixed.of(batch), axis=1), per_user, 0))
  result = metrics_lib.sampled_rank_metrics(np.concatenate(pos_all), np.concatenate(neg_all),
                                            ks)
  loo = data.split.protocol == "loo"
  if sampler == "popularity":
    result["protocol"] = ("loo_pop100" if loo and n_negatives == 100
                          else f"{data.split.protocol}_pop{n_negatives}")
  else:
    result["protocol"] = ("loo_99neg" if loo and n_negatives == 99
                          else f"{data.split.protocol}_{n_negatives}neg")
  result["sampler"] = sampler
  result.update(fixed.describe())
  return result


# ------------------------------------------------------------ the one path to run metrics
RATING_METRICS = ("rmse", "mae")


def part_view(split: Split, part: str) -> Split:
  """`split` with `part`'s rows as its test rows (and its test rows unused), so validation
  runs exactly the code that tests."""
  if part == "test":
    return split
  from netrec_jax.data import splits as splits_lib
  assignment = np.array(split.assignment, np.int8)
  assignment[assignment == splits_lib.TEST] = splits_lib.UNUSED
  assignment[assignment == splits_lib.TEST_FOLD_IN] = splits_lib.UNUSED
  assignment[assignment == splits_lib.PARTS[part]] = splits_lib.TEST
  if part in splits_lib.FOLD_IN_OF:  # strong generalization: the part's users' inputs
    fold_in = splits_lib.PARTS[splits_lib.FOLD_IN_OF[part]]
    assignment[assignment == fold_in] = splits_lib.TEST_FOLD_IN
  return Split(name=f"{split.name}[{part}]", protocol=split.protocol, assignment=assignment,
               params=split.params, info=split.info)


def relevance(eval_cfg: Any) -> float | None:
  """The relevance rule of eval_cfg: a threshold <= 0 makes every held-out rating relevant."""
  t = eval_cfg.relevance_threshold
  return None if t <= 0 else float(t)


def part_data(store: RatingStore, split: Split, part: str, eval_cfg: Any) -> EvalData | None:
  """EvalData of one split part (None when the part is empty)."""
  if len(split.rows(part)) == 0:
    return None
  return prepare(store, part_view(split, part), relevance_threshold=relevance(eval_cfg))


def _flat(result: dict[str, Any]) -> dict[str, Any]:
  """One part's metrics as a flat record: rating metrics, warm rmse, ranking metrics."""
  out: dict[str, Any] = {}
  rating = result.get("rating", {})
  if rating.get("applicable", True):
    out.update(rating)
    if "rating_warm" in result:
      out["rmse_warm"] = result["rating_warm"]["rmse"]
      out["mae_warm"] = result["rating_warm"]["mae"]
  else:
    out["rating"] = rating.get("reason", "not applicable")
  ranking = result.get("ranking")
  if ranking and ranking.get("applicable", True) is False:
    out["ranking"] = ranking["reason"]
    out["ranking_protocol"] = ranking["protocol"]
  elif ranking:
    out.update({k: v for k, v in ranking.items() if k != "protocol"})
    out["ranking_protocol"] = ranking["protocol"]
  if "sampled" in result:
    out["sampled"] = result["sampled"]
  return out


def validation_metrics(model: Recommender, data: EvalData | None, metric: str,
                       eval_cfg: Any) -> dict[str, Any]:
  """The figure that picks the best checkpoint, computed as the final metrics compute it.

  Under strong generalization a rating metric does not apply: the result then holds the
  protocol's ranking figures (recall@20, recall@50, ndcg@100 on the validation users) and not
  `metric`, so a loop that asked for rmse finds no value (and keeps the latest checkpoint as
  best); ask for ndcg@100 (STRONG_VALID_METRIC) there.
  """
  if data is None:
    return {}
  if data.fold_in is not None and metric in RATING_METRICS:
    logging.warning("validation metric %s does not apply under strong generalization; "
                    "reporting recall@K and ndcg@K, K in %s, instead (no value for %s: the "
                    "loop keeps the latest checkpoint as best)", metric, STRONG_KS, metric)
    result = evaluate(model, data, ks=STRONG_KS, ranking=True,
                      user_batch=eval_cfg.user_batch, rating=False)
    return {key: v for key, v in _flat(result).items()
            if key.partition("@")[0] in ("recall", "ndcg") and "@" in key}
  if metric in RATING_METRICS:
    pred = predict_rows(model, data.store, data.test_rows)
    if pred is None:
      raise ValueError(f"{model.name} does not predict ratings: validation metric {metric} "
                       "does not apply")
    out = metrics_lib.rating_metrics(pred, data.store.stars(data.test_rows),
                                     data.store.rating_range)
    return {k: out[k] for k in (*RATING_METRICS, "n")}
  k = int(metric.partition("@")[2])
  result = evaluate(model, data, ks=(k,), ranking=True, user_batch=eval_cfg.user_batch,
                    ranker=eval_cfg.ranker,
                    rating=False)
  return {key: v for key, v in _flat(result).items() if key.endswith(f"@{k}") or key == "mrr"}


def wants_ranking(model: Recommender, store: RatingStore, eval_cfg: Any) -> bool:
  """eval.ranking: always | never | auto (ranking models always; rating models when the
  full score matrix has at most 1e9 cells, so the default stays quick at Netflix scale)."""
  mode = eval_cfg.ranking
  if mode not in ("auto", "always", "never"):
    raise ValueError(f"eval.ranking must be auto, always or never, got {mode!r}")
  if mode != "auto":
    return mode == "always"
  rates = getattr(model, "rating_note", "") == ""
  return not rates or store.n_users * store.n_items <= 1e9


def ranks(model: Recommender, store: RatingStore, split: Split, eval_cfg: Any) -> bool:
  """Whether a run or a comparison row ranks: wants_ranking, and strong generalization ranks
  only the held-out users (by folding them in), so always unless eval.ranking=never (it
  always includes its own cut-offs 20, 50 and 100)."""
  return wants_ranking(model, store, eval_cfg) or (is_strong(split)
                                                   and eval_cfg.ranking == "auto")


def evaluate_run(model: Recommender, eval_cfg: Any | None = None,
                 parts: tuple[str, ...] = ("valid", "test")) -> dict[str, Any]:
  """final_metrics.json of a trained (or restored) model: validation and test metrics,
  labelled with data, split, protocol and checkpoint. Every family's run comes through here.
  """
  store, split = model.store, model.split
  eval_cfg = eval_cfg or model.config.eval
  meta = getattr(model, "meta", {}) or {}
  result = {"model": model.name, "protocol": split.protocol, "split": split.name,
            "store": store.name, "store_fingerprint": store.fingerprint,
            "checkpoint": getattr(model, "which", None),
            "checkpoint_epoch": meta.get("epoch"), "checkpoint_step": meta.get("step"),
            "predictions": getattr(model, "prediction_note", ""),
            "cold_rule": getattr(model, "cold_rule", "model-specific"),
            **getattr(model, "facts", {})}
  strong = is_strong(split)
  ranking = ranks(model, store, split, eval_cfg)
  ks = tuple(sorted(set(eval_cfg.ks) | set(getattr(model, "extra_ks", ()))
                    | (set(STRONG_KS) if strong else set())))
  for part in parts:
    data = part_data(store, split, part, eval_cfg)
    if data is None:
      result[part] = {"n": 0}
      continue
    sampled = eval_cfg.sampled_negatives if part == "test" else 0
    try:
      out = evaluate(model, data, ks=ks, ranking=ranking, user_batch=eval_cfg.user_batch,
                     ranker=eval_cfg.ranker, sampled_negatives=sampled,
                     sampler=eval_cfg.negative_sampler)
    except NegativesError as e:  # a toy catalog too small for the sampled protocol
      out = evaluate(model, data, ks=ks, ranking=ranking, user_batch=eval_cfg.user_batch,
                     ranker=eval_cfg.ranker)
      out["sampled"] = {"skipped": str(e)}
    result[part] = _flat(out)
  return result

"""The base experiment config: every field an experiment can set, each with its meaning.

Experiments in experiments/ start from `base_config()` and change a few fields; any field can be
overridden on the command line, e.g. `--config.data.min_user_ratings=50`.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "base"  # experiment name, used in reports

  # --- Data: where ratings come from and how they are filtered.
  config.data = ml_collections.ConfigDict()
  # One of synthetic, netflix, ml100k, ml1m, ml_latest, parquet.
  config.data.source = "synthetic"
  # Dataset folder or file for real data; relative paths resolve under $NETREC_DATA_DIR
  # (default ../shared/data beside the project).
  config.data.path = ""
  config.data.store_root = "stores"  # cache folder for built stores
  config.data.store_dir = ""  # explicit store folder (overrides the cache path)
  config.data.min_user_ratings = 25  # drop users with fewer ratings (source documents: 25)
  config.data.min_item_ratings = 0  # then drop items with fewer ratings
  config.data.strict = False  # bad input lines are fatal instead of counted and skipped
  # Netflix: drop ratings dated before their movie's release year (the Prize data has some:
  # re-releases, festivals, wrong years). Off: they are kept and counted in the data summary.
  config.data.drop_before_release = False
  # Synthetic generator (data.source == "synthetic"); see netrec_jax/data/synthetic.py.
  config.data.synthetic = ml_collections.ConfigDict(dict(
      n_users=6_000, n_items=1_500, n_ratings=500_000, rank=8, seed=0))

  # --- Split: how ratings divide into train / validation / test.
  config.split = ml_collections.ConfigDict()
  # time | random | loo | item_cold | ml100k_fold | netflix_probe | none
  # (item_cold: all ratings of a random test_fraction of the movies are test)
  config.split.kind = "time"
  config.split.cutoff = "2005-01-01"  # time: train before, test on or after
  config.split.valid_fraction = 0.05  # time: latest slice of train; random: share of train
  config.split.test_fraction = 0.1  # random (of ratings); item_cold (of movies)
  config.split.seed = 0  # random
  config.split.fold = "u1"  # ml100k_fold: u1..u5, ua, ub
  config.split.loo_n_valid = 1  # loo: ratings before the held-out last one kept for validation

  # --- Model (netrec_jax/models): mf | gmf | mlp | neumf | hybrid (pair models), autorec |
  # deep_ae (row models), gcmc | lightgcn, bert4rec, youtube_dnn, content; see
  # netrec_jax/train/families.py for which trainer runs each.
  config.task = "explicit"  # explicit: MSE on ratings; implicit: BCE with sampled negatives
  config.seed = 0  # parameter init, dropout, negative sampling and batch order
  config.model = ml_collections.ConfigDict()
  config.model.name = "mf"
  config.model.embed_dim = 64  # mf / hybrid embedding width
  config.model.use_bias = True  # mf: user and item biases
  config.model.gmf_dim = 32  # gmf / neumf: GMF embedding width (predictive factors)
  config.model.mlp_layers = (64, 32, 16, 8)  # mlp / neumf: tower; embeddings are [0] // 2 wide
  config.model.hidden = (128, 64, 32)  # hybrid: MLP widths
  config.model.dropout = 0.0  # dropout in towers
  config.model.batch_norm = True  # hybrid: batch norm in the tower
  config.model.use_features = False  # add train-split activity features as MLP inputs
  config.model.init_std = 0.05  # normal init of embedding tables (biases start at 0)
  config.model.compute_dtype = "float32"  # or bfloat16 (params and updates stay float32)
  # Row models (netrec_jax/train/rows.py): autorec | deep_ae as model.name.
  config.model.autorec_side = "item"  # item: I-AutoRec (rows are items); user: U-AutoRec
  config.model.autorec_hidden = 500  # AutoRec's hidden units (sigmoid encoder)
  config.model.ae_hidden = (512, 256, 64)  # deep AE encoder; the decoder mirrors it
  config.model.ae_activation = "relu"  # deep AE: relu | selu | sigmoid
  config.model.ae_input_dropout = 0.0  # deep AE: denoising dropout on observed inputs
  config.model.ae_refeed = False  # deep AE: dense re-feeding (Kuchaiev & Ginsburg 2017)
  config.model.weight_l2 = 1e-4  # row models: L2 on weights (added to the gradient)
  config.model.row_batch = 256  # rows per batch for row models (at most)
  # ... and at most this many padded (row x width) cells per batch: memory ~ cells x hidden.
  config.model.row_batch_entries = 1 << 19

  # Each family below keeps its own fields in its own section (netrec_jax/train/families.py).
  # --- Graph models: gcmc | lightgcn as model.name (netrec_jax/train/graph.py).
  config.graph = ml_collections.ConfigDict()
  config.graph.layers = 3  # lightgcn: propagation layers K (final = mean of layers 0..K)
  config.graph.embed_dim = 64  # lightgcn: ego embedding width
  config.graph.init_std = 0.1  # lightgcn: normal init of the ego embeddings
  config.graph.l2 = 1e-4  # lightgcn: L2 on the batch's ego embeddings (per pair, as the paper)
  config.graph.bpr_negatives = 1  # lightgcn: sampled unseen items per positive (seeded)
  config.graph.valid_metric = "recall@20"  # lightgcn: best checkpoint by recall@K or ndcg@K
  config.graph.gcmc_hidden = 500  # gcmc: graph-convolution units (split over levels if stack)
  config.graph.gcmc_dense = 75  # gcmc: dense layer units (the decoder's embedding width)
  config.graph.gcmc_accumulation = "stack"  # gcmc: stack (concat per level) | sum
  config.graph.gcmc_ordinal_sharing = True  # gcmc: level r's weight = sum of blocks 1..r
  config.graph.gcmc_dense_activation = "identity"  # gcmc: identity (paper code) | relu
  # gcmc: symmetric 1/sqrt(deg_u deg_i) | left 1/deg of the receiving node (paper's ML-100K)
  config.graph.gcmc_norm = "symmetric"
  config.graph.num_basis = 2  # gcmc: basis matrices shared by the bilinear decoder's levels
  config.graph.dropout = 0.7  # gcmc: node dropout on the convolution, dropout before dense
  config.graph.ema_decay = 0.995  # gcmc: evaluate a moving average of params (0 = off)
  config.graph.full_batch = True  # one step over all training edges per epoch (gcmc)
  config.graph.batch_size = 2048  # pairs per step when not full_batch (lightgcn BPR batch)
  config.graph.eval_every = 1  # epochs between validation, checkpoints and metrics lines
  config.graph.edge_chunk = 0  # edges per scan chunk in propagation (0 = all; bounds memory)
  # --- Sequence model: bert4rec as model.name (netrec_jax/train/sequence.py).
  config.sequence = ml_collections.ConfigDict()
  config.sequence.max_len = 200  # items per input sequence, [MASK] included (paper, ML-1M: 200)
  config.sequence.mask_prob = 0.2  # cloze: share of a sequence's items masked (paper, ML-1M: 0.2)
  config.sequence.last_mask_prob = 0.1  # share of training samples masking only the last item
  config.sequence.hidden = 64  # transformer width = item embedding width (paper: 64)
  config.sequence.layers = 2  # transformer blocks (paper: 2)
  config.sequence.heads = 2  # attention heads (paper: 2)
  config.sequence.dropout = 0.1  # dropout on embeddings, attention and blocks (paper: 0.1)
  config.sequence.attention_dtype = "auto"  # float32 | bfloat16 | auto (bfloat16 on GPU/TPU)
  config.sequence.batch_users = 64  # sequences per training step (rounded up to the data axis)
  config.sequence.eval_batch_users = 256  # users scored per full-catalog scoring call
  config.sequence.lr = 1e-3  # AdamW peak learning rate
  config.sequence.weight_decay = 0.01  # AdamW decoupled weight decay (paper: L2 0.01)
  config.sequence.clip_norm = 5.0  # global-norm gradient clipping (0 = off)
  config.sequence.epochs = 100  # passes over all users (each pass draws fresh masks)
  config.sequence.eval_every = 5  # epochs between validation NDCG@10 checks (and checkpoints)
  # --- YouTube-style candidate model: youtube_dnn as model.name (netrec_jax/train/youtube.py).
  config.youtube = ml_collections.ConfigDict()
  config.youtube.embed_dim = 32  # width of the history (input) item embeddings
  config.youtube.tower = (128, 64)  # ReLU layers after [history mean, side features]
  config.youtube.out_dim = 32  # user vector / softmax item vector width (then a linear layer)
  config.youtube.dropout = 0.1  # after each ReLU layer
  # History mean weights: uniform | rating (stars) | centered (stars - the user's mean).
  config.youtube.history_weighting = "uniform"
  config.youtube.max_history = 128  # training: a random window of this many history items
  config.youtube.eval_max_history = 1024  # serving: the user's most recent this many items
  config.youtube.use_demographics = True  # age/gender/occupation where the store keeps them
  config.youtube.use_activity = True  # train-split rating count and mean (target left out)
  config.youtube.num_sampled = 256  # popularity-sampled negatives per step (shared by batch)
  config.youtube.sampler_power = 1.0  # sampler q_i ~ training count_i ** power
  config.youtube.log_q_correction = True  # subtract log(expected count) from sampled logits
  config.youtube.remove_accidental_hits = False  # drop sampled negatives equal to the target
  config.youtube.softmax_weight = 1.0  # weight of the sampled-softmax loss
  config.youtube.rating_weight = 1.0  # weight of the rating head's MSE
  config.youtube.batch_size = 1024  # (user, target item) examples per step
  config.youtube.final_ranking = True  # final metrics also rank the full catalog (test)
  # --- Content-based filtering: content as model.name (netrec_jax/train/content.py).
  config.content = ml_collections.ConfigDict()
  config.content.mode = "content"  # content: TF-IDF only | hybrid: + a CF model (warm items)
  config.content.title_weight = 1.0  # weight of the title TF-IDF block
  config.content.year_weight = 0.5  # weight of the year/decade block
  config.content.genre_weight = 1.0  # weight of the genre block (MovieLens)
  config.content.tag_weight = 1.0  # weight of the tag block (when the store has tags)
  config.content.min_df = 1  # drop terms in fewer movies than this (TfidfVectorizer min_df)
  config.content.profile_weighting = "centered"  # centered: stars - user mean | rating: stars
  config.content.user_mean_shrinkage = 5.0  # user mean shrunk to the global mean by k ratings
  config.content.cf_run = ""  # hybrid: workdir of a trained CF run to restore
  config.content.cf_model = "mf"  # hybrid without cf_run: trained into WORKDIR/cf
  config.content.hybrid_shrinkage = 5.0  # CF weight n_i / (n_i + this); 0 items -> content

  # --- Optimizers: row-sparse for embedding tables, optax for the rest.
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.sparse = "adagrad"  # sgd | adagrad (row-wise) | lazy_adam
  config.optimizer.sparse_lr = 0.05  # per-example step size of table rows
  config.optimizer.embed_l2 = 0.1  # L2 on touched table rows (per occurrence)
  config.optimizer.dense = "adam"  # adam | adamw | sgd, for tower and output params
  config.optimizer.lr = 1e-3
  config.optimizer.momentum = 0.0  # sgd
  config.optimizer.weight_decay = 1e-4  # adamw
  config.optimizer.clip_norm = 0.0  # global-norm clipping of dense grads (0 = off)
  config.optimizer.schedule = "constant"  # constant | warmup_cosine (both learning rates)
  config.optimizer.warmup_steps = 100
  config.optimizer.final_lr_fraction = 0.0  # warmup_cosine: end lr as a fraction of peak
  config.optimizer.plateau_patience = 0  # epochs without improvement before lr *= factor
  config.optimizer.plateau_factor = 0.5

  # --- Training loop.
  config.train = ml_collections.ConfigDict()
  config.train.epochs = 10
  config.train.batch_size = 8192
  config.train.eval_batch_size = 65536
  config.train.input_pipeline = "host"  # host (memmap gather + prefetch) | device (scan)
  config.train.prefetch = 2  # host batches kept ready ahead of the step
  config.train.num_negatives = 4  # implicit: sampled negatives per positive
  config.train.early_stopping_patience = 3  # epochs without validation improvement (0 = off)
  config.train.min_delta = 1e-4  # smallest improvement that counts
  config.train.resume = True  # continue from WORKDIR/checkpoints/latest if present
  config.train.check_every_steps = 100  # host mode: NaN check interval
  config.train.log_every_s = 10.0  # progress line interval within an epoch

  # --- Devices: a (data, model) mesh. data = -1 uses all devices not used by model.
  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = -1
  config.mesh.model = 1  # > 1 row-shards embedding tables over this many devices

  # --- Comparison (launch.py --mode=compare; netrec_jax/eval/compare.py).
  config.compare = ml_collections.ConfigDict()
  # Comma-separated: JAX models (mf, gmf, mlp, neumf, hybrid) and baselines (surprise_svd,
  # surprise_svd_tuned, surprise_svdpp, surprise_baseline, surprise_knn, implicit_als,
  # implicit_bpr, jax_als).
  config.compare.models = "mf,surprise_svd,surprise_baseline,implicit_als"
  config.compare.ks = (5, 10, 20)  # cut-offs of the ranking metrics
  config.compare.relevance_threshold = 4.0  # test ratings >= this are relevant (0: all)
  config.compare.user_batch = 128  # users scored per full-catalog ranking batch
  # With split.kind = ml100k_fold: comma-separated folds to run and average (u1,...,u5 is the
  # ml100k_5fold protocol); empty = only split.fold.
  config.compare.folds = ""
  # > 0 adds the sampled protocol: each relevant test item vs this many never-rated items
  # (99 on a leave-last-out split is NCF's loo_99neg).
  config.compare.sampled_negatives = 0
  # How those negatives are drawn: uniform | popularity (proportional to training counts;
  # 100 popularity negatives on a leave-last-out split is BERT4Rec's loo_pop100).
  config.compare.negative_sampler = "uniform"
  # train mode: afterwards compare the trained model with compare.models' other entries on the
  # same split, into WORKDIR/comparison.
  config.compare.after_train = False
  # Per-model settings on top of this config, e.g.
  # "hybrid:model.use_features=true,model.dropout=0.2;neumf:model.dropout=0.1".
  config.compare.model_overrides = ""

  # --- Analysis.
  config.eda = True  # write EDA plots and summary.md into WORKDIR/eda
  config.eda_top_k = 20  # movies listed in the summary
  return config


def from_checkpoint(saved: dict) -> ml_collections.ConfigDict:
  """A config saved with a checkpoint, on top of today's defaults.

  Fields added to netrec_jax after the checkpoint was written take their defaults (which
  reproduce the old behaviour), so old runs stay restorable as the config grows.
  """
  config = base_config()
  with config.unlocked():
    config.update(saved)
  return config

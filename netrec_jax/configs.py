"""The base experiment config: every field an experiment can set, each with its meaning.

Experiments in experiments/ start from `base_config()` and change a few fields; any field can be
overridden on the command line, e.g. `--config.data.min_user_ratings=50`.
"""

from __future__ import annotations

from typing import Any

import ml_collections


def _typed(field_type: type) -> ml_collections.FieldReference:
  """A field that starts unset (None: the chosen model's default) but keeps its type, so
  --config.FIELD=VALUE still parses VALUE as that type."""
  return ml_collections.FieldReference(None, field_type=field_type)


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "base"  # experiment name, used in reports
  # What launch.py does with this experiment when --mode is not given: train | compare | ...
  config.mode = "train"

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
  # drift_item_std / drift_user_std > 0 plant a time drift of the item / user biases (stars
  # from the date range's middle to its ends / stars per year); 0 (default): none, and the
  # store is the one built before the option existed (same cache key and fingerprint).
  config.data.synthetic = ml_collections.ConfigDict(dict(
      n_users=6_000, n_items=1_500, n_ratings=500_000, rank=8, seed=0, drift_item_std=0.0,
      drift_user_std=0.0))

  # --- Split: how ratings divide into train / validation / test.
  config.split = ml_collections.ConfigDict()
  # time | random | loo | item_cold | strong | ml100k_fold | netflix_probe | none
  # (item_cold: all ratings of a random test_fraction of the movies are test; strong: Liang
  # et al. 2018's strong generalization, protocol strong_generalization: held-out users fold
  # in part of their interactions and are ranked on the rest, see netrec_jax/data/splits.py)
  config.split.kind = "time"
  config.split.cutoff = "2005-01-01"  # time: train before, test on or after
  config.split.valid_fraction = 0.05  # time: latest slice of train; random: share of train
  config.split.test_fraction = 0.1  # random (of ratings); item_cold (of movies)
  config.split.seed = 0  # random
  config.split.fold = "u1"  # ml100k_fold: u1..u5, ua, ub
  config.split.loo_n_valid = 1  # loo: ratings before the held-out last one kept for validation
  # strong: validation users and test users, each: a count (>= 1) or a share of the users
  # kept by the filters (< 1; 0.1 is 604 each on ML-1M; Liang: 10000 on ML-20M, 40000 Netflix)
  config.split.heldout_users = 0.1
  config.split.interaction_threshold = 4.0  # strong: ratings >= this are interactions (rest unused)
  config.split.min_user_interactions = 5  # strong: users with fewer interactions unused (0 = off)
  config.split.min_item_interactions = 0  # strong: applied first, to items (Liang: 0 = off)
  # strong: iterate both minimums to a fixed point (the k-core) instead of Liang's one pass
  config.split.kcore = False
  # strong: share of each held-out user's interactions scored (floor, as Liang's int(0.2 n));
  # the others are the fold-in input
  config.split.target_fraction = 0.2
  # Validation rows count as training (split NAME_refit, test unchanged): the refit runs of
  # compare.refit train on it; nothing is validated, so no early stopping or best epoch.
  config.split.merge_valid = False

  # --- Model (netrec_jax/models). model.name picks the family (netrec_jax/train/family.py):
  # mf | gmf | mlp | neumf | hybrid (pair), autorec | deep_ae (autoencoder), gcmc | lightgcn
  # (graph), bert4rec (sequence), youtube_dnn (youtube), content (content), ease | item_knn |
  # rp3beta (closed_form), svdpp (svdpp), timesvdpp (timesvdpp), glocal_k (glocal_k). Each
  # family reads only its own section below; a changed field that the chosen family does not
  # read is an error naming it.
  config.task = "explicit"  # pair models: explicit (MSE on ratings) | implicit (BCE, negatives)
  config.seed = 0  # parameter init, dropout, negative sampling and batch order
  config.model = ml_collections.ConfigDict()
  config.model.name = "mf"
  # Pair models (netrec_jax/train/pair.py): (user, item) -> rating or logit.
  config.model.embed_dim = 64  # mf / hybrid embedding width
  config.model.use_bias = True  # mf: user and item biases
  config.model.gmf_dim = 32  # gmf / neumf: GMF embedding width (predictive factors)
  config.model.mlp_layers = (64, 32, 16, 8)  # mlp / neumf: tower; embeddings are [0] // 2 wide
  config.model.hidden = (128, 64, 32)  # hybrid: MLP widths
  config.model.dropout = 0.0  # dropout in towers
  config.model.batch_norm = True  # hybrid: batch norm in the tower
  config.model.use_features = False  # add train-split activity features as MLP inputs
  config.model.init_std = 0.05  # normal init of embedding tables (pair models, youtube_dnn)
  config.model.compute_dtype = "float32"  # or bfloat16 (params and updates stay float32)

  # --- Autoencoders: autorec | deep_ae (netrec_jax/train/autoencoder.py). A batch is a set
  # of whole rating rows (train.batch_size rows at most).
  config.autoencoder = ml_collections.ConfigDict()
  config.autoencoder.side = "item"  # item: I-AutoRec (rows are items); user: U-AutoRec
  config.autoencoder.autorec_hidden = 500  # AutoRec's hidden units (sigmoid encoder)
  config.autoencoder.layers = (512, 256, 64)  # deep AE encoder; the decoder mirrors it
  config.autoencoder.activation = "relu"  # deep AE: relu | selu | sigmoid
  config.autoencoder.dropout = 0.0  # deep AE: dropout on the code
  config.autoencoder.input_dropout = 0.0  # deep AE: denoising dropout on observed inputs
  config.autoencoder.refeed = False  # deep AE: dense re-feeding (Kuchaiev & Ginsburg 2017)
  # At most this many padded (row x width) cells per batch: memory ~ cells x hidden.
  config.autoencoder.batch_entries = 1 << 19

  # --- GLocal-K: glocal_k (netrec_jax/train/glocal_k.py, Han et al. 2021). Full-batch L-BFGS
  # on the dense items x users training matrix: an epoch is one L-BFGS run (fresh memory, as
  # the reference's one scipy minimize call per epoch) of pretrain_iters / finetune_iters
  # iterations; epochs 0 .. pretrain_epochs - 1 pre-train the local kernel AE, the rest of
  # train.epochs fine-tune with the global kernel. Defaults: the paper's ML-100K settings.
  config.glocal_k = ml_collections.ConfigDict()
  config.glocal_k.hidden = 500  # n_hid: units of each sigmoid kernel layer
  config.glocal_k.layers = 2  # n_layers: sigmoid kernel layers before the identity output
  config.glocal_k.kernel_dim = 5  # n_dim: width of the local kernel's u and v vectors
  config.glocal_k.lambda_2 = 20.0  # L2 on the weights W (ML-1M: 70)
  config.glocal_k.lambda_s = 0.006  # L2 on the local kernels K(u, v): sparsity (ML-1M: 0.018)
  config.glocal_k.pretrain_epochs = 30  # epoch_p (ML-1M: 20); train.epochs = this + epoch_f
  config.glocal_k.pretrain_iters = 5  # iter_p: L-BFGS iterations per pre-training epoch (ML-1M: 50)
  config.glocal_k.finetune_iters = 5  # iter_f: per fine-tuning epoch (ML-1M: 10)
  config.glocal_k.gk_size = 3  # side of the global convolution kernel
  config.glocal_k.dot_scale = 1.0  # scale of the pooled-vector x kernels product (ML-1M: 0.5)
  config.glocal_k.lbfgs_memory = 10  # L-BFGS history (scipy's maxcor in the reference)

  # --- Mult-VAE / Mult-DAE: mult_vae | mult_dae (netrec_jax/train/multvae.py, Liang 2018).
  config.vae = ml_collections.ConfigDict()
  config.vae.hidden = (600,)  # encoder widths before the code; the decoder mirrors them
  config.vae.latent = 200  # width of the code
  config.vae.dropout = 0.5  # input dropout on the L2-normalised row
  config.vae.beta_cap = 0.2  # mult_vae: the KL weight is annealed linearly up to this
  config.vae.anneal_epochs = 20  # epochs over which beta rises linearly to the cap (0: at once)

  # --- SVD++: svdpp (netrec_jax/train/svdpp.py, Koren 2008). Its lambda is optimizer.l2 (per
  # rating on every term, Surprise's reg_all) and its row learning rate optimizer.lr.
  config.svdpp = ml_collections.ConfigDict()
  config.svdpp.embed_dim = 20  # factors of p, q and y (Surprise's n_factors default: 20)
  config.svdpp.init_std = 0.1  # normal init of p, q and y; biases start at 0 (as Surprise)
  config.svdpp.optimizer = "sgd"  # update of the touched rows: sgd | adagrad | lazy_adam

  # --- timeSVD++: timesvdpp (netrec_jax/train/timesvdpp.py, Koren 2009), svdpp.* plus these
  # time terms at each rating's date (each can be switched off), each with its own lambda.
  config.timesvdpp = ml_collections.ConfigDict()
  config.timesvdpp.n_bins = 30  # item-bias time bins over the training days (Koren: 30)
  config.timesvdpp.beta = 0.4  # dev_u(t) = sign(t - t_u) |t - t_u|^beta, t in days (Koren: 0.4)
  config.timesvdpp.item_bins = True  # b_{i,Bin(t)}
  config.timesvdpp.user_alpha = True  # alpha_u dev_u(t): the user bias drift
  config.timesvdpp.user_day = True  # b_{u,t}: one bias per (user, day) seen in training
  config.timesvdpp.factor_drift = True  # alpha^p_u dev_u(t) added to p_u (one alpha per factor)
  config.timesvdpp.bin_l2 = 5.0  # lambda of b_{i,bin} (per rating; a bin holds few ratings)
  config.timesvdpp.alpha_l2 = 200.0  # lambda of alpha_u (dev is in days^beta, up to ~20: strong)
  config.timesvdpp.day_l2 = 0.005  # lambda of b_{u,t}
  config.timesvdpp.drift_l2 = 100.0  # lambda of alpha^p_u (as alpha_u)

  # --- Graph models: gcmc | lightgcn (netrec_jax/train/graph.py).
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
  config.graph.full_batch = True  # gcmc: one step over all training edges per epoch
  config.graph.edge_chunk = 0  # edges per scan chunk in propagation (0 = all; bounds memory)

  # --- Sequence model: bert4rec (netrec_jax/train/sequence.py); train.batch_size = users.
  config.sequence = ml_collections.ConfigDict()
  config.sequence.max_len = 200  # items per input sequence, [MASK] included (paper, ML-1M: 200)
  config.sequence.mask_prob = 0.2  # cloze: share of a sequence's items masked (paper, ML-1M: 0.2)
  config.sequence.last_mask_prob = 0.1  # share of training samples masking only the last item
  config.sequence.hidden = 64  # transformer width = item embedding width (paper: 64)
  config.sequence.layers = 2  # transformer blocks (paper: 2)
  config.sequence.heads = 2  # attention heads (paper: 2)
  config.sequence.dropout = 0.1  # dropout on embeddings, attention and blocks (paper: 0.1)
  config.sequence.attention_dtype = "auto"  # float32 | bfloat16 | auto (bfloat16 on GPU/TPU)

  # --- YouTube-style candidate model: youtube_dnn (netrec_jax/train/youtube.py).
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

  # --- Content-based filtering: content (netrec_jax/train/content.py); nothing is trained.
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
  # hybrid without cf_run: a model (its defaults) or an experiment name (its settings),
  # trained into WORKDIR/cf on this config's data and split
  config.content.cf_model = "mf"
  config.content.hybrid_shrinkage = 5.0  # CF weight n_i / (n_i + this); 0 items -> content

  # --- Closed-form top-N models: ease | item_knn | rp3beta (netrec_jax/train/closed_form.py);
  # nothing is trained by gradient descent. Each reads X, the users x items binary matrix of
  # training ratings with stars >= its min_stars (0: every training rating is an interaction),
  # and predicts no ratings (ranking metrics only).
  config.ease = ml_collections.ConfigDict()
  config.ease.l2 = 500.0  # lambda of (X^T X + lambda I)^-1 (Steck: ML-20M 500, Netflix 1000)
  config.ease.min_stars = 0.0  # training ratings >= this are interactions (0: all)
  config.ease.dtype = "float32"  # float32 | float64 (the dense solve; float64 via enable_x64)
  # Refuse catalogs above this many items before allocating (5 n^2 floats at the peak:
  # 17,770 movies = 6.3 GB float32); free device/host memory is checked as well.
  config.ease.max_items = 40_000
  config.knn = ml_collections.ConfigDict()  # item_knn: cosine with shrinkage, top-k
  config.knn.k = 100  # neighbours kept per target item (Dacrema et al.'s fit default: 50)
  config.knn.shrink = 10.0  # sim = dot / (|a||b| + shrink) (Dacrema et al.'s fit default: 100)
  config.knn.normalize = True  # divide by |a||b| (cosine); False: dot / shrink
  config.knn.min_stars = 0.0  # training ratings >= this are interactions (0: all)
  config.rp3 = ml_collections.ConfigDict()  # rp3beta (Paudel et al. 2017)
  config.rp3.alpha = 1.0  # exponent on the transition probabilities
  config.rp3.beta = 0.6  # divide by item popularity ** beta
  config.rp3.k = 100  # neighbours kept per item (row, then column, as the reference code)
  config.rp3.normalize = True  # l1-normalise each item's row after the top-k
  config.rp3.min_stars = 0.0  # training ratings >= this are interactions (0: all)
  config.ials = ml_collections.ConfigDict()  # ials: implicit-feedback ALS in JAX (train/ials.py)
  config.ials.factors = 64  # latent factors (implicit_als's comparison setting)
  config.ials.iterations = 15  # alternating sweeps (users, then items)
  config.ials.regularization = 0.05  # L2 on each factor row (times the nu-scaling below)
  config.ials.alpha = 2.0  # observed pairs' confidence: alpha * r (linear) | 1 + alpha * r (hu)
  config.ials.confidence = "linear"  # linear: implicit 0.7's | hu: Hu et al.'s
  config.ials.unobserved_weight = 1.0  # w0, weight of every unobserved pair (Rendle et al. 2021)
  config.ials.reg_exponent = 0.0  # nu: regularization * (n_row + w0 * n_other) ** nu (2021; 0: Hu)
  config.ials.cg_steps = 3  # conjugate-gradient steps per solve, warm-started (0: exact solves)
  config.ials.min_stars = 0.0  # training ratings >= this are interactions (0: all)

  # Fields set to None below take the chosen model's own default (each family module's
  # DEFAULTS), so every model trains with settings that suit it unless a field is set.

  # --- Optimizers: row-sparse for pair models' embedding tables, optax for the rest.
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.sparse = "adagrad"  # pair: sgd | adagrad (row-wise) | lazy_adam
  config.optimizer.sparse_lr = 0.05  # pair: per-example step size of table rows
  config.optimizer.embed_l2 = 0.1  # pair: L2 on touched table rows (per occurrence)
  config.optimizer.dense = _typed(str)  # adam | adamw | sgd, for the Flax params
  config.optimizer.lr = _typed(float)  # peak lr of the dense optimizer (svdpp: of its rows)
  config.optimizer.momentum = 0.0  # sgd
  config.optimizer.weight_decay = _typed(float)  # adamw: decoupled decay (on decay_mask's)
  config.optimizer.l2 = _typed(float)  # L2 added to the gradient (AutoRec's; svdpp's lambda)
  config.optimizer.clip_norm = _typed(float)  # global-norm clipping of dense grads (0 = off)
  config.optimizer.schedule = "constant"  # constant | warmup_cosine (every learning rate)
  config.optimizer.warmup_steps = 100
  config.optimizer.final_lr_fraction = 0.0  # warmup_cosine: end lr as a fraction of peak
  config.optimizer.plateau_patience = 0  # validations without improvement before lr *= factor
  config.optimizer.plateau_factor = 0.5
  # adamw's decay on: matrices (ndim >= 2) | all (biases too; youtube_dnn's default)
  config.optimizer.decay_mask = _typed(str)

  # --- Training loop (netrec_jax/train/loop.py), the same for every family.
  config.train = ml_collections.ConfigDict()
  config.train.epochs = _typed(int)
  # Examples per step: ratings (pair, youtube_dnn), rows (autoencoders), users (bert4rec),
  # training pairs (lightgcn; gcmc with graph.full_batch=False).
  config.train.batch_size = _typed(int)
  config.train.eval_every = _typed(int)  # epochs between validations and checkpoints
  config.train.eval_batch_size = 65536  # pairs per prediction call
  config.train.input_pipeline = "host"  # pair: host (memmap gather + prefetch) | device (scan)
  config.train.prefetch = 2  # host batches kept ready ahead of the step
  config.train.num_negatives = 4  # pair, implicit: sampled negatives per positive
  config.train.early_stopping_patience = _typed(int)  # validations without improvement (0=off)
  config.train.min_delta = 1e-4  # smallest improvement that counts
  config.train.resume = True  # continue from WORKDIR/checkpoints/latest if present
  config.train.check_every_steps = 100  # NaN check window (steps)
  config.train.log_every_s = 10.0  # progress line interval within an epoch
  # TensorBoard event files of the per-epoch records in WORKDIR/tensorboard (tensorboardX, no
  # TensorFlow), beside metrics.jsonl: `tensorboard --logdir WORKDIR/tensorboard`.
  config.train.tensorboard = True

  # --- Devices: a (data, model) mesh. data = -1 uses all devices not used by model.
  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = -1
  config.mesh.model = 1  # > 1 row-shards embedding tables over this many devices
  # JAX CPU devices the host is split into, set by launch.py before the backend starts: 0
  # leaves JAX's default (one device, or XLA_FLAGS' count), -1 one per core this process may
  # use, N > 0 N. One XLA:CPU device runs a program on one core, so sharded programs (our
  # ALS deals its rows to every device; data-parallel training over mesh.data) need several
  # to use several cores. Accelerators are unaffected.
  config.mesh.cpu_devices = 0

  # --- Evaluation (netrec_jax/eval/evaluator.py): every final_metrics.json and comparison.
  config.eval = ml_collections.ConfigDict()
  # Cut-offs of the ranking metrics; with split.kind=strong 20, 50 and 100 are always added.
  config.eval.ks = (5, 10, 20)
  config.eval.relevance_threshold = _typed(float)  # held-out ratings >= this are relevant (0: all)
  config.eval.user_batch = 128  # users scored per full-catalog ranking batch
  # > 0 adds the sampled protocol: each relevant test item vs this many never-rated items
  # (99 on a leave-last-out split is NCF's loo_99neg).
  config.eval.sampled_negatives = _typed(int)
  # How those negatives are drawn: uniform | popularity (proportional to training counts;
  # 100 popularity negatives on a leave-last-out split is BERT4Rec's loo_pop100).
  config.eval.negative_sampler = _typed(str)
  # Full-catalog ranking in final metrics: auto (ranking models always, rating models when
  # the store has at most 1M users) | always | never.
  config.eval.ranking = "auto"
  # Where the top-K is taken: auto (on the device for dot-product models when users x items >
  # 1e8: Netflix scale; eval/device_topk.py) | host (numpy) | device.
  config.eval.ranker = "auto"

  # --- Comparison (launch.py --mode=compare; netrec_jax/compare.py).
  config.compare = ml_collections.ConfigDict()
  # Comma-separated entries: a model name (trained with that model's defaults), an experiment
  # name (experiments/NAME.py: that experiment's tuned settings on this comparison's data and
  # split) or a baseline (surprise_svd, surprise_svd_tuned, surprise_svdpp,
  # surprise_baseline, surprise_knn, implicit_als, implicit_bpr, jax_als, jax_ials).
  # ENTRY@LABEL names a variant whose fields compare.model_overrides sets.
  config.compare.models = "mf,surprise_svd,surprise_baseline,implicit_als"
  # With split.kind = ml100k_fold: comma-separated folds to run and average (u1,...,u5 is the
  # ml100k_5fold protocol); empty = only split.fold.
  config.compare.folds = ""
  # Comma-separated seeds (config.seed of each run, e.g. "0,1,2"): the comparison runs once per
  # seed (and fold) and reports mean and spread per model in comparison_seeds.{md,csv,json};
  # empty = config.seed alone.
  config.compare.seeds = ""
  # Predictions or rankings from other tools, scored into the same table: "NAME=PATH;..."
  # (CSV or Parquet with columns user, item (original ids) and rating and/or score).
  config.compare.external = ""
  # A row "blend": ridge regression on every rating model's predictions and log supports,
  # fitted on the validation rows only, evaluated on test; weights in blend_weights.json.
  config.compare.blend = False
  # The Prize recipe, after the comparison above: every rating model refitted on train +
  # validation rows (ours for the epochs validation chose, early stopping off; baselines
  # fitted once more), rows "NAME (refit)", and "blend (refit)": the validation-fitted
  # weights applied to the refitted models (log supports from train + validation).
  config.compare.refit = False
  # A model of the table (e.g. "surprise_svd") every other is also tested against (paired
  # sign-flip test, Holm over the table), beside the test against each metric's best.
  config.compare.baseline = ""
  # train mode: afterwards compare the trained model with compare.models' other entries on the
  # same split, into WORKDIR/comparison.
  config.compare.after_train = False
  # Per-variant settings, e.g. "mf@big:model.embed_dim=256;neumf:model.dropout=0.1".
  config.compare.model_overrides = ""

  # --- Tuning (launch.py --mode=tune; netrec_jax/tune.py): every entry of compare.models gets
  # the same budget on the validation rows, then the comparison runs once on test.
  config.tune = ml_collections.ConfigDict()
  config.tune.trials = 20  # trials per entry (an entry with nothing to tune is fitted once)
  # TPE's random start (trials before the model-based proposals); also the median pruner's
  # trials before it prunes (a trial stops early when its validation figure is below the
  # median of earlier trials at the same epoch; JAX families only, baselines fit in one go).
  config.tune.startup_trials = 5
  config.tune.prune = True
  config.tune.prune_warmup_epochs = 3  # no trial is pruned before this many epochs

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


def is_experiment(name: str) -> bool:
  """Whether experiments/NAME.py exists (beside the netrec_jax package)."""
  from pathlib import Path
  return (Path(__file__).resolve().parent.parent / "experiments" / f"{name}.py").is_file()


def load_experiment(name: str) -> ml_collections.ConfigDict:
  """experiments/NAME.py's get_config(), as --experiment=NAME loads it."""
  import importlib.util
  from pathlib import Path
  root = Path(__file__).resolve().parent.parent
  path = root / "experiments" / f"{name}.py"
  if not path.is_file():
    raise ValueError(f"unknown experiment {name!r} (no {path})")
  import sys
  if str(root) not in sys.path:  # experiments import each other as `experiments.X`
    sys.path.insert(0, str(root))
  spec = importlib.util.spec_from_file_location(f"experiments.{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# ------------------------------------------------------------------------ fields by name
def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """{"train.epochs": 10, ...}: every leaf field of a config (or its dict) by dotted name."""
  items = tree.items() if hasattr(tree, "items") else ()
  out: dict[str, Any] = {}
  for key, value in items:
    name = f"{prefix}{key}"
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      out.update(flatten(value, name + "."))
    else:
      out[name] = tuple(value) if isinstance(value, list) else value
  return out


def changed_fields(config: ml_collections.ConfigDict) -> list[str]:
  """Dotted names of the fields whose value differs from base_config()'s."""
  base = flatten(base_config())
  return sorted(name for name, value in flatten(config).items()
                if name not in base or base[name] != value)


def _parse(text: str, current: Any, field_type: type | None) -> Any:
  kind = field_type or type(current)
  wrong = lambda what: ValueError(f"{text!r} is not {what}")
  if kind is bool:
    if text.lower() not in ("1", "true", "yes", "0", "false", "no"):
      raise wrong("a boolean (true or false)")
    return text.lower() in ("1", "true", "yes")
  try:
    if kind is int:
      number = float(text)
      if not number.is_integer():
        raise ValueError
      return int(number)
    if kind is float:
      return float(text)
    if kind in (tuple, list):
      return tuple(int(v) for v in text.split("x"))  # e.g. 128x64x32
  except ValueError:
    raise wrong({int: "an integer", float: "a number"}.get(
        kind, "a tuple of integers such as 128x64x32")) from None
  return text


def set_field(config: ml_collections.ConfigDict, dotted: str, value: Any,
              what: str = "") -> None:
  """config.<dotted> = value; a string is parsed as the field's type (flags, sweeps,
  comparison variants and tests all set fields through here). An unknown field or an
  unreadable value is a ValueError naming it (and `what`, e.g. the sweep axis)."""
  prefix = f"{what}: " if what else f"config field {dotted!r}: "
  *parents, leaf = dotted.split(".")
  node = config
  for part in parents:
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise ValueError(f"{what + ': ' if what else ''}unknown config field {dotted!r}")
    node = node[part]
  if leaf not in node:
    raise ValueError(f"{what + ': ' if what else ''}unknown config field {dotted!r}")
  if isinstance(value, str):
    try:
      value = _parse(value.strip(), node[leaf], node.get_type(leaf))
    except ValueError as e:
      raise ValueError(f"{prefix}{e}") from None
  with config.unlocked():
    node[leaf] = value


def fill_defaults(config: ml_collections.ConfigDict, defaults: dict[str, Any]) -> None:
  """Sets each field of `defaults` that the config leaves unset (None) to its default."""
  for dotted, value in defaults.items():
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
      node = node[part]
    if node[leaf] is None:
      with config.unlocked():
        node[leaf] = value

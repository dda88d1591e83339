"""I-AutoRec (Sedhain et al. 2015) on MovieLens 100K, random 90/10 (random_90_10_seed0).

  python launch.py --experiment=autorec_ml100k --workdir=runs/autorec_ml100k
  python launch.py --experiment=autorec_ml100k --workdir=runs/uautorec \\
      --config.autoencoder.side=user          # U-AutoRec
  python launch.py --experiment=autorec_ml100k --mode=eval --restore_from=runs/autorec_ml100k \\
      --workdir=runs/autorec_ml100k_eval       # restore the best checkpoint, evaluate

500 sigmoid hidden units, identity output, loss over observed entries only, L2 on weights.
Validation (10% of train) picks the best epoch. compare_autorec_ml100k puts I-AutoRec,
U-AutoRec, MF and Surprise SVD side by side on this split.
"""

from experiments import ml100k


def get_config():
  config = ml100k.get_config()
  config.name = "autorec_ml100k"
  config.split.kind = "random"
  config.split.test_fraction = 0.1
  config.split.valid_fraction = 0.1
  config.model.name = "autorec"
  config.autoencoder.side = "item"
  config.autoencoder.autorec_hidden = 500
  # Chosen on validation RMSE over weight_l2 {0, 1e-4, 3e-4, 1e-3, 1e-2, 1e-1} x lr {3e-4,
  # 1e-3, 3e-3} (BUILD_NOTES.md). L2 enters the gradient before Adam, so its scale is not the
  # paper's lambda.
  config.optimizer.l2 = 3e-4
  config.train.batch_size = 64
  config.optimizer.lr = 3e-4
  config.train.epochs = 40
  config.train.early_stopping_patience = 5
  config.eda = False
  return config

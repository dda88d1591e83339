"""Trained models behind the evaluator's interface (netrec_jax/eval/evaluator.py).

One module per family: what a trained or restored model needs to predict ratings
(`predict`), score the catalog (`score_items`), fold in a new user (`fold_in`) and expose its
vectors to the use modes (recommend, similar, analyze, serve). The families in
netrec_jax/train build these objects; nothing here imports netrec_jax.train, so serving code
never depends on training code.
"""

"""Baselines behind the common evaluator. Surprise and implicit are imported lazily, so GPU
machines without them can still train and evaluate the JAX models."""

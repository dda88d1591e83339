"""Evaluation: rating and top-K ranking metrics in numpy, independent of user batching."""

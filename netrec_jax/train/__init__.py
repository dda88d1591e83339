"""Training engine: sharded jit steps, input pipelines, row-sparse optimizers, checkpoints."""

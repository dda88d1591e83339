"""netrec_jax: JAX recommenders at Netflix Prize scale, evaluated honestly."""

__version__ = "0.1.0"

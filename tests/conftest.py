"""Test setup: 4 fake CPU devices (before jax is imported anywhere), shared data location."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from netrec_jax.data import datasets  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> Path:
  """The real datasets folder ($NETREC_DATA_DIR or ../shared/data); skips if absent."""
  path = datasets.data_dir()
  if not path.is_dir():
    pytest.skip(f"real datasets not found at {path} (set NETREC_DATA_DIR)")
  return path

"""Imports run one way: data -> models -> eval -> recommenders -> train -> orchestration -> use.

Read from the source with ast (function-level imports count too), so a new upward import or
a cycle between modules fails here before it confuses a reader.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "netrec_jax"
# Lower layers first; a module may import its own layer's modules and those below it.
LAYERS = (
    ("sharding", "progress", "config_checks", "configs"),
    ("data",),
    ("models", "baselines", "analysis"),
    ("eval",),
    ("recommenders",),
    ("train",),
    ("compare", "tune", "pipeline"),
    ("use",),
    ("serve",),
)
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _module(path: Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
  """netrec_jax modules `path` imports (`from netrec_jax import x` counts as netrec_jax.x)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("netrec_jax"):
      if node.module == "netrec_jax":
        found.update(f"netrec_jax.{a.name}" for a in node.names)
      else:
        found.add(node.module)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith("netrec_jax."))
  return found


GRAPH = {_module(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
  return module.split(".")[1] if "." in module else module


def test_every_top_level_part_has_a_layer():
  assert {_layer(m) for m in GRAPH if m != "netrec_jax"} <= set(RANK)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m != "netrec_jax"))
def test_no_import_runs_up_a_layer(module):
  upward = sorted(t for t in GRAPH[module] if RANK[_layer(t)] > RANK[_layer(module)])
  assert not upward, f"{module} imports {upward}, above its layer {_layer(module)!r}"


def test_no_import_cycle_between_modules():
  known = {m: {t for t in targets if t in GRAPH and t != m} for m, targets in GRAPH.items()}
  state: dict[str, int] = {}  # 1 on the current path, 2 done

  def visit(module, path):
    state[module] = 1
    for target in sorted(known[module]):
      if state.get(target) == 1:
        cycle = path[path.index(target):] + [target]
        pytest.fail("import cycle: " + " -> ".join(cycle))
      if target not in state:
        visit(target, path + [target])
    state[module] = 2

  for module in sorted(known):
    if module not in state:
      visit(module, [module])

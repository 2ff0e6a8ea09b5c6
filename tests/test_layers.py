"""The layers of pti-lab: data flows one way, and no module imports a layer above its own.

image -> inverter -> pivot -> tuner -> tuned generator -> editor -> metrics -> tracking; the driver
runs them, the pipeline builds them from the config; scripts (training, benchmarks) sit on top.
"""

import ast

import pytest

from tests.conftest import REPO

LAYERS = [  # lowest first; a module may import its own layer and those below
    {"errors", "atomic", "runtime", "precision", "safe_pickle", "imaging", "weights", "steps", "progress", "config",
     "extras", "run_record"},
    {"models"},
    {"batching"},
    {"synthfaces"},
    {"generators", "data", "align"},
    {"inversion", "tuning", "editing"},
    {"metrics"},
    {"tracking"},
    {"stages"},
    {"driver"},
    {"pipeline", "launch"},
    {"train", "bench", "report", "paper", "finished_run", "export", "studio", "animate"},
]


def layer_of(module: str) -> int:
    """Layer of a dotted pti_lab module name (its first component below pti_lab)."""
    top = module.split(".")[1] if module.count(".") else ""
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module}: not in any layer of tests/test_layers.py; add it")


def imports_of(path) -> set[str]:
    """pti_lab modules imported anywhere in a file (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("pti_lab.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pti_lab"):
            found |= {f"{node.module}.{alias.name}" if node.module == "pti_lab" else node.module
                      for alias in node.names}
    return found


MODULES = sorted(p for p in (REPO / "pti_lab").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_module_imports_a_layer_above_its_own(path):
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if module == "pti_lab.__init__":
        return
    own = layer_of(module)
    above = sorted(name for name in imports_of(path) if layer_of(name) > own)
    assert not above, f"{module} (layer {own}) imports {above}"

"""A base install (`pip install -e .`, no extras) runs: the optional packages are imported only by the
features that need them, and those features fail with one line naming the extra to install.

The subprocesses below get a `sitecustomize` that makes the extras' packages look uninstalled: their
distribution metadata is hidden (libraries such as torchmetrics import an optional package when its
metadata says it is installed) and, for the runs, their modules cannot be imported.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pti_lab.errors import MissingExtraError
from pti_lab.extras import EXTRAS, require
from tests.conftest import REPO

# PyPI distributions of the extras (setup.cfg), hidden from importlib.metadata; torchmetrics is the dev
# extra's reference for the image metrics, which a run computes without it (its import cost 2.5-4 s).
EXTRA_DISTRIBUTIONS = ("dlib", "dlib-bin", "face-recognition-models", "scikit-learn", "transformers", "torchmetrics")
# Modules a base install lacks: every module of EXTRAS, face_recognition_models (found, never imported)
# and torchmetrics.
EXTRA_MODULES = (*EXTRAS, "face_recognition_models", "torchmetrics")

SITECUSTOMIZE = '''
import importlib.metadata
import re
import sys

HIDDEN = {hidden!r}
for name in {modules!r}:
    sys.modules[name] = None  # import raises ModuleNotFoundError; importlib.util.find_spec gives None

original_from_name = importlib.metadata.Distribution.from_name.__func__


def from_name(cls, name):
    if re.sub(r"[-_.]+", "-", name).lower() in HIDDEN:
        raise importlib.metadata.PackageNotFoundError(name)
    return original_from_name(cls, name)


importlib.metadata.Distribution.from_name = classmethod(from_name)
'''


def base_install_env(folder: Path, block_modules: bool) -> dict:
    """Environment for a subprocess that sees no extras (modules importable unless `block_modules`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(
        hidden=EXTRA_DISTRIBUTIONS, modules=EXTRA_MODULES if block_modules else ()))
    # One thread: the runs are tiny, and the machine may be shared with other tests.
    return {**os.environ, "PYTHONPATH": str(folder), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def run_base(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python run.py` with tiny settings in a base install."""
    args = ["debug=smoke", f"hydra.run.dir={tmp_path / 'run'}", *overrides]
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=base_install_env(tmp_path / "site", block_modules=True))


def test_importing_the_pipeline_imports_no_extra(tmp_path):
    script = ("import sys, pti_lab.data, pti_lab.pipeline; "
              "print(sorted({m.partition('.')[0] for m in sys.modules} & set(sys.argv[1:])))")
    result = subprocess.run([sys.executable, "-c", script, *EXTRA_MODULES], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env=base_install_env(tmp_path, block_modules=False))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_run_py_runs_without_extras(tmp_path):
    result = run_base(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    assert (run_dir / "results.jsonl").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["images"] == 1 and not summary["failed"]


def test_a_feature_without_its_extra_fails_with_one_line(tmp_path):
    result = run_base(tmp_path, "identity=dlib")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    naming = [line for line in result.stderr.splitlines() if "pti-lab[faces]" in line]
    assert naming == ['error: identity=dlib needs dlib: pip install "pti-lab[faces]"'], result.stderr[-3000:]


def test_require_names_the_package_and_the_extra(monkeypatch):
    for name in ("sklearn", "sklearn.svm"):  # as if scikit-learn were not installed, even if imported before
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtraError) as caught:
        require("sklearn.svm", "pti_lab.train.fit_boundaries")
    assert str(caught.value) == 'pti_lab.train.fit_boundaries needs scikit-learn: pip install "pti-lab[editing]"'

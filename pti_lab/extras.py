"""Optional dependencies: imported only by the feature that needs them, so a base install runs.

    dlib = require("dlib", "identity=dlib")  # the module, or MissingExtraError:
    # identity=dlib needs dlib: pip install "pti-lab[faces]"
"""

import importlib
from types import ModuleType

from pti_lab.errors import MissingExtraError

# Top-level module -> (its name on PyPI, the pti-lab extra that installs it), as in setup.cfg.
EXTRAS = {
    "dlib": ("dlib", "faces"),
    "sklearn": ("scikit-learn", "editing"),
    "transformers": ("transformers", "editing"),
    "gradio": ("gradio", "studio"),
    "imageio": ("imageio", "studio"),
    "imageio_ffmpeg": ("imageio-ffmpeg", "studio"),
}


def require(module: str, feature: str) -> ModuleType:
    """Import `module` (a key of EXTRAS or one of its submodules) for `feature`, e.g. "identity=dlib".

    Raises MissingExtraError, one line naming the package and the extra, when it cannot be imported.
    """
    top = module.partition(".")[0]
    package, extra = EXTRAS[top]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # An installed package that fails inside (a broken dependency) is named with its own error.
        cause = "" if (exc.name or "").partition(".")[0] == top else f" ({exc})"
        raise MissingExtraError(f'{feature} needs {package}{cause}: pip install "pti-lab[{extra}]"') from exc

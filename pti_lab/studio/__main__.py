"""python -m pti_lab.studio RUN_DIR_OR_SWEEP_DIR: the editing studio on a local web page.

    python -m pti_lab.studio outputs/x                          # then open http://127.0.0.1:7860
    python -m pti_lab.studio outputs/x --direction age.pt --components 10 --pca ffhq_pca.pt
    python -m pti_lab.studio outputs/x --generator ffhq.pkl     # the base generator moved since the run

Needs the studio extra: pip install -e '.[studio]'.
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

from pti_lab.config import resolve_device
from pti_lab.errors import PTILabError
from pti_lab.runtime import keep_freed_memory


def open_page(path: Path, directions: tuple = (), components: int = 5, pca: Optional[str] = None,
              pca_samples: int = 100_000, generator: Optional[str] = None, device: str = "cpu"):
    """The studio page of a run, or, when the run cannot be opened, a page that says why (and the terminal too)."""
    from pti_lab.studio.page import build_page
    from pti_lab.studio.session import Studio

    studio, problem = None, None
    try:
        studio = Studio(path, directions, components, pca, pca_samples, generator, str(resolve_device(device)))
    except PTILabError as exc:
        problem = str(exc)
        print(f"error: {problem} (the page says so too)", file=sys.stderr)
    return build_page(studio, problem, title=f"pti-lab studio: {path}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.studio", description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="a run directory or a sweep directory")
    parser.add_argument("--direction", action="append", default=[], help="a direction file (.pt/.npy), repeatable")
    parser.add_argument("--components", type=int, default=5, help="GANSpace sliders: the first K components")
    parser.add_argument("--pca", default=None, help="an official GANSpace PCA file (default: fitted, cached)")
    parser.add_argument("--pca-samples", type=int, default=100_000, help="mapped samples of the fitted PCA")
    parser.add_argument("--generator", default=None, help="the base generator, when not where the run found it")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (a GPU renders large generators live)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        from pti_lab.studio.page import launch
        page = open_page(args.path, tuple(args.direction), args.components, args.pca, args.pca_samples, args.generator,
                         args.device)
        launch(page, args.host, args.port, args.open)
    except PTILabError as exc:  # the studio extra is missing
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

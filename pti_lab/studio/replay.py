"""Replay an edit on an image of a finished run from the command line: what a studio recipe's `replay` runs.

    python -m pti_lab.studio.replay RUN/images/NAME editor=mix 'editor.directions=["smile"]' \
        'editor.strengths=[2.0]' --out DIR
    python -m pti_lab.studio.replay RUN/images/NAME editor=interfacegan editor.direction=age 'editor.strengths=[3]' --out DIR

Any editor the run's configuration offers (editor=... overrides, as for run.py). The editor is prepared
on the base generator and applied to the image's pivot, as in a run; each edit is rendered with the
tuned generator (edit.png) and the original one (original.png), noise const, and its latent written
(latent.pt); with several edits the files are numbered (edit_0.png, ...).
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch

from pti_lab.errors import PTILabError
from pti_lab.finished_run import compose_editor, open_image_dir
from pti_lab.runtime import keep_freed_memory
from pti_lab.atomic import save_torch
from pti_lab.tracking.store import save_png, to_uint8


def replay(image_dir: Path, overrides: list[str], out: Path, generator: Optional[str] = None) -> list[Path]:
    image = open_image_dir(image_dir, generator)
    editor = compose_editor(overrides, image.run_dir)
    editor.prepare(image.base)
    with torch.no_grad():
        edits = editor.edits(image.tuned, image.pivot).edits
        written = []
        for k, edit in enumerate(edits):
            suffix = "" if len(edits) == 1 else f"_{k}"
            save_png(to_uint8(image.render(edit.ws).clamp(-1, 1))[0], out / f"edit{suffix}.png")
            save_png(to_uint8(image.render(edit.ws, original=True).clamp(-1, 1))[0], out / f"original{suffix}.png")
            written.append(save_torch(edit.ws.cpu(), out / f"latent{suffix}.pt"))
    return written


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.studio.replay", description=__doc__.split("\n")[0])
    parser.add_argument("image_dir", type=Path, help="RUN_DIR/images/NAME of a finished run")
    parser.add_argument("overrides", nargs="+", help="editor=... overrides, as for run.py")
    parser.add_argument("--out", required=True, type=Path, help="folder for edit.png, original.png, latent.pt")
    parser.add_argument("--generator", default=None, help="the run's base generator, when not where the run found it")
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        written = replay(args.image_dir, args.overrides, args.out, args.generator)
    except PTILabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} edit(s) of {args.image_dir.name} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

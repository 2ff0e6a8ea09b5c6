"""Edit animations of a finished run: an MP4 or GIF of an edit's strength swept from -s to +s, or of the
way from one tuned image to another in a multi-ID run; the tuned generator (left) beside the original
one (right), each frame captioned.

    python -m pti_lab.animate RUN/images/NAME editor=interfacegan editor.direction=smile 'editor.strengths=[3]'
    python -m pti_lab.animate RUN/images/NAME editor=mix 'editor.directions=["smile","age"]' \
        'editor.strengths=[2.0,1.0]' --out smile_age.gif
    python -m pti_lab.animate RUN --between ood_000 ood_001          # a multi-ID run: one tuned generator

The sweep moves along the edit's latent offset: ws = pivot + lambda (edit - pivot), lambda from -1 to 1,
which is the strength from -s to +s for the linear editors (InterfaceGAN, GANSpace relative,
StyleCLIP, mix); with several edits, the one of the largest |strength|. Frames are written with
imageio (MP4: H.264 through the ffmpeg binary of imageio-ffmpeg; GIF: Pillow); the default file is
RUN/animations/<image>-<edit>.mp4.
"""

import argparse
import re
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

from pti_lab.errors import BadInputError, PTILabError
from pti_lab.extras import require
from pti_lab.finished_run import FinishedRun, TunedImage, compose_editor, open_image_dir
from pti_lab.runtime import keep_freed_memory
from pti_lab.tracking.store import to_uint8

ANIMATIONS_DIR = "animations"
PANEL = 256        # each generator's picture is scaled (nearest neighbour) to PANEL x PANEL
CAPTION = 32       # pixels of caption under the pictures (frame sizes stay multiples of 16 for H.264)


def frame(tuned: torch.Tensor, original: torch.Tensor, caption: str) -> np.ndarray:
    """uint8 [PANEL + CAPTION, 2 PANEL, 3]: the two [1, C, R, R] images side by side, captioned."""
    pictures = []
    for image in (tuned, original):
        pixels = to_uint8(image.clamp(-1, 1))[0]  # [R, R, C]; grey images keep one channel
        pictures.append(Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).convert("RGB")
                        .resize((PANEL, PANEL), Image.NEAREST))
    canvas = Image.new("RGB", (2 * PANEL, PANEL + CAPTION), "white")
    for k, picture in enumerate(pictures):
        canvas.paste(picture, (k * PANEL, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((8, PANEL + 10), f"tuned   {caption}", fill="black")
    draw.text((PANEL + 8, PANEL + 10), "original", fill="black")
    return np.asarray(canvas)


def sweep_frames(image: TunedImage, edit_ws: torch.Tensor, name: str, strength: float, count: int) -> list[np.ndarray]:
    """Frames of pivot + lambda (edit_ws - pivot), lambda from -1 to 1, captioned `name` and lambda * strength."""
    offset = edit_ws - image.pivot
    frames = []
    with torch.no_grad():
        for lam in np.linspace(-1.0, 1.0, count):
            ws = image.pivot + float(lam) * offset
            frames.append(frame(image.render(ws), image.render(ws, original=True),
                                f"{name} {lam * strength:+.2f}"))
    return frames


def between_frames(run: FinishedRun, run_dir: Path, first: str, second: str, count: int) -> list[np.ndarray]:
    if not (run_dir / "tuned_G.pt").is_file():
        raise BadInputError(f"{run_dir}: --between needs a multi-ID run (mode=multi: one generator tuned for every "
                            f"image); this run tuned one generator per image")
    a, b = run.open(run_dir, first), run.open(run_dir, second)
    frames = []
    with torch.no_grad():
        for alpha in np.linspace(0.0, 1.0, count):
            ws = torch.lerp(a.pivot, b.pivot, float(alpha))
            frames.append(frame(a.render(ws), a.render(ws, original=True), f"{first} -> {second} {alpha:.2f}"))
    return frames


def write_video(frames: list[np.ndarray], out: Path, fps: float) -> Path:
    iio = require("imageio.v3", "python -m pti_lab.animate")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")  # written whole, then renamed
    if out.suffix.lower() == ".gif":
        iio.imwrite(tmp, frames, duration=1000 / fps, loop=0)
    elif out.suffix.lower() == ".mp4":
        require("imageio_ffmpeg", "MP4 animations")
        iio.imwrite(tmp, frames, fps=fps, codec="libx264", macro_block_size=16)
    else:
        raise BadInputError(f"--out {out}: an animation is a .mp4 or a .gif")
    tmp.replace(out)
    return out


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9+_.-]+", "_", text)[:60]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.animate", description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="RUN_DIR/images/NAME (an edit), or RUN_DIR with --between")
    parser.add_argument("overrides", nargs="*", help="editor=... overrides, as for run.py")
    parser.add_argument("--between", nargs=2, metavar=("A", "B"), help="interpolate between two images of a multi-ID run")
    parser.add_argument("--out", type=Path, default=None, help="the .mp4 or .gif to write")
    parser.add_argument("--frames", type=int, default=41)
    parser.add_argument("--fps", type=float, default=15)
    parser.add_argument("--generator", default=None, help="the run's base generator, when not where the run found it")
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        if args.frames < 2:
            raise BadInputError(f"--frames {args.frames}: an animation needs at least 2 frames")
        if args.between:
            run = FinishedRun(args.path, args.generator)
            run_dir = run.run_dirs[0]
            frames = between_frames(run, run_dir, *args.between, args.frames)
            out = args.out or run_dir / ANIMATIONS_DIR / f"{slug(args.between[0])}-to-{slug(args.between[1])}.mp4"
        else:
            if not args.overrides:
                raise BadInputError("give an editor, e.g. editor=interfacegan editor.direction=smile 'editor.strengths=[3]'")
            image = open_image_dir(args.path, args.generator)
            editor = compose_editor(args.overrides, image.run_dir)
            editor.prepare(image.base)
            edits = editor.edits(image.tuned, image.pivot).edits
            edit = max(edits, key=lambda e: abs(e.strength))
            frames = sweep_frames(image, edit.ws, edit.name, abs(edit.strength) or 1.0, args.frames)
            out = args.out or image.run_dir / ANIMATIONS_DIR / f"{image.name}-{slug(edit.name)}.mp4"
        write_video(frames, out, args.fps)
    except PTILabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {len(frames)} frames, {frames[0].shape[1]}x{frames[0].shape[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

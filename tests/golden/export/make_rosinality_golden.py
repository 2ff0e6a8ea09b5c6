"""Make rosinality_base.pt: what rosinality/stylegan2-pytorch's own Generator makes of a `--format rosinality` file.

This script is ours; it imports a local checkout of rosinality/stylegan2-pytorch given with
--rosinality, which is never copied into this repository. Its `op` package compiles CUDA
extensions at import; on a CPU every op takes its pure-PyTorch path, so the compilation is
skipped (torch.utils.cpp_extension.load replaced by a stub while importing). It

  1. exports tests/test_export.py's rosinality_base_generator() with pti_lab's save_rosinality;
  2. builds rosinality's Generator(size=8, style_dim=32, n_mlp=2), loads the file's g_ema with
     load_state_dict(strict=True), and records its images of the golden ws
     (input_is_latent=True, randomize_noise=False: the stored noise buffers) and of seeded z;
  3. prints how far pti-lab's generator is from those.

Command used (torch 2.13.0+cpu, from the repository root, with a checkout of
github.com/rosinality/stylegan2-pytorch in /tmp/rosinality):

    OMP_NUM_THREADS=1 .venv/bin/python tests/golden/export/make_rosinality_golden.py --rosinality /tmp/rosinality

It printed:

    rosinality load_state_dict(strict=True): ok; 33 tensors
    rosinality W+ images vs pti-lab's: max |difference| 3.6e-06
    rosinality z images vs pti-lab's: max |difference| 3.6e-06
"""

import argparse
import io
import sys
import tempfile
from pathlib import Path

import torch
import torch.utils.cpp_extension

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, for tests.test_export

from pti_lab.models.checkpoint_writers import save_rosinality  # noqa: E402
from tests.test_export import rosinality_base_generator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rosinality", required=True, type=Path, help="checkout of rosinality/stylegan2-pytorch")
    args = parser.parse_args()
    sys.path.insert(0, str(args.rosinality))
    compile_extension = torch.utils.cpp_extension.load
    torch.utils.cpp_extension.load = lambda *a, **k: None  # CPU paths only
    try:
        from model import Generator as RosinalityGenerator
    finally:
        torch.utils.cpp_extension.load = compile_extension

    ours = rosinality_base_generator()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = torch.load(save_rosinality(ours, Path(tmp) / "g.pt"), weights_only=True)
    G = RosinalityGenerator(size=8, style_dim=32, n_mlp=2).eval()
    G.load_state_dict(ckpt["g_ema"], strict=True)
    print("rosinality load_state_dict(strict=True): ok;", len(ckpt["g_ema"]), "tensors")
    z = torch.randn([2, 32], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ws = ours.mapping(z, None)
        images, _ = G([ws], input_is_latent=True, randomize_noise=False)
        images_z, _ = G([z], randomize_noise=False)
        ours_images = ours.synthesis(ws, noise_mode="const")
        ours_images_z = ours(z, None, noise_mode="const")
    print(f"rosinality W+ images vs pti-lab's: max |difference| {(images - ours_images).abs().max():.1e}")
    print(f"rosinality z images vs pti-lab's: max |difference| {(images_z - ours_images_z).abs().max():.1e}")
    buffer = io.BytesIO()
    torch.save({"z": z, "ws": ws, "images": images, "images_z": images_z,
                "meta": "rosinality stylegan2-pytorch Generator with a pti_lab save_rosinality checkpoint; "
                        "see make_rosinality_golden.py"}, buffer)
    (HERE / "rosinality_base.pt").write_bytes(buffer.getvalue())


if __name__ == "__main__":
    main()

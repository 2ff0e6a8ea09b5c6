"""Golden outputs of the official pSp and e4e code, for tests/test_encoders.py.

Made once from local copies of the official repositories (never committed):

    python tests/golden/encoders/make_golden.py --e4e E4E_CHECKOUT --psp PSP_CHECKOUT

E4E_CHECKOUT is omertov/encoder4editing, PSP_CHECKOUT eladrich/pixel2style2pixel. For each
configuration in CONFIGS the script fills the official network's tensors with the seeded recipe
`seeded_tensors` (every BatchNorm statistic, PReLU slope, conv and linear weight and bias gets
non-trivial values), writes a checkpoint in the official layout, lets the official `pSp` class load
it (`strict=True`) and runs the official inference path, `pSp.forward(x, resize=False,
randomize_noise=False, return_latents=True)`, on `seeded_images`. It saves `{kind}_{size}.pt`:
the official encoder and decoder tensor names and shapes, the W+ codes returned (encoder output
plus latent_avg, i.e. start_from_latent_avg), and for 64 px the decoder's images.

The checkouts are copied to a temporary folder and patched there, only in
models/stylegan2/op/__init__.py, which otherwise compiles CUDA kernels on import:
`fused_leaky_relu(x, b, slope, scale)` becomes `leaky_relu(x + b, slope) * scale` (the kernel's
act=3 formula) and `upfirdn2d` calls the repositories' own pure-PyTorch `upfirdn2d_native` with
the reshapes of `UpFirDn2d.forward`. The encoders themselves use neither op.

The test rebuilds the same tensors with `seeded_tensors` from the recorded names and shapes, so no
weights are committed: the recipe draws a few pools of uniform numbers and every tensor is a view
into its pool, so a full IR-SE-50 checkpoint in the official layout is a file of tens of MB.
"""

import argparse
import ast
import math
import shutil
import subprocess
import sys
import tempfile
import zlib
from argparse import Namespace
from pathlib import Path

import torch
import torch.nn.functional as F

GOLDEN_DIR = Path(__file__).resolve().parent
CONFIGS = [("e4e", 64), ("e4e", 256), ("psp", 64), ("psp", 256)]  # (kind, generator resolution)
NUM_IMAGES = 3
INPUT_SIZE = 256  # the official encoders' input size
SEED = 2024
OFFSET_STRIDE = 104729  # odd: views of one pool start at distinct offsets modulo 2**18
OFFSET_RANGE = 2 ** 18


def num_ws_of(resolution: int) -> int:
    return 2 * int(math.log2(resolution)) - 2


def value_range(name: str, shape: tuple, names: set, decoder: bool) -> tuple[float, float]:
    """Uniform range the recipe draws `name` from (chosen so activations stay near unit scale)."""
    prefix, _, leaf = name.rpartition(".")
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    if decoder:  # rosinality StyleGAN2: equalised lr scales applied at run time
        if name.startswith("style."):
            return (-math.sqrt(3) / 0.01, math.sqrt(3) / 0.01) if leaf == "weight" else (-10.0, 10.0)
        if prefix.endswith("modulation"):
            return (-math.sqrt(3), math.sqrt(3)) if leaf == "weight" else (0.9, 1.1)
        if prefix.endswith("noise"):
            return (0.0, 0.2)
        if leaf == "bias":
            return (-0.1, 0.1)
        return (-math.sqrt(3), math.sqrt(3))  # conv weights, the constant input, noise maps
    if f"{prefix}.running_mean" in names:  # BatchNorm
        return {"weight": (0.5, 1.5), "bias": (-0.2, 0.2), "running_mean": (-0.2, 0.2),
                "running_var": (0.5, 2.0)}[leaf]
    if leaf == "bias":
        return (-0.1, 0.1)
    if len(shape) == 1:  # PReLU slopes
        return (0.0, 0.5)
    if len(shape) == 2:  # EqualLinear: weight gain 1/sqrt(in) applied at run time
        return (-math.sqrt(3), math.sqrt(3))
    bound = math.sqrt(3.0 / fan_in)  # conv: unit gain
    return (-bound, bound)


def fir_kernel() -> torch.Tensor:
    """rosinality's up-sampling FIR buffer: [1,3,3,1] outer product, normalised, times factor**2."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[None, :] * k[:, None]
    return k / k.sum() * 4


def seeded_tensors(shapes: dict, seed: int = SEED, decoder: bool = False) -> dict[str, torch.Tensor]:
    """The recipe: every tensor of `shapes` (name -> shape) as a view into a seeded uniform pool.

    Tensors drawn from the same range share one pool, each starting at its own offset, so a file
    holding them stores each pool once. BatchNorm's num_batches_tracked is 0; FIR kernels keep the
    official values.
    """
    names = set(shapes)
    ranges, out = {}, {}
    for name, shape in shapes.items():
        shape = tuple(shape)
        if name.endswith("num_batches_tracked"):
            out[name] = torch.zeros(shape, dtype=torch.long)
        elif decoder and name.endswith(".kernel"):
            out[name] = fir_kernel().reshape(shape)
        else:
            ranges.setdefault(value_range(name, shape, names, decoder), []).append(name)
    generator = torch.Generator().manual_seed(seed)
    for (low, high), members in sorted(ranges.items()):
        size = max(math.prod(shapes[n]) for n in members) + OFFSET_RANGE
        pool = torch.rand([size], generator=generator) * (high - low) + low
        for index, name in enumerate(sorted(members)):
            start = (index * OFFSET_STRIDE + zlib.crc32(name.encode())) % OFFSET_RANGE
            out[name] = pool[start:start + math.prod(shapes[name])].view(tuple(shapes[name]))
    return {name: out[name] for name in shapes}


def seeded_images(seed: int = SEED, count: int = NUM_IMAGES, size: int = INPUT_SIZE) -> torch.Tensor:
    """Smooth random images in [-1, 1]: an 8x8 colour field upsampled, plus fine noise."""
    generator = torch.Generator().manual_seed(seed + 1)
    low = torch.rand([count, 3, 8, 8], generator=generator) * 2 - 1
    fine = torch.rand([count, 3, size, size], generator=generator) * 0.2 - 0.1
    smooth = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (smooth * 0.9 + fine).clamp(-1, 1)


def seeded_latent_avg(num_ws: int, seed: int = SEED) -> torch.Tensor:
    """The W average repeated per W+ vector, as official checkpoints store it: [num_ws, 512]."""
    generator = torch.Generator().manual_seed(seed + 2)
    return (torch.rand([512], generator=generator) * 2 - 1).repeat(num_ws, 1)


def official_opts(kind: str, size: int) -> dict:
    """The training options an official file carries (the fields inference reads, plus some others)."""
    if kind == "e4e":
        return {"exp_dir": "experiment", "dataset_type": "ffhq_encode", "encoder_type": "Encoder4Editing",
                "start_from_latent_avg": True, "stylegan_size": size, "lpips_lambda": 0.8, "id_lambda": 0.1,
                "progressive_steps": [0, 20000, 22000], "save_training_data": False, "checkpoint_path": None}
    return {"exp_dir": "experiment", "dataset_type": "ffhq_encode", "encoder_type": "GradualStyleEncoder",
            "start_from_latent_avg": True, "learn_in_w": False, "output_size": size, "input_nc": 3,
            "label_nc": 0, "lpips_lambda": 0.8, "id_lambda": 0.1, "checkpoint_path": None}


def official_checkpoint(kind: str, size: int, encoder: dict, decoder: dict) -> dict:
    """A checkpoint dict in the official layout from recipe tensors."""
    state = {f"encoder.{k}": v for k, v in encoder.items()}
    state.update({f"decoder.{k}": v for k, v in decoder.items()})
    return {"state_dict": state, "latent_avg": seeded_latent_avg(num_ws_of(size)), "opts": official_opts(kind, size)}


# ----------------------------------------------------------------------------------------------
# Running the official code (needs the checkouts).

OP_INIT = '''import torch
import torch.nn.functional as F
from torch import nn

{native}


def upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0)):
    batch, channel, in_h, in_w = input.shape
    out = upfirdn2d_native(input.reshape(-1, in_h, in_w, 1), kernel, up, up, down, down,
                           pad[0], pad[1], pad[0], pad[1])
    return out.reshape(-1, channel, out.shape[1], out.shape[2])


def fused_leaky_relu(input, bias, negative_slope=0.2, scale=2 ** 0.5):
    return F.leaky_relu(input + bias.view(1, -1, *[1] * (input.ndim - 2)), negative_slope) * scale


{fused_module}
'''


def patched_copy(checkout: Path, dest: Path) -> Path:
    """Copy the .py files of an official checkout and replace its CUDA ops by pure PyTorch."""
    for src in checkout.rglob("*.py"):
        target = dest / src.relative_to(checkout)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    op = dest / "models" / "stylegan2" / "op"

    def source_of(path: Path, name: str) -> str:
        text = path.read_text().replace("\r\n", "\n")
        node = next(n for n in ast.parse(text).body if getattr(n, "name", None) == name)
        return ast.get_source_segment(text, node)

    (op / "__init__.py").write_text(OP_INIT.format(native=source_of(op / "upfirdn2d.py", "upfirdn2d_native"),
                                                   fused_module=source_of(op / "fused_act.py", "FusedLeakyReLU")))
    return dest


def run_official(kind: str, size: int, checkout: Path) -> None:
    """In a fresh process (the two repositories share module names): one golden file."""
    sys.path.insert(0, str(checkout))
    from models.psp import pSp  # noqa: E402 (official code, from the checkout)

    opts = official_opts(kind, size)
    with tempfile.TemporaryDirectory() as tmp:
        # Shapes first, from the official modules; then fill, save, and let pSp load the file.
        encoder, decoder = official_modules(kind, size, opts)
        encoder_shapes = {k: list(v.shape) for k, v in encoder.state_dict().items()}
        decoder_shapes = {k: list(v.shape) for k, v in decoder.state_dict().items()}
        ckpt = official_checkpoint(kind, size, seeded_tensors(encoder_shapes),
                                   seeded_tensors(decoder_shapes, decoder=True))
        path = Path(tmp) / f"{kind}_{size}.pt"
        torch.save(ckpt, path)
        net = pSp(Namespace(**{**opts, "checkpoint_path": str(path), "device": "cpu"})).eval()
    with torch.no_grad():
        images, ws = net(seeded_images(), resize=False, randomize_noise=False, return_latents=True)
    golden = {"encoder_shapes": encoder_shapes, "decoder_shapes": decoder_shapes, "ws": ws.clone()}
    if size == 64:
        golden["images"] = images.clone()
    torch.save(golden, GOLDEN_DIR / f"{kind}_{size}.pt")
    print(f"{kind}_{size}.pt: ws {list(ws.shape)} |ws|max {ws.abs().max():.3f}, "
          f"images {list(images.shape)} |img|max {images.abs().max():.3f}")


def official_modules(kind: str, size: int, opts: dict) -> tuple:
    """The official encoder and decoder as pSp builds them, without weights (names and shapes)."""
    from models.encoders import psp_encoders
    from models.stylegan2.model import Generator

    if kind == "e4e":
        return (psp_encoders.Encoder4Editing(50, "ir_se", Namespace(**opts)),
                Generator(size, 512, 8, channel_multiplier=2))
    return (psp_encoders.GradualStyleEncoder(50, "ir_se", Namespace(**opts, n_styles=num_ws_of(size))),
            Generator(size, 512, 8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--e4e", type=Path, help="checkout of omertov/encoder4editing")
    parser.add_argument("--psp", type=Path, help="checkout of eladrich/pixel2style2pixel")
    parser.add_argument("--one", nargs=3, metavar=("KIND", "SIZE", "PATCHED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, size, patched = args.one
        run_official(kind, int(size), Path(patched))
        return
    if not (args.e4e and args.psp):
        parser.error("--e4e and --psp are required")
    with tempfile.TemporaryDirectory() as tmp:
        patched = {"e4e": patched_copy(args.e4e, Path(tmp) / "e4e"), "psp": patched_copy(args.psp, Path(tmp) / "psp")}
        for kind, size in CONFIGS:
            subprocess.run([sys.executable, __file__, "--one", kind, str(size), str(patched[kind])], check=True)


if __name__ == "__main__":
    main()

"""The official PTI code (danielroich/PTI, the paper's) run on a CPU, offline, without torchvision, on a
folder of images, so that benchmarks can time it beside pti-lab and score its reconstructions.

    python -m pti_lab.bench.official_pti --official DIR --generator PKL --images DIR --out DIR
        [--inversion-steps 450] [--tuning-steps 350] [--lpips-threshold off|0.06]
    python -m pti_lab.bench.official_pti --write-generator PKL --stylegan2-ada DIR
    python -m pti_lab.bench.official_pti --write-images DIR [--count 8] [--resolution 64]

--official DIR is a local checkout of danielroich/PTI; nothing of it is part of pti-lab. The runner
sets its configs as a user edits them (paths_config: the generator pickle, the images, a scratch
folder for the embeddings and checkpoints it writes; global_config.device 'cpu'; hyperparameters:
the two step counts and the early stop) and calls its scripts/run_pti.py `run_PTI` (single-ID
coach, wandb off). Every other setting is the official default: W projector with 600 w samples,
lr 5e-3; tuning lr 3e-4, L2 + LPIPS(alex) with weights 1 and 1, no locality regularisation.
--lpips-threshold is the official LPIPS_value_threshold (0.06) early stop of tuning; `off` (the
default) never stops early, since 0.06 was calibrated at 1024 px. The official coach inverts at most
30 images (max_images_to_invert); a larger folder is refused.

Stand-ins for what this machine lacks, inserted before the official code is imported (its files are
never edited):
  torchvision   does not import here. The official dataset uses transforms.Compose, ToTensor (PIL ->
                float [C, H, W] in [0, 1]) and Normalize(0.5, 0.5); equal arithmetic here. ToPILImage
                and Resize serve only the e4e (W+) first inversion, which this runner does not run.
  lpips         the pip package imports torchvision and downloads AlexNet; `lpips.LPIPS(net='alex')`
                is pti-lab's LPIPS v0.1 (the same network and heads), [-1, 1] inputs, [N, 1, 1, 1],
                without an input range check (as the reference: the renders overshoot [-1, 1]).
  vgg16.pt      the W projector downloads NVIDIA's TorchScript VGG16 and calls
                `vgg16(images in [0, 255], resize_images=False, return_lpips=True)`: features in LPIPS
                form whose squared difference summed is LPIPS(vgg). dnnlib.util.open_url and
                torch.jit.load give pti-lab's LPIPS(vgg) for that one URL instead (the network of the
                reference lpips package, as pti-lab's own projector; NVIDIA's conversion of it may
                differ slightly).
  w pivots      the official projector returns its w repeated 18 times, the layer count of a 1024 px
                generator, which the synthesis of any other size refuses; the coach gets the first
                G.num_ws rows (all 18 are the same w).
The generator pickle is read by the official code itself (load_old_G with its torch_utils).

Results: the coach's own torch.save calls are watched; they still write their files (the w pivot,
then the whole tuned G, per image), and the runner keeps the pivot and the tuned G of each image.
After the last image, each image's reconstruction, the tuned G at its pivot rendered as the coach
renders (noise_mode='const', force_fp32=True), is written to --out as <name>.png, next to
timing.json:
  total_s             wall seconds from this process's start (Linux /proc) to the end of the last
                      image: Python, torch, pti-lab's stand-ins and the official code's imports, the
                      coach's setup and every image;
  images.<name>       seconds: inversion_s, from the end of the previous image (the first: from the
                      call of run_PTI, so it carries the coach's setup) to the pivot's save, which
                      includes the official reload of G (twice per image) and the projection;
                      tuning_s, from there to the tuned G's save; seconds, their sum;
  threads             torch's thread count (set OMP_NUM_THREADS).
Rendering and writing the PNGs are not timed.

--write-generator PKL writes the shipped synthfaces generator as an official network pickle, built
with the official training.networks of a local NVlabs/stylegan2-ada-pytorch checkout (--stylegan2-ada
DIR) and pickled as its training loop pickles snapshots (G, D, G_ema, augment_pipe,
training_set_kwargs). synthfaces has no discriminator; D is an untrained one of the generator's size
(seed 0), there because NVIDIA's legacy.load_network_pkl requires one (PTI reads only G_ema). The
official and pti-lab renders of the same w, and pti-lab's reading of the written file, are compared
and printed.

--write-images DIR writes the first --count faces of the synthfaces out-of-domain test set as
<name>.png at --resolution px (default: the shipped generator's), the images pti-lab's benchmarks use.
"""

import argparse
import contextlib
import copy
import importlib
import json
import math
import os
import pickle
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Iterator

import numpy as np
import PIL.Image
import torch

from pti_lab.atomic import atomic_path, write_text
from pti_lab.data import SynthfacesTestSet
from pti_lab.generators import make_generator
from pti_lab.models import LPIPS, load_generator
from pti_lab.tracking.store import save_png, to_uint8

VGG16_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt"
VGG16_FILE = object()  # what the patched open_url yields for VGG16_URL; torch.jit.load turns it into VGG16Features
RUN_NAME = "official_pti"  # run_PTI's run name, part of the checkpoint file names
DATA_ID = "images"         # paths_config.input_data_id, a folder name under the scratch embeddings folder


def seconds_since_process_start() -> float:
    """Wall seconds since this process started (Linux /proc; 10 ms resolution)."""
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22, starttime
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# Stand-ins.


class Compose:
    def __init__(self, transforms: list):
        self.transforms = transforms

    def __call__(self, x):
        for transform in self.transforms:
            x = transform(x)
        return x


class ToTensor:
    """PIL RGB image -> float32 [C, H, W] in [0, 1], as torchvision's for 8-bit images."""

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255)


class Normalize:
    """(x - mean) / std per channel, as torchvision's."""

    def __init__(self, mean: list, std: list):
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.sub(self.mean).div(self.std)


class E4EOnly:
    """ToPILImage and Resize: the coach builds them, but calls them only for the e4e (W+) first inversion."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args):
        raise NotImplementedError("torchvision stand-in: ToPILImage and Resize serve only the e4e (W+) first "
                                  "inversion, which pti_lab.bench.official_pti does not run")


class OfficialLPIPS(LPIPS):
    """`lpips.LPIPS(net=...)` as the coach uses it: forward(x, y) in [-1, 1] -> [N, 1, 1, 1], no range check."""

    def __init__(self, net: str = "alex"):
        super().__init__(net)

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.forward_unchecked(x, y, normalize)


class VGG16Features(torch.nn.Module):
    """NVIDIA's vgg16.pt as the projector calls it: images [N, 3, H, W] in [0, 255] -> [N, F], the
    LPIPS(vgg) feature maps scaled by sqrt(head weight / (H W)) and flattened, so that
    (a - b).square().sum(1) is LPIPS(vgg)(a, b)."""

    def __init__(self):
        super().__init__()
        self.lpips = LPIPS("vgg")
        if any((head.weight < 0).any() for head in self.lpips.heads):  # sqrt below needs them >= 0 (v0.1's are)
            raise ValueError(f"LPIPS(vgg) heads from {self.lpips.weight_files['heads']} have negative weights")

    def forward(self, images: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        if resize_images or not return_lpips:
            raise NotImplementedError("VGG16 stand-in: only vgg16(images, resize_images=False, return_lpips=True)")
        feats = self.lpips.feature_maps_unchecked(images / 127.5 - 1)
        return torch.cat([(f * head.weight.sqrt() / math.sqrt(f.shape[2] * f.shape[3])).flatten(1)
                          for f, head in zip(feats, self.lpips.heads)], dim=1)


def install_import_stand_ins() -> None:
    """torchvision.transforms and lpips in sys.modules, before the official code imports them."""
    transforms = types.ModuleType("torchvision.transforms")
    transforms.Compose, transforms.ToTensor, transforms.Normalize = Compose, ToTensor, Normalize
    transforms.ToPILImage = transforms.Resize = E4EOnly
    transforms.transforms = transforms  # `from torchvision.transforms import transforms` (run_pti.py)
    torchvision = types.ModuleType("torchvision")
    torchvision.transforms = transforms
    lpips = types.ModuleType("lpips")
    lpips.LPIPS = OfficialLPIPS
    sys.modules.update({"torchvision": torchvision, "torchvision.transforms": transforms,
                        "torchvision.transforms.transforms": transforms, "lpips": lpips})


def serve_vgg16_offline(dnnlib_util: types.ModuleType) -> None:
    """open_url(VGG16_URL) -> VGG16_FILE, torch.jit.load(VGG16_FILE) -> VGG16Features(); others as before."""
    open_url, jit_load = dnnlib_util.open_url, torch.jit.load

    def open_url_offline(url, *args, **kwargs):
        return contextlib.nullcontext(VGG16_FILE) if url == VGG16_URL else open_url(url, *args, **kwargs)

    def jit_load_vgg16(f, *args, **kwargs):
        return VGG16Features() if f is VGG16_FILE else jit_load(f, *args, **kwargs)
    dnnlib_util.open_url, torch.jit.load = open_url_offline, jit_load_vgg16


def pivots_of_any_size(w_projector: types.ModuleType) -> None:
    """w_projector.project for generators other than 1024 px: G.num_ws rows of its 18 identical ones,
    after a one-line error when the image does not have the generator's size."""
    project = w_projector.project

    def project_num_ws(G, target, **kwargs):
        if tuple(target.shape) != (G.img_channels, G.img_resolution, G.img_resolution):
            raise SystemExit(f"{kwargs.get('w_name')}: image of {list(target.shape)}, the generator makes "
                             f"{[G.img_channels, G.img_resolution, G.img_resolution]}")
        return project(G, target, **kwargs)[:, :G.num_ws]
    w_projector.project = project_num_ws


# ---------------------------------------------------------------------------------------------
# The official run.


def import_official(root: Path) -> types.ModuleType:
    """scripts.run_pti from a checkout (one line if it is not one), with the stand-ins in place."""
    if not (root / "scripts" / "run_pti.py").is_file() or not (root / "training" / "coaches").is_dir():
        raise SystemExit(f"--official {root}: not a danielroich/PTI checkout (no scripts/run_pti.py, training/coaches)")
    install_import_stand_ins()
    sys.path.insert(0, str(root.resolve()))
    run_pti = importlib.import_module("scripts.run_pti")
    serve_vgg16_offline(importlib.import_module("dnnlib.util"))
    pivots_of_any_size(importlib.import_module("training.projectors.w_projector"))
    return run_pti


def image_files(folder: Path, most: int) -> list[Path]:
    """The PNGs the official dataset reads from `folder`, refused unless each name is <stem>.png (the
    official name is the file name up to its first dot) and there are at most `most`."""
    if not folder.is_dir():
        raise SystemExit(f"--images {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    bad = [p.name for p in files if p.suffix.lower() != ".png" or "." in p.stem]
    if bad:
        raise SystemExit(f"--images {folder}: {bad[0]}: only <name>.png files (no other dots), as the official "
                         "dataset names each image by the file name up to its first dot")
    if not files or len(files) > most:
        raise SystemExit(f"--images {folder}: {len(files)} PNG images; the official coach inverts 1 to {most}")
    return files


def configure(configs: types.SimpleNamespace, generator: Path, images: Path, scratch: Path,
              args: argparse.Namespace) -> None:
    """The official configs as a user edits them for this run."""
    configs.global_config.device = "cpu"
    configs.paths_config.stylegan2_ada_ffhq = str(generator)
    configs.paths_config.input_data_path = str(images)
    configs.paths_config.input_data_id = DATA_ID
    configs.paths_config.checkpoints_dir = str(scratch / "checkpoints")
    configs.paths_config.embedding_base_dir = str(scratch / "embeddings")
    configs.hyperparameters.first_inv_steps = args.inversion_steps
    configs.hyperparameters.max_pti_steps = args.tuning_steps
    configs.hyperparameters.LPIPS_value_threshold = -math.inf if args.lpips_threshold is None else args.lpips_threshold


class SaveWatcher:
    """Watches torch.save while the coach runs: per image the pivot it saves to
    <embeddings>/<DATA_ID>/PTI/<name>/0.pt, then the tuned G to <checkpoints>/model_<RUN_NAME>_<name>.pt."""

    def __init__(self, scratch: Path, start: float):
        self.pivot_dir = scratch / "embeddings" / DATA_ID / "PTI"
        self.checkpoints = scratch / "checkpoints"
        self.last = start            # perf_counter at the end of the previous image
        self.pivots: dict[str, torch.Tensor] = {}
        self.tuned: dict[str, torch.nn.Module] = {}
        self.seconds: dict[str, dict] = {}
        self.total = 0.0             # seconds since process start at the end of the last image

    def saved(self, obj, path: Path) -> None:
        now = time.perf_counter()
        if path.parent.parent == self.pivot_dir and path.name == "0.pt":
            name = path.parent.name
            self.pivots[name] = obj.detach().clone()
            self.seconds[name] = {"inversion_s": round(now - self.last, 3)}
        elif path.parent == self.checkpoints and path.name.startswith(f"model_{RUN_NAME}_"):
            name = path.stem.removeprefix(f"model_{RUN_NAME}_")
            if name not in self.pivots:
                raise RuntimeError(f"official coach saved {path.name} before the pivot of {name}")
            self.tuned[name] = obj  # the coach loads a fresh G for the next image and leaves this one as it is
            self.seconds[name]["tuning_s"] = round(now - self.last, 3)
            self.total = seconds_since_process_start()
        else:
            raise RuntimeError(f"official coach saved {path}, which the runner does not know")
        self.last = now

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        save = torch.save

        def save_and_watch(obj, f, *args, **kwargs):
            save(obj, f, *args, **kwargs)
            self.saved(obj, Path(f))
        torch.save = save_and_watch
        try:
            yield
        finally:
            torch.save = save


@torch.no_grad()
def write_reconstructions(watcher: SaveWatcher, out: Path) -> None:
    """Each tuned G rendered at its pivot as the coach renders, as <out>/<name>.png."""
    for name, G in watcher.tuned.items():
        image = G.synthesis(watcher.pivots[name], noise_mode="const", force_fp32=True)
        save_png(to_uint8(image)[0], out / f"{name}.png")


def run(args: argparse.Namespace) -> None:
    run_pti = import_official(args.official)
    configs = types.SimpleNamespace(**{name: importlib.import_module(f"configs.{name}")
                                       for name in ("global_config", "paths_config", "hyperparameters")})
    images = image_files(args.images, configs.hyperparameters.max_images_to_invert)
    if not args.generator.is_file():
        raise SystemExit(f"--generator {args.generator}: no such file")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="official_pti_") as scratch:
        configure(configs, args.generator.resolve(), args.images.resolve(), Path(scratch), args)
        watcher = SaveWatcher(Path(scratch), time.perf_counter())
        with watcher.watching():
            run_pti.run_PTI(run_name=RUN_NAME, use_wandb=False, use_multi_id_training=False)
        if sorted(watcher.tuned) != sorted(p.stem for p in images):
            raise RuntimeError(f"official coach tuned {sorted(watcher.tuned)}, expected {[p.stem for p in images]}")
        write_reconstructions(watcher, args.out)
    timing = {"total_s": round(watcher.total, 3), "threads": torch.get_num_threads(),
              "images": {name: dict(s, seconds=round(s["inversion_s"] + s["tuning_s"], 3))
                         for name, s in watcher.seconds.items()}}
    write_text(args.out / "timing.json", json.dumps(timing, indent=2) + "\n")
    print(f"official PTI: {len(images)} images, {watcher.total:.1f} s from process start; reconstructions "
          f"and timing.json in {args.out}")


# ---------------------------------------------------------------------------------------------
# Inputs: the synthfaces generator as an official pickle, and the test faces as PNGs.


def official_snapshot(networks: types.ModuleType, ours: torch.nn.Module) -> dict:
    """An official training snapshot whose G and G_ema hold `ours`' weights; D untrained (seed 0)."""
    kwargs = copy.deepcopy(ours.init_kwargs)
    G = networks.Generator(**kwargs).eval().requires_grad_(False)
    G.load_state_dict(ours.state_dict())
    synthesis = kwargs["synthesis_kwargs"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        D = networks.Discriminator(c_dim=kwargs["c_dim"], img_resolution=kwargs["img_resolution"],
                                   img_channels=kwargs["img_channels"], channel_base=synthesis["channel_base"],
                                   channel_max=synthesis["channel_max"]).eval().requires_grad_(False)
    return dict(G=copy.deepcopy(G), D=D, G_ema=G, augment_pipe=None, training_set_kwargs=None)


@torch.no_grad()
def largest_difference(official: torch.nn.Module, ours: torch.nn.Module) -> float:
    """max |official - ours| over the mapping of seeded z and the renders of those w (noise const)."""
    z = torch.randn([4, ours.z_dim], generator=torch.Generator().manual_seed(1))
    ws = official.mapping(z, None)
    images = official.synthesis(ws, noise_mode="const", force_fp32=True)
    return max((ws - ours.mapping(z, None)).abs().max().item(),
               (images - ours.synthesis(ws, noise_mode="const")).abs().max().item())


def write_generator(path: Path, checkout: Path) -> None:
    if not (checkout / "training" / "networks.py").is_file():
        raise SystemExit(f"--stylegan2-ada {checkout}: not a NVlabs/stylegan2-ada-pytorch checkout "
                         "(no training/networks.py)")
    sys.path.insert(0, str(checkout.resolve()))
    networks = importlib.import_module("training.networks")
    ours = make_generator()
    snapshot = official_snapshot(networks, ours)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(snapshot, f)  # as the official training loop writes network-snapshot-*.pkl
    read_back = load_generator(path).state_dict()
    same = all(torch.equal(t, read_back[name]) for name, t in ours.state_dict().items())
    print(f"{path}: the synthfaces generator ({ours.img_resolution} px) as an official pickle; max |official - "
          f"pti-lab| {largest_difference(snapshot['G_ema'], ours):.1e}; pti-lab reads back the same weights: {same}")


def write_images(folder: Path, count: int, resolution: int | None) -> list[str]:
    resolution = resolution or make_generator().img_resolution
    names = []
    for sample in SynthfacesTestSet(kind="ood", limit=count).samples(resolution):
        save_png(to_uint8(sample.image)[0], folder / f"{sample.name}.png")
        names.append(sample.name)
    print(f"{folder}: {len(names)} synthfaces ood faces at {resolution} px ({names[0]} .. {names[-1]})")
    return names


# ---------------------------------------------------------------------------------------------


def threshold(text: str) -> float | None:
    if text == "off":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'off' or a number, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, help="local danielroich/PTI checkout")
    parser.add_argument("--generator", type=Path, help="official network pickle (stylegan2-ada-pytorch)")
    parser.add_argument("--images", type=Path, help="folder of <name>.png at the generator's resolution")
    parser.add_argument("--out", type=Path, help="folder for <name>.png reconstructions and timing.json")
    parser.add_argument("--inversion-steps", type=int, default=450, help="official first_inv_steps (450)")
    parser.add_argument("--tuning-steps", type=int, default=350, help="official max_pti_steps (350)")
    parser.add_argument("--lpips-threshold", type=threshold, default=None,
                        help="tuning early stop, official LPIPS_value_threshold 0.06; default off")
    parser.add_argument("--write-generator", type=Path, help="write the synthfaces generator as this pickle")
    parser.add_argument("--stylegan2-ada", type=Path, help="local NVlabs/stylegan2-ada-pytorch checkout")
    parser.add_argument("--write-images", type=Path, help="write synthfaces ood test faces into this folder")
    parser.add_argument("--count", type=int, default=8, help="faces for --write-images")
    parser.add_argument("--resolution", type=int, default=None, help="px for --write-images (default: generator's)")
    args = parser.parse_args(argv)
    if args.write_generator:
        if not args.stylegan2_ada:
            parser.error("--write-generator needs --stylegan2-ada DIR")
        write_generator(args.write_generator, args.stylegan2_ada)
    elif args.write_images:
        write_images(args.write_images, args.count, args.resolution)
    else:
        missing = [flag for flag in ("official", "generator", "images", "out") if getattr(args, flag) is None]
        if missing:
            parser.error(f"a run needs --{', --'.join(missing)}")
        run(args)


if __name__ == "__main__":
    main()

"""Train the synthfaces encoders: an e4e and a pSp that invert the shipped synthfaces generator.

    python -m pti_lab.train.synthfaces_encoders --kind e4e|psp --out DIR [--seed 0] [--latent-steps N]
        [--steps N] [--minutes 45] [--device cpu|cuda] [--batch B] [--edit-images 4] [--ship DIR]
    python -m pti_lab.train.synthfaces_encoders --kind e4e --report DIR [--edit-images 4]
    python -m pti_lab.train.synthfaces_encoders --kind e4e --ship DIR

--out trains into DIR: <kind>.pt (the official checkpoint layout: `state_dict` with `encoder.*` keys,
`latent_avg`, `opts` holding the encoder's sizes; fp16 tensors; `load_encoder` reads it) and
training.json (the run's numbers and the command that rebuilds it), then reports. --report writes
DIR/report.json: LPIPS(alex) and id_sim (the synthfaces identity network) of the encoder's
reconstructions of the in-domain and out-of-domain test sets, milliseconds per image, and
editability: InterfaceGAN smile and pose edits (strengths +-2) of --edit-images in-domain faces,
scored by the attribute predictor, from the encoder's latents and from W-projector pivots (450
steps) of the same faces. --ship records DIR/<kind>.pt in the package's manifest with those numbers.

Training pairs of the image steps (batch B = 3 x B/3):
  generator samples  G(f(z)), z ~ N(0, I): images the generator draws exactly, latent known;
  in-domain renders  renderer faces; latent f(standardise(params)), which the generator (a decoder
                     of standardised parameters) renders as that face (LPIPS ~0.03);
  renders + extras   faces with the out-of-domain accessories (glasses, hats, face paint, make-up,
                     earrings) the generator never drew: what a photo is to an FFHQ encoder. No
                     latent is known; only the image losses see them.
Losses as in the official training (pSp's and e4e's ffhq_encode settings): L2 + 0.8 LPIPS(alex)
+ 0.1 identity (1 - cos of the synthfaces identity embeddings, as pSp's ArcFace ID loss) on
G.synthesis(encoder(x) + latent_avg); pSp's w-norm (weight 0 as official for encoding); e4e's delta
regulariser 2e-4 * sum_i ||w_i - w_0|| and its progressive training (w_0 alone first, then one more
layer's offset every `progressive_every` image steps; the offsets' last layers start at zero, so
unlocking one does not disturb w_0). e4e's latent discriminator is left out: it keeps the latents
in W against a real-image distribution, and here the synthetic pairs give a direct signal. That
signal is our departure from the official losses, which images without a latent cannot have: the
squared distance between the encoder's ws and the known latent (per dimension over W's variance),
alone in the first --latent-steps steps (batches of in-domain renders, no synthesis: a cheap
warm start), then weighted by `latent_weight` beside the image losses. It is what lets a small
encoder learn in minutes on a CPU; train(latent_weight=0, latent_steps=0) keeps the official
losses alone. Adam (the official
Ranger at 1e-4 is tuned for 300k steps), peak learning rates 3e-3 (latent steps) and 5e-4 (image
steps), each phase with its own warm-up and cosine decay.

Sizes: the official IR-SE-50 with 18 style blocks of 512 channels is ~250 MB; ours is an IR-SE with
narrow stages and one unit per stage, narrow style blocks (SIZES below), at the generator's 64 px.

Batch b is drawn from sampler seeds batch_seed(seed, 3 b + part) (the latent steps) and
batch_seed(seed + 1, 3 b + part) (the image steps), never the test sets' 9000/9001. A run is
step-bounded: the schedule runs over --latent-steps and --steps, so the same seed gives the same
weights (bit for bit on a CPU); --minutes only guards the wall time (a run it cuts short says so
in training.json).
"""

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from pti_lab.atomic import write_text
from pti_lab.editing.interfacegan import InterfaceGANEditor
from pti_lab.generators import make_generator
from pti_lab.inversion.projector import WInverter
from pti_lab.metrics.edit_scores import attribute_scores
from pti_lab.models.encoders import Encoder4Editing, EncoderNet, GradualStyleEncoder, load_encoder, save_encoder
from pti_lab.models.lpips import LPIPS
from pti_lab.models.stylegan2 import Generator
from pti_lab.runtime import keep_freed_memory
from pti_lab.synthfaces import shipped
from pti_lab.synthfaces.params import sample_params, standardise
from pti_lab.synthfaces.predictor import PREDICTOR_FILE, AttributePredictor, SynthfacesIdentity
from pti_lab.synthfaces.render import render_torch
from pti_lab.synthfaces.testsets import make_testset, preview_grid
from pti_lab.train.synthfaces_generator import save_png, to_uint8
from pti_lab.train.synthfaces_predictor import (
    batch_seed, check_out_report_ship, cosine_lr, describe_device, pick_device,
)

TRAINING_JSON = "training.json"  # the run's summary and the command that rebuilds it
REPORT_JSON = "report.json"      # the quality numbers
KINDS = tuple(shipped.ENCODER_FILES)  # e4e, psp
LATENT_AVG_SAMPLES = 100_000  # mapped z behind latent_avg (the official decoder.mean_latent(1e5))
LATENT_AVG_SEED = 0
REPORT_COUNT = 32             # test-set images per reconstruction number (the whole seeded sets)
EDIT_COUNT = 4                # in-domain faces edited from encoder latents and from W pivots
EDIT_STRENGTHS = [-3.0, -1.5, 1.5, 3.0]  # conf/editor/paper.yaml's InterfaceGAN strengths
EDIT_DIRECTIONS = ("smile", "pose")
TIMING_IMAGES = 16            # batch-1 encoder passes timed for the milliseconds per image
# Official loss weights (pSp and e4e, ffhq_encode).
L2_WEIGHT, LPIPS_WEIGHT, ID_WEIGHT = 1.0, 0.8, 0.1
DELTA_WEIGHT = 2e-4           # e4e's delta_norm_lambda
W_NORM_WEIGHT = 0.0           # pSp's w_norm_lambda (0 for encoding)
# Encoder sizes (the official: widths 64-512, units 3/4/14/3, style convs of 512 channels; ~250 MB).
SIZES = dict(widths=[16, 32, 64, 128], units=[1, 1, 1, 1], style_channels=64)


@dataclass
class Batch:
    images: torch.Tensor  # [N, 3, 64, 64] in [-1, 1]
    ws: torch.Tensor      # [K, num_ws, w_dim] true latents of the first K images (K <= N)


class Pairs:
    """Seeded training pairs (see the module docstring). Image batch b: `per_part` generator samples,
    in-domain renders and renders with extras; latent batch b: `per_part` in-domain renders alone
    (cheap: no synthesis)."""

    def __init__(self, G: Generator, seed: int, per_part: int, device: torch.device):
        self.G, self.seed, self.per_part, self.device = G, seed, per_part, device

    @torch.no_grad()
    def faces(self, index: int) -> Batch:
        """In-domain renders and their latents f(standardise(params))."""
        params = sample_params(self.per_part, batch_seed(self.seed, 3 * index))
        ws = self.G.mapping(torch.from_numpy(standardise(params)).to(self.device), None)  # [n, L, D]
        return Batch(render_torch(params, self.G.img_resolution, self.device), ws)

    @torch.no_grad()
    def mixed(self, index: int) -> Batch:
        """Generator samples, in-domain renders (both with latents), then renders with extras."""
        G, n = self.G, self.per_part
        z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(batch_seed(self.seed, 3 * index + 1)))
        samples_ws = G.mapping(z.to(self.device), None)
        samples = G.synthesis(samples_ws, noise_mode="const").clamp(-1, 1)
        faces = self.faces(index)
        extras = sample_params(n, batch_seed(self.seed, 3 * index + 2), extras="random")
        images = torch.cat([samples, faces.images, render_torch(extras, G.img_resolution, self.device)])
        return Batch(images, torch.cat([samples_ws, faces.ws]))


@torch.no_grad()
def latent_statistics(G: Generator, samples: int = LATENT_AVG_SAMPLES, seed: int = LATENT_AVG_SEED):
    """(mean [w_dim], variance [w_dim]) of f(z) over seeded z ~ N(0, I)."""
    device = next(G.parameters()).device
    z = torch.randn([samples, G.z_dim], generator=torch.Generator().manual_seed(seed))
    w = torch.cat([G.mapping(chunk.to(device), None)[:, 0] for chunk in z.split(10_000)])
    return w.mean(0), w.var(0)


def make_encoder(kind: str, G: Generator, latent_avg: torch.Tensor, sizes: dict) -> EncoderNet:
    """A freshly initialised encoder for G: its num_ws and w_dim, its resolution as input size."""
    cls = Encoder4Editing if kind == "e4e" else GradualStyleEncoder
    encoder = cls(num_ws=G.num_ws, w_dim=G.w_dim, input_size=G.img_resolution, **sizes)
    if kind == "e4e":  # offsets start at zero: unlocking a layer does not jolt a trained w_0 (they learn from there)
        with torch.no_grad():
            for style in encoder.styles[1:]:
                style.linear.weight.zero_()
    return EncoderNet(encoder, latent_avg)


def e4e_stage(step: int, every: int, num_ws: int) -> int:
    """e4e's progressive stage (offsets applied) at image step `step`: one more every `every` steps."""
    return min(num_ws - 1, 1 + step // every) if every > 0 else num_ws - 1


def train(
    kind: str,                            # 'e4e' or 'psp'
    out_dir: Path,                        # where <kind>.pt is written
    seed: int = 0,                        # initialisation and batch seed
    latent_steps: int = 1500,             # warm start: latent loss only, no synthesis
    steps: int = 600,                     # then the image losses (+ the latent term)
    minutes: float = 45.0,                # wall-clock guard over both phases
    device: str = "auto",                 # 'auto', 'cpu' or 'cuda'
    batch: int = 12,                      # images per image step (a third from each part)
    latent_batch: int = 32,               # images per latent step (in-domain renders)
    latent_lr: float = 3e-3,              # Adam peak learning rate of the latent steps (cosine over them)
    lr: float = 5e-4,                     # Adam peak learning rate of the image steps (cosine over them)
    latent_weight: float = 1.0,           # the latent term beside the image losses (0: official losses only)
    id_weight: float = ID_WEIGHT,         # the identity loss (0: off)
    progressive_every: int = 40,          # e4e: image steps between unlocking layers
    sizes: Optional[dict] = None,         # encoder size knobs; None = SIZES
    log_every: int = 100,                 # steps between progress lines
) -> dict:
    device = pick_device(device)
    torch.manual_seed(seed)
    G = make_generator(None, device=device)
    latent_avg, w_var = latent_statistics(G)
    sizes = dict(SIZES if sizes is None else sizes)
    net = make_encoder(kind, G, latent_avg, sizes).to(device).train()
    optimizer = torch.optim.Adam(net.parameters())
    lpips = LPIPS("alex", allow_download=False, range_tolerance=None).to(device)
    identity = SynthfacesIdentity().to(device) if id_weight else None
    budget, start = minutes * 60.0, time.perf_counter()
    history: list[dict] = []

    def encode(images: torch.Tensor, stage: int) -> torch.Tensor:
        if kind == "e4e":
            net.encoder.progressive_stage = stage  # w_0 plus this many offsets
        return net(images)  # [N, num_ws, w_dim], latent_avg added

    def latent_loss(ws: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        return ((ws[:len(true)] - true).square() / w_var).mean()

    def run_phase(name: str, count: int, peak_lr: float, step_fn) -> int:
        done, window = 0, {}
        for step in range(count):
            if time.perf_counter() - start > budget:
                break
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(peak_lr, step, step / count, warmup=min(200, count // 10 + 1))
            losses = step_fn(step)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            done += 1
            for key, value in losses.items():
                window[key] = window.get(key, 0.0) + value.item()
            if done % log_every == 0 or done == count:
                means = {key: round(value / (done % log_every or log_every), 5) for key, value in window.items()}
                seconds = time.perf_counter() - start
                history.append({"phase": name, "step": done, "seconds": round(seconds, 1), **means})
                print(f"{kind} {name} {done}/{count} {seconds:.0f}s " +
                      " ".join(f"{key} {value:.4f}" for key, value in means.items()), flush=True)
                window = {}
        return done

    latent_pairs = Pairs(G, seed, latent_batch, device)
    image_pairs = Pairs(G, seed + 1, batch // 3, device)

    def latent_step(step: int) -> dict:
        pairs = latent_pairs.faces(step)
        loss = latent_loss(encode(pairs.images, 0 if kind == "e4e" else G.num_ws - 1), pairs.ws)
        return {"loss": loss}

    def image_step(step: int) -> dict:
        pairs = image_pairs.mixed(step)
        stage = e4e_stage(step, progressive_every, G.num_ws) if kind == "e4e" else G.num_ws - 1
        ws = encode(pairs.images, stage)
        synth = G.synthesis(ws, noise_mode="const", fused_modconv=False)
        terms = {"l2": F.mse_loss(synth, pairs.images), "lpips": lpips(synth, pairs.images).mean()}
        loss = L2_WEIGHT * terms["l2"] + LPIPS_WEIGHT * terms["lpips"]
        if identity is not None:
            with torch.no_grad():
                target_id = identity.embed(pairs.images)[0]
            # The generator's output is not bounded: once e4e's offsets grow, a few pixels leave [-1, 1],
            # which the identity network refuses; they are shown to it as displayed (clamped).
            terms["id"] = (1 - (identity.embed(synth.clamp(-1, 1))[0] * target_id).sum(1)).mean()
            loss = loss + id_weight * terms["id"]
        if latent_weight:
            terms["latent"] = latent_loss(ws, pairs.ws)
            loss = loss + latent_weight * terms["latent"]
        if kind == "e4e":
            terms["delta"] = (ws[:, 1:stage + 1] - ws[:, :1]).norm(dim=2).mean(0).sum()
            loss = loss + DELTA_WEIGHT * terms["delta"]
        elif W_NORM_WEIGHT:
            terms["w_norm"] = (ws - latent_avg).norm(dim=2).mean()
            loss = loss + W_NORM_WEIGHT * terms["w_norm"]
        return {"loss": loss, **terms}

    done_latent = run_phase("latent", latent_steps, latent_lr, latent_step)
    done_image = run_phase("image", steps, lr, image_step)
    seconds = time.perf_counter() - start

    out_dir.mkdir(parents=True, exist_ok=True)
    file = out_dir / shipped.ENCODER_FILES[kind]
    if kind == "e4e":
        net.encoder.progressive_stage = None  # inference: every offset
    save_encoder(net.eval(), file, half=True, generator_resolution=G.img_resolution)
    size_mb = file.stat().st_size / 2**20
    return {
        "kind": kind, "seed": seed, "latent_steps": done_latent, "steps": done_image,
        "planned_latent_steps": latent_steps, "planned_steps": steps, "cut_by_minutes": done_image < steps,
        "batch": batch, "latent_batch": latent_batch, "latent_lr": latent_lr, "lr": lr, "latent_weight": latent_weight,
        "id_weight": id_weight, "progressive_every": progressive_every, "sizes": sizes,
        "parameters": sum(p.numel() for p in net.parameters()), "megabytes": round(size_mb, 2),
        "seconds": round(seconds, 1), "device": describe_device(device), "history": history,
        "built_from": {shipped.GENERATOR_FILE: shipped_sha256(shipped.GENERATOR_FILE),
                       **({PREDICTOR_FILE: shipped_sha256(PREDICTOR_FILE)} if id_weight else {})},
    }


def shipped_sha256(name: str) -> str:
    return shipped.read_manifest()["files"][name]["sha256"]


# ----------------------------------------------------------------------------
# Quality report.


def test_images(kind: str, count: int, device: torch.device) -> torch.Tensor:
    pixels, _ = make_testset(kind, count)
    return torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [NCHW]


@torch.no_grad()
def reconstruction_numbers(G: Generator, encoder, images: torch.Tensor, lpips: LPIPS,
                           identity: SynthfacesIdentity) -> tuple[dict, torch.Tensor]:
    """Mean LPIPS(alex) and id_sim of G.synthesis(encoder(images)) against the images; the renders."""
    recon = torch.cat([G.synthesis(encoder(chunk), noise_mode="const").clamp(-1, 1) for chunk in images.split(16)])
    id_sim = (identity.embed(recon)[0] * identity.embed(images)[0]).sum(1)
    return {"lpips": lpips(recon, images).mean().item(), "id_sim": id_sim.mean().item()}, recon


def milliseconds_per_image(encoder, images: torch.Tensor) -> float:
    """Mean wall time of encoder(image) at batch 1 (after two warm-up passes)."""
    with torch.no_grad():
        for image in images[:2]:
            encoder(image[None])
        start = time.perf_counter()
        for image in images:
            encoder(image[None])
        if images.is_cuda:
            torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / len(images)


@torch.no_grad()
def edit_moves(G: Generator, pivots: torch.Tensor, predictor: AttributePredictor) -> dict:
    """{direction: mean change of its attribute in the edit's direction} over pivots [N, L, D] and
    EDIT_STRENGTHS: sign(t) * (score(G(w + t n)) - score(G(w))), predictor units (smile, yaw in [-1, 1])."""
    editor = InterfaceGANEditor(direction=list(EDIT_DIRECTIONS), strengths=EDIT_STRENGTHS)
    editor.prepare(G)
    moves: dict[str, list] = {name: [] for name in EDIT_DIRECTIONS}
    for pivot in pivots.split(1):
        base = attribute_scores(predictor, G.synthesis(pivot, noise_mode="const").clamp(-1, 1))
        for edit in editor.edits(G, pivot).edits:
            scores = attribute_scores(predictor, G.synthesis(edit.ws, noise_mode="const").clamp(-1, 1))
            attribute = edit.attributes[-1]
            moves[edit.name].append(float(np.sign(edit.strength)) * (scores[attribute] - base[attribute]).item())
    return {name: mean(values) for name, values in moves.items()}


def report(kind: str, folder: Path, device: torch.device, edit_count: int = EDIT_COUNT) -> dict:
    """Reconstruction, speed and editability numbers of folder/<kind>.pt (see the module docstring)."""
    G = make_generator(None, device=device)
    encoder = load_encoder(str(folder / shipped.ENCODER_FILES[kind])).to(device).eval()
    lpips = LPIPS("alex", allow_download=False).to(device)
    identity = SynthfacesIdentity().to(device)
    metrics, grid = {}, []
    for testset in ("indomain", "ood"):
        images = test_images(testset, REPORT_COUNT, device)
        numbers, recon = reconstruction_numbers(G, encoder, images, lpips, identity)
        metrics.update({f"recon_{key}_{testset}": round(value, 4) for key, value in numbers.items()})
        grid += [to_uint8(images[:8]), to_uint8(recon[:8])]
    images = test_images("indomain", REPORT_COUNT, device)
    metrics["ms_per_image"] = round(milliseconds_per_image(encoder, images[:TIMING_IMAGES]), 2)
    metrics["timing_device"] = describe_device(device)
    if edit_count:
        faces = images[:edit_count]
        with torch.no_grad():
            encoded = encoder(faces)
        inverter = WInverter(progress=False)
        projected = torch.cat([inverter.invert(G, face[None], seed=index).pivot for index, face in enumerate(faces)])
        predictor = AttributePredictor().to(device)
        for source, pivots in ((kind, encoded), ("w", projected)):
            for direction, move in edit_moves(G, pivots, predictor).items():
                metrics[f"edit_{direction}_{source}"] = round(move, 4)
        with torch.no_grad():
            recon = G.synthesis(projected, noise_mode="const").clamp(-1, 1)
            metrics["w_projector_lpips_edit_images"] = round(lpips(recon, faces).mean().item(), 4)
        metrics.update(edit_images=edit_count, edit_strengths=EDIT_STRENGTHS)
    folder.mkdir(parents=True, exist_ok=True)
    save_png(folder / f"{kind}_reconstruction.png", preview_grid(np.concatenate(grid)))
    write_text(folder / f"{kind}_{REPORT_JSON}", json.dumps(metrics, indent=1) + "\n")
    return metrics


# ----------------------------------------------------------------------------
# Command line.


def rebuild_command(args: argparse.Namespace, summary: dict) -> str:
    """The command that retrains, reports and ships this run."""
    device = summary["device"].split()[0]
    threads = f"OMP_NUM_THREADS={torch.get_num_threads()} " if device == "cpu" else ""
    folder = "outputs/synthfaces_encoders"  # outputs/ is git-ignored
    return (f"{threads}python -m pti_lab.train.synthfaces_encoders --kind {args.kind} --out {folder} "
            f"--seed {args.seed} --latent-steps {args.latent_steps} --steps {args.steps} --minutes {args.minutes:g} "
            f"--device {device} --batch {args.batch} --edit-images {args.edit_images} --ship {folder}")


def ship(kind: str, folder: Path) -> None:
    """Copy folder/<kind>.pt into the package and record it with its training and report numbers."""
    name = shipped.ENCODER_FILES[kind]
    summary = json.loads((folder / f"{kind}_{TRAINING_JSON}").read_text())
    metrics = json.loads((folder / f"{kind}_{REPORT_JSON}").read_text())
    training = {key: summary[key] for key in ("latent_steps", "steps", "batch", "parameters", "megabytes")}
    shipped.record(name, folder / name, command=summary["command"], seed=summary["seed"],
                   minutes=round(summary["seconds"] / 60, 1), device=summary["device"],
                   metrics={**training, **metrics}, built_from=summary["built_from"])
    print(f"shipped {folder / name} -> {shipped.WEIGHTS_DIR / name}")


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.train.synthfaces_encoders",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--kind", required=True, choices=KINDS, help="which encoder")
    parser.add_argument("--out", type=Path, help="train into this folder, then report on the result")
    parser.add_argument("--report", type=Path, help="report on DIR/<kind>.pt (no training)")
    parser.add_argument("--ship", type=Path, help="record DIR/<kind>.pt with its training and report numbers")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch seed")
    parser.add_argument("--latent-steps", type=int, default=1500, help="warm-start steps on the latent loss alone")
    parser.add_argument("--steps", type=int, default=600, help="steps with the image losses")
    parser.add_argument("--minutes", type=float, default=45.0, help="wall-clock guard over both phases")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to train and report")
    parser.add_argument("--batch", type=int, default=12, help="images per image step (a third from each source)")
    parser.add_argument("--edit-images", type=int, default=EDIT_COUNT, help="faces edited by the report (0: none)")
    args = parser.parse_args(argv)
    keep_freed_memory()
    check_out_report_ship(parser, args)
    device = pick_device(args.device)
    if args.out is not None:
        summary = train(args.kind, args.out, args.seed, args.latent_steps, args.steps, args.minutes, args.device,
                        args.batch)
        summary["command"] = rebuild_command(args, summary)
        write_text(args.out / f"{args.kind}_{TRAINING_JSON}", json.dumps(summary, indent=1) + "\n")
        print(json.dumps({key: value for key, value in summary.items() if key != "history"}, indent=1))
    folder = args.out or args.report
    if folder is not None:
        print(json.dumps(report(args.kind, folder, device, args.edit_images), indent=1))
    if args.ship is not None:
        ship(args.kind, args.ship)
    return 0


if __name__ == "__main__":
    sys.exit(main())

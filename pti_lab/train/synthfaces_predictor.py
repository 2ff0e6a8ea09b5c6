"""Train the synthfaces predictor (attribute regression + identity embedding) on renders made on the fly.

    python -m pti_lab.train.synthfaces_predictor --out DIR --seed 0 --minutes 45 [--device cpu|cuda]

writes DIR/predictor.pt (fp16 weights, loaded by pti_lab.synthfaces.predictor) and
DIR/predictor.json (held-out metrics, steps, images seen, seconds). Training stops after --minutes
of wall time (the learning rate follows a cosine over that time); the held-out evaluation after it
takes about half a minute on 2 CPU cores.

Each batch is `groups` identities x `views` renders: the views of one identity share every identity
field and differ in attributes, background and, with probability 1/2 each, random extras (the
predictor's invariance augmentation; see predictor.py). Loss = supervised contrastive loss of the
identity embeddings (positives: the other views of the same identity) + MSE of the standardised
attributes + 1/2 MSE of the standardised identity fields. Renders are blurred and noised at random
so that the networks also read the softer images a generator makes.

Batch b is rendered from sampler seed (seed + 1) * 10**7 + b, so training never meets the test
sets (seeds 9000, 9001) nor the held-out evaluation renders (seeds 9100-9105). Renders are made by
--workers background processes (the only bottleneck on a GPU); batch order, and so the whole run
up to timing, does not depend on their number.
"""

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from pti_lab.atomic import write_text
from pti_lab.runtime import keep_freed_memory
from pti_lab.synthfaces import shipped
from pti_lab.synthfaces.params import ATTRIBUTES, EXTRAS, FIELDS, IDENTITY, INDEX, sample_params
from pti_lab.synthfaces.predictor import (
    ATTRIBUTE_MEAN, ATTRIBUTE_STD, PREDICTOR_FILE, SIZE, THRESHOLDS, PredictorNetwork, save_weights,
    unstandardise_attributes,
)
from pti_lab.synthfaces.render import render

EVAL_SEED = 9100  # held-out renders: attributes 9100 (in-domain), 9101 (extras); verification 9102-9105
SEED_STRIDE = 10**7  # batch seeds of run `seed` are (seed + 1) * SEED_STRIDE + batch index

ATTRIBUTE_COLUMNS = [INDEX[name] for name in ATTRIBUTES]
IDENTITY_COLUMNS = [INDEX[name] for name in IDENTITY]
EXTRA_COLUMNS = [INDEX[name] for name in EXTRAS]
IDENTITY_MEAN = torch.tensor([FIELDS[i].mean for i in IDENTITY_COLUMNS])
IDENTITY_STD = torch.tensor([FIELDS[i].std for i in IDENTITY_COLUMNS])

# ----------------------------------------------------------------------------
# Training kit shared with train_clip: batches rendered in worker processes, devices, degradations.


def batch_seed(seed: int, index: int) -> int:
    return (seed + 1) * SEED_STRIDE + index


class RenderedBatches(torch.utils.data.IterableDataset):
    """Endless batches make_batch(seed, b) for b = 0, 1, 2, ...; worker w of W makes b = w, w + W, ...,
    which DataLoader hands out round-robin, so the order is the same for any number of workers."""

    def __init__(self, make_batch: Callable, seed: int):
        super().__init__()
        self.make_batch = make_batch
        self.seed = seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for index in itertools.count(worker, workers):
            yield self.make_batch(self.seed, index)


def batch_stream(make_batch: Callable, seed: int, workers: int, device: torch.device):
    """An iterator over make_batch(seed, 0), make_batch(seed, 1), ... rendered by `workers` processes."""
    loader = torch.utils.data.DataLoader(
        RenderedBatches(make_batch, seed), batch_size=None, num_workers=workers,
        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None)
    return iter(loader)


def pick_device(name: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' -> a device; on CUDA, cuDNN may pick the fastest kernels for the fixed batch shape."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    return device


def describe_device(device: torch.device) -> str:
    """E.g. 'cuda (NVIDIA H100 80GB HBM3)' or 'cpu (2 threads)', for reports and the manifest."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def ship(filename: str, out_dir: Path, module: str, argv: list, report: dict,
         built_from: Optional[dict] = None) -> None:
    """Record out_dir/filename in the package's weights and manifest with the command that rebuilt it
    (and the shipped files it was built from, {name: sha256})."""
    command = " ".join(["python -m", module] + [str(arg) for arg in argv])
    shipped.record(filename, out_dir / filename, command=command, seed=report["seed"],
                   minutes=round(report["seconds"] / 60, 2), device=report["device"], metrics=report["metrics"],
                   built_from=built_from)
    print(f"shipped {filename} -> {shipped.WEIGHTS_DIR / filename}")


def save_result(out_dir: Path, filename: str, kind: str, network: torch.nn.Module, seed: int, steps: int,
                images: int, seconds: float, device: torch.device, history: list, metrics: dict, **extra) -> dict:
    """Write the trained network as out_dir/filename and its report as out_dir/<kind>.json; return the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(out_dir / filename, kind, network)
    report = {"seed": seed, **extra, "steps": steps, "images": images, "seconds": round(seconds, 1),
              "device": describe_device(device), "first_loss": history[0], "last_loss": float(np.mean(history[-20:])),
              "metrics": metrics}
    write_text(out_dir / f"{kind}.json", json.dumps(report, indent=1) + "\n")
    return report


def training_arguments(parser: argparse.ArgumentParser, weights: str) -> None:
    """The command-line options every synthfaces training script shares."""
    parser.add_argument("--out", type=Path, required=True, help=f"output folder for {weights} and its report")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch seed")
    parser.add_argument("--minutes", type=float, default=45.0, help="wall-clock training time")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to train")
    parser.add_argument("--workers", type=int, default=None, help="render processes (default: cores - 1)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many steps; the lr schedule then runs over steps, not minutes")
    parser.add_argument("--ship", action="store_true", help=f"also record {weights} in the package's weights manifest")


def check_out_report_ship(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The one rule of the train-then-report scripts: --out trains and reports, --report only reports,
    --ship records; --out and --report exclude each other and one of the three is needed."""
    if args.out is not None and args.report is not None:
        parser.error("--out trains and then reports: give --out or --report, not both")
    if args.out is None and args.report is None and args.ship is None:
        parser.error("nothing to do: give --out DIR, --report DIR and/or --ship DIR")


def default_workers() -> int:
    """Render processes: every core but the one that drives the training loop (at least one)."""
    return max(1, (os.cpu_count() or 2) - 1)


def to_network_images(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [N, H, W, 3] renders -> float [N, 3, H, W] in [-1, 1] on `device`."""
    return pixels.to(device, non_blocking=True).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def degrade(images: torch.Tensor) -> torch.Tensor:
    """Random softening (half the images, by a random amount) and pixel noise (std up to 0.04)."""
    count = len(images)
    soft = F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="bilinear", align_corners=False)
    amount = torch.rand(count, 1, 1, 1, device=images.device) * (torch.rand(count, 1, 1, 1, device=images.device) < 0.5)
    noise = torch.randn_like(images) * 0.04 * torch.rand(count, 1, 1, 1, device=images.device)
    return images + amount * (soft - images) + noise


def cosine_lr(base: float, step: int, fraction: float, warmup: int = 200) -> float:
    """Linear warm-up over `warmup` steps, times a cosine to zero over the run's time fraction in [0, 1]."""
    return base * min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0)))


def autocast(device: torch.device):
    """bf16 autocast on CUDA (the loss terms are computed in float32), plain float32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


# ----------------------------------------------------------------------------
# Data and losses.


def identity_groups(groups: int, views: int, seed: int, extras_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """`groups` identities x `views` faces each: (params [groups * views, DIM], identity labels [groups * views]).
    Views of one identity share every identity field and differ in everything else; each view has
    random extras with probability `extras_fraction`."""
    params = sample_params(groups * views, seed, extras="random")
    first_view = np.repeat(np.arange(groups) * views, views)
    params[:, IDENTITY_COLUMNS] = params[first_view][:, IDENTITY_COLUMNS]
    plain = np.random.default_rng(seed).uniform(size=len(params)) >= extras_fraction
    params[np.ix_(plain, EXTRA_COLUMNS)] = 0.0
    return params, np.repeat(np.arange(groups), views)


def make_training_batch(groups: int, views: int) -> Callable:
    """make_batch(seed, b) for RenderedBatches: (uint8 renders [N, 64, 64, 3], params [N, DIM], labels [N])."""
    def make_batch(seed: int, index: int):
        params, labels = identity_groups(groups, views, batch_seed(seed, index))
        return torch.from_numpy(render(params, SIZE)), torch.from_numpy(params), torch.from_numpy(labels)
    return make_batch


def supervised_contrastive(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon: mean over anchors of -mean log p(positive | anchor), softmax over every other sample."""
    z = F.normalize(embeddings.float(), dim=1)
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    log_prob = (z @ z.T / temperature).masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    return -(log_prob.masked_fill(~positives, 0.0).sum(dim=1) / positives.sum(dim=1)).mean()


def predictor_losses(net: PredictorNetwork, images: torch.Tensor, params: torch.Tensor, labels: torch.Tensor,
                     temperature: float) -> dict:
    """The three loss terms of one batch (images already on the device and degraded)."""
    device = images.device
    with autocast(device):
        attributes, embeddings, traits = net(images)
    attribute_target = (params[:, ATTRIBUTE_COLUMNS] - ATTRIBUTE_MEAN.to(device)) / ATTRIBUTE_STD.to(device)
    trait_target = (params[:, IDENTITY_COLUMNS] - IDENTITY_MEAN.to(device)) / IDENTITY_STD.to(device)
    return {
        "identity": supervised_contrastive(embeddings, labels, temperature),
        "attributes": F.mse_loss(attributes.float(), attribute_target),
        "traits": F.mse_loss(traits.float(), trait_target),
    }


# ----------------------------------------------------------------------------
# Held-out evaluation.


@torch.no_grad()
def run_network(net: PredictorNetwork, params: np.ndarray, device: torch.device, chunk: int = 500):
    """Render `params` and return the network's (attributes in field units {name: [N]}, unit embeddings [N, D])."""
    attributes, embeddings = [], []
    for start in range(0, len(params), chunk):
        images = to_network_images(torch.from_numpy(render(params[start:start + chunk], SIZE)), device)
        with autocast(device):
            z, embedding, _ = net(images)
        attributes.append(z.float())
        embeddings.append(F.normalize(embedding.float(), dim=1))
    return unstandardise_attributes(torch.cat(attributes).cpu()), torch.cat(embeddings).cpu()


def roc_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve = P(positive score > negative score) (Mann-Whitney U from ranks)."""
    ranks = torch.cat([positive, negative]).double().argsort().argsort().double() + 1
    count_pos, count_neg = len(positive), len(negative)
    return ((ranks[:count_pos].sum() - count_pos * (count_pos + 1) / 2) / (count_pos * count_neg)).item()


def attribute_metrics(net: PredictorNetwork, seed: int, extras, count: int, device: torch.device) -> dict:
    """MAE (field units) and accuracy at THRESHOLDS of each attribute on `count` fresh renders."""
    params = sample_params(count, seed, extras=extras)
    predicted, _ = run_network(net, params, device)
    metrics = {}
    for name in ATTRIBUTES:
        truth = torch.from_numpy(params[:, INDEX[name]])
        metrics[f"{name}_mae"] = (predicted[name] - truth).abs().mean().item()
        metrics[f"{name}_acc"] = ((predicted[name] >= THRESHOLDS[name]) == (truth >= THRESHOLDS[name])).float().mean().item()
    return metrics


def verification_metrics(net: PredictorNetwork, seed: int, extras, count: int, device: torch.device) -> dict:
    """Identity verification on `count` identities. Positive pairs: the same identity fields, every other
    field (attributes, background, extras) re-drawn. auc: against every pair of different identities.
    auc_hard: against pairs that differ *only* in the identity fields. Also the mean cosines."""
    first = sample_params(count, seed, extras=extras)
    same = sample_params(count, seed + 1, extras=extras)
    same[:, IDENTITY_COLUMNS] = first[:, IDENTITY_COLUMNS]
    other = first.copy()
    other[:, IDENTITY_COLUMNS] = np.roll(first[:, IDENTITY_COLUMNS], 1, axis=0)
    _, embeddings = run_network(net, np.concatenate([first, same, other]), device)
    a, b, c = embeddings.split(count)
    cosines = a @ b.T                                            # [count, count]; the diagonal holds the positives
    positive = cosines.diagonal()
    negative = cosines[~torch.eye(count, dtype=torch.bool)]
    hard = (a * c).sum(dim=1)
    return {"auc": roc_auc(positive, negative), "auc_hard": roc_auc(positive, hard),
            "cos_same": positive.mean().item(), "cos_different": negative.mean().item(), "cos_hard": hard.mean().item()}


def evaluate(net: PredictorNetwork, device: torch.device, count: int = 1000) -> dict:
    """Every held-out number reported for the predictor, on fresh renders (seeds EVAL_SEED...)."""
    net.eval()
    metrics = {}
    for name, value in attribute_metrics(net, EVAL_SEED, False, count, device).items():
        metrics[f"indomain_{name}"] = value
    for name, value in attribute_metrics(net, EVAL_SEED + 1, "random", count, device).items():
        metrics[f"extras_{name}"] = value
    for name, value in verification_metrics(net, EVAL_SEED + 2, False, count // 2, device).items():
        metrics[f"indomain_verify_{name}"] = value
    for name, value in verification_metrics(net, EVAL_SEED + 4, "random", count // 2, device).items():
        metrics[f"extras_verify_{name}"] = value
    return {name: round(value, 4) for name, value in metrics.items()}


# ----------------------------------------------------------------------------


def train(
    out_dir: Path,                   # where predictor.pt and predictor.json are written
    seed: int = 0,                   # initialisation and batch seeds
    minutes: float = 45.0,           # wall-clock training time
    device: str = "auto",            # 'auto', 'cpu' or 'cuda'
    workers: Optional[int] = None,   # render processes; None = every core but one
    groups: Optional[int] = None,    # identities per batch; None = 128 on CUDA, 32 on the CPU
    views: int = 4,                  # renders per identity in a batch
    lr: float = 2e-3,                # AdamW peak learning rate
    temperature: float = 0.1,        # SupCon temperature
    eval_count: int = 1000,          # held-out renders per attribute evaluation
    max_steps: Optional[int] = None, # stop after this many steps; the lr schedule then runs over steps
    log_every: float = 30.0,         # seconds between progress lines
) -> dict:
    device = pick_device(device)
    torch.manual_seed(seed)
    groups = groups or (128 if device.type == "cuda" else 32)
    net = PredictorNetwork().to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    batches = batch_stream(make_training_batch(groups, views), seed, default_workers() if workers is None else workers, device)
    budget = minutes * 60.0
    start = last_log = time.perf_counter()
    step, history = 0, []
    while (max_steps is None or step < max_steps) and (elapsed := time.perf_counter() - start) < budget:
        pixels, params, labels = next(batches)
        images = degrade(to_network_images(pixels, device)).contiguous(memory_format=torch.channels_last)
        losses = predictor_losses(net, images, params.to(device), labels.to(device), temperature)
        loss = losses["identity"] + losses["attributes"] + 0.5 * losses["traits"]
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(lr, step, step / max_steps if max_steps else elapsed / budget)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        step += 1
        if time.perf_counter() - last_log > log_every:
            last_log = time.perf_counter()
            rate = step * len(labels) / (last_log - start)
            terms = " ".join(f"{name} {value.item():.4f}" for name, value in losses.items())
            print(f"step {step} {last_log - start:.0f}s {rate:.0f} img/s loss {loss.item():.4f} ({terms})", flush=True)
    seconds = time.perf_counter() - start
    del batches  # stops the render workers before the evaluation renders
    return save_result(out_dir, PREDICTOR_FILE, "predictor", net, seed, step, step * groups * views, seconds, device,
                       history, evaluate(net, device, eval_count))


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.train.synthfaces_predictor", description=__doc__.split("\n")[0])
    training_arguments(parser, PREDICTOR_FILE)
    parser.add_argument("--groups", type=int, default=None, help="identities per batch (default: 128 CUDA, 32 CPU)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    keep_freed_memory()
    report = train(args.out, args.seed, args.minutes, args.device, args.workers, args.groups, max_steps=args.max_steps)
    print(json.dumps(report, indent=1))
    if args.ship:
        ship(PREDICTOR_FILE, args.out, "pti_lab.train.synthfaces_predictor", argv, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the tiny synthfaces CLIP on renders captioned from their parameters.

    python -m pti_lab.train.synthfaces_clip --out DIR --seed 0 --minutes 45 [--device cpu|cuda]

writes DIR/clip.pt (fp16 weights + vocabulary, loaded by pti_lab.synthfaces.tiny_clip.load_clip) and
DIR/clip.json (held-out metrics, steps, seconds). Training stops after --minutes of wall time.

Captions come from the grammar of pti_lab.synthfaces.captions; its vocabulary is stored with the
weights.

Half of the training renders carry random extras (the text side has to see glasses to name
them); the generator is never trained on these. A share of each batch (--pair-fraction) is made of
contrast pairs: one face twice, differing in one property only (CONTRASTS, or an extra on/off),
both captions naming it, every other choice of the two captions the same. A training-only linear
head (--params-weight) also regresses the attributes and extra flags from the image features.
Trained by InfoNCE alone (--pair-fraction 0 --params-weight 0; 5.5 min on an H100), the loss
learns the easy facts (backdrop, hair, extras): the image features keep no trace of a smile or
wrinkles (linear-probe R^2 ~ 0) and "a smiling face" and "a face that is not smiling" get nearly
the same text embedding (cosine 0.993).
The image tower starts from the attribute/identity predictor's encoder (--image-init, default the
shipped predictor.pt; `none` starts from random weights), the recipe of locked-image tuning (LiT)
without the lock: trained by InfoNCE from random weights, even with the pairs and the params head,
the image features of a face smiling and not smiling stay at cosine 0.995 after 47 k images; from
the predictor's encoder the smile prompt pair reaches 0.95 in 3 CPU minutes.
--init fine-tunes an existing clip.pt instead (its vocabulary is kept). Batch b uses sampler seed
(seed + 1) * 10**7 + b; the held-out evaluation uses seeds 9200-9299.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from pti_lab.errors import BadInputError
from pti_lab.runtime import keep_freed_memory
from pti_lab.synthfaces import shipped
from pti_lab.synthfaces.captions import PROMPT_PAIRS, captions_of, vocabulary
from pti_lab.synthfaces.tiny_clip import CLIP_FILE, Tokenizer, TinyCLIP, load_clip
from pti_lab.synthfaces.params import (
    ATTRIBUTES, EXTRA_FLAGS, EXTRA_STYLES, FIELDS, INDEX, sample_params,
)
from pti_lab.synthfaces.predictor import PREDICTOR_FILE, SIZE, load_predictor
from pti_lab.synthfaces.render import render
from pti_lab.train.synthfaces_predictor import (
    autocast, batch_seed, batch_stream, cosine_lr, default_workers, degrade, identity_groups, pick_device,
    save_result, ship, to_network_images, training_arguments,
)
from pti_lab.weights import sha256_of

EVAL_SEED = 9200

# The property contrasts of training pairs: field -> ((range named positively), (range named negatively));
# extras are switched on (random style) and off.
CONTRASTS = {
    "smile": ((0.4, 1.0), (-1.0, 0.1)),
    "mouth_open": ((0.6, 1.0), (0.0, 0.3)),
    "eyes_open": ((0.0, 0.06), (0.3, 1.0)),
    "wrinkles": ((0.6, 1.0), (0.0, 0.2)),
    "grey_hair": ((0.65, 1.0), (0.0, 0.25)),
    "yaw": ((0.45, 1.0), (-1.0, -0.45)),
}
CONTRAST_TOPICS = tuple(CONTRASTS) + EXTRA_FLAGS
PARAMS_COLUMNS = [INDEX[name] for name in ATTRIBUTES + EXTRA_FLAGS]  # regressed by the training-only params head
PARAMS_MEAN = torch.tensor([FIELDS[i].mean for i in PARAMS_COLUMNS])
PARAMS_STD = torch.tensor([FIELDS[i].std for i in PARAMS_COLUMNS])


# ----------------------------------------------------------------------------
# Training.


def contrast_pairs(params: np.ndarray, pairs: int, rng: np.random.Generator) -> list:
    """Turn rows (0, 1), (2, 3), ... of `params` (in place) into `pairs` pairs of one face that differ in
    one property only, drawn from CONTRASTS; returns each row's contrasted topic (None past the pairs)."""
    topics = [CONTRAST_TOPICS[i] for i in rng.integers(len(CONTRAST_TOPICS), size=pairs)]
    for i, topic in enumerate(topics):
        first, second = params[2 * i], params[2 * i + 1]
        second[:] = first
        if topic in EXTRA_FLAGS:  # on with random styles / off
            styles = [INDEX[name] for name in EXTRA_STYLES[topic]]
            first[INDEX[topic]], first[styles] = 1.0, rng.uniform(size=len(styles))
            second[INDEX[topic]], second[styles] = 0.0, 0.0
        else:
            (low_on, high_on), (low_off, high_off) = CONTRASTS[topic]
            first[INDEX[topic]], second[INDEX[topic]] = rng.uniform(low_on, high_on), rng.uniform(low_off, high_off)
    return [topic for topic in topics for _ in range(2)] + [None] * (len(params) - 2 * pairs)


def make_training_batch(count: int, pair_fraction: float, vocabulary_words: list, max_tokens: int) -> Callable:
    """make_batch(seed, b) for RenderedBatches: (uint8 renders [count, 64, 64, 3], token ids [count, T],
    params [count, DIM]).
    Independent faces (half with random extras), of which a `pair_fraction` of the rows are turned
    into contrast pairs whose captions both name the contrasted property: only that property tells
    the two apart, so the loss cannot ignore subtle ones (a smile, wrinkles) in favour of easy ones
    (the backdrop colour), as it does with independent faces alone."""
    tokenizer = Tokenizer(vocabulary_words, max_tokens)

    def make_batch(seed: int, index: int):
        seed = batch_seed(seed, index)
        params, _ = identity_groups(count, 1, seed)  # one view per identity: independent faces
        pairs = int(count * pair_fraction) // 2
        required = contrast_pairs(params, pairs, np.random.default_rng([seed, 1]))
        keys = [i // 2 for i in range(2 * pairs)] + list(range(pairs, count - pairs))  # a pair shares its draws
        texts = captions_of(params, seed, required=required, keys=keys)
        return torch.from_numpy(render(params, SIZE)), tokenizer.encode(texts), torch.from_numpy(params)
    return make_batch


def clip_losses(model: TinyCLIP, params_head: torch.nn.Linear, images: torch.Tensor, ids: torch.Tensor,
                params: torch.Tensor) -> dict:
    """contrastive: symmetric InfoNCE; identical captions in a batch (short ones repeat) all count as
    matches, so the loss does not push apart images that the same text describes. params: MSE of
    the standardised attributes and extra flags regressed from the image features by `params_head`
    (training only): it keeps subtle properties (a smile, wrinkles) in the image features, which the
    contrastive loss alone lets fade while easier facts explain the captions."""
    with autocast(images.device):
        features = model.image_encoder(images)
        image_e, text_e = model.image_projection(features), model.text_embeddings(ids)
        predicted = params_head(features)
    image_e, text_e = F.normalize(image_e.float(), dim=1), F.normalize(text_e.float(), dim=1)
    logits = model.log_scale.exp().clamp(max=100.0) * image_e @ text_e.T        # [images, texts]
    same = (ids[:, None, :] == ids[None, :, :]).all(dim=2).float()
    targets = same / same.sum(dim=1, keepdim=True)
    contrastive = -((targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
                    + (targets * logits.T.log_softmax(dim=1)).sum(dim=1).mean()) / 2
    target = (params[:, PARAMS_COLUMNS] - PARAMS_MEAN.to(params)) / PARAMS_STD.to(params)
    return {"contrastive": contrastive, "params": F.mse_loss(predicted.float(), target)}


# ----------------------------------------------------------------------------
# Held-out evaluation.


@torch.no_grad()
def embed_renders(model: TinyCLIP, params: np.ndarray, chunk: int = 500) -> torch.Tensor:
    """Render `params` and return their unit image embeddings [N, D] on the CPU."""
    embeddings = []
    for start in range(0, len(params), chunk):
        images = to_network_images(torch.from_numpy(render(params[start:start + chunk], SIZE)), model.device)
        with autocast(model.device):
            embeddings.append(F.normalize(model.image_embeddings(images).float(), dim=1).cpu())
    return torch.cat(embeddings)


@torch.no_grad()
def retrieval_metrics(model: TinyCLIP, seed: int, count: int = 100) -> dict:
    """Text -> image retrieval among `count` fresh renders (half with extras): is a face's full
    description closest to that face (top-1) or among the 5 closest (top-5)?"""
    params, _ = identity_groups(count, 1, seed)
    texts = captions_of(params, seed, full=True)
    cosines = model.encode_text(texts).cpu() @ embed_renders(model, params).T   # [texts, images]
    rank = (cosines > cosines.diagonal()[:, None]).sum(dim=1)               # images closer than the right one
    return {"top1": (rank == 0).float().mean().item(), "top5": (rank < 5).float().mean().item()}


@torch.no_grad()
def prompt_metrics(model: TinyCLIP, seed: int, count: int = 200) -> dict:
    """For each PROMPT_PAIRS entry, over `count` faces rendered with the property on and the same faces
    with it off: acc, the fraction of renders ranking the right prompt of the pair first; paired, the
    fraction of faces where switching the property on moves the score toward the positive prompt
    (what a StyleCLIP edit direction needs)."""
    base = sample_params(count, seed)
    metrics = {}
    for positive, negative, field, yes, no in PROMPT_PAIRS:
        if field in EXTRA_FLAGS:  # same faces, the extra switched on (random style) or off
            on, off = sample_params(count, seed, extras={field: yes}), base
        else:
            on, off = base.copy(), base.copy()
            on[:, INDEX[field]], off[:, INDEX[field]] = yes, no
        cosines = embed_renders(model, np.concatenate([on, off])) @ model.encode_text([positive, negative]).cpu().T
        margin = cosines[:, 0] - cosines[:, 1]
        metrics[f"prompt_{field}_acc"] = torch.cat([margin[:count] > 0, margin[count:] < 0]).float().mean().item()
        metrics[f"prompt_{field}_paired"] = (margin[:count] > margin[count:]).float().mean().item()
    return metrics


def evaluate(model: TinyCLIP, sets: int = 10, faces: int = 200) -> dict:
    """Retrieval averaged over `sets` sets of 100 faces (seeds EVAL_SEED...), and the prompt pairs on
    `faces` faces each."""
    model.eval()
    runs = [retrieval_metrics(model, EVAL_SEED + i) for i in range(sets)]
    metrics = {f"retrieval_{key}": float(np.mean([run[key] for run in runs])) for key in runs[0]}
    metrics.update(prompt_metrics(model, EVAL_SEED + 50, faces))
    for kind in ("acc", "paired"):
        metrics[f"prompt_mean_{kind}"] = float(np.mean([value for key, value in metrics.items()
                                                       if key.startswith("prompt_") and key.endswith(kind)]))
    return {name: round(value, 4) for name, value in metrics.items()}


def start_image_tower(model: TinyCLIP, image_init: str) -> str:
    """Copy the encoder of predictor weights `image_init` ('predictor': the shipped predictor.pt) into
    the image tower; returns the file's sha256, for the report."""
    path = shipped.path_of(PREDICTOR_FILE) if image_init == "predictor" else Path(image_init)
    encoder = load_predictor(str(path)).encoder
    try:
        model.image_encoder.load_state_dict(encoder.state_dict())
    except RuntimeError as exc:
        raise BadInputError(f"{path}: the predictor's encoder does not fit the image tower "
                            f"({str(exc).splitlines()[0]})") from None
    return sha256_of(path)


# ----------------------------------------------------------------------------


def train(
    out_dir: Path,                   # where clip.pt and clip.json are written
    seed: int = 0,                   # initialisation and batch seeds
    minutes: float = 45.0,           # wall-clock training time
    device: str = "auto",            # 'auto', 'cpu' or 'cuda'
    workers: Optional[int] = None,   # render processes; None = every core but one
    batch: Optional[int] = None,     # renders per batch; None = 512 on CUDA, 128 on the CPU
    pair_fraction: float = 0.5,      # share of each batch made of one-property contrast pairs
    params_weight: float = 1.0,      # weight of the params-head regression loss
    lr: float = 1e-3,                # AdamW peak learning rate
    warmup: int = 200,               # learning-rate warm-up steps
    init: Optional[Path] = None,     # clip.pt to fine-tune instead of starting from scratch
    image_init: Optional[str] = "predictor",  # predictor weights whose encoder starts the image tower
                                              # ('predictor': the shipped file, None: random; not with init)
    eval_sets: int = 10,             # retrieval sets of 100 held-out faces
    eval_faces: int = 200,           # held-out faces per prompt pair
    max_steps: Optional[int] = None, # stop after this many steps; the lr schedule then runs over steps
    log_every: float = 30.0,         # seconds between progress lines
) -> dict:
    device = pick_device(device)
    torch.manual_seed(seed)
    batch = batch or (512 if device.type == "cuda" else 128)
    if init:
        model, image_init_sha256 = load_clip(str(init)).train().requires_grad_(True), None
    else:
        model = TinyCLIP(vocabulary())
        image_init_sha256 = start_image_tower(model, image_init) if image_init else None
    model.to(device).image_encoder.to(memory_format=torch.channels_last)
    params_head = torch.nn.Linear(model.config["feature_dim"], len(PARAMS_COLUMNS)).to(device)
    optimizer = torch.optim.AdamW([*model.parameters(), *params_head.parameters()], lr=lr, weight_decay=1e-4)
    make_batch = make_training_batch(batch, pair_fraction, model.tokenizer.vocabulary, model.tokenizer.max_tokens)
    batches = batch_stream(make_batch, seed, default_workers() if workers is None else workers, device)
    budget = minutes * 60.0
    start = last_log = time.perf_counter()
    step, history = 0, []
    while (max_steps is None or step < max_steps) and (elapsed := time.perf_counter() - start) < budget:
        pixels, ids, params = next(batches)
        images = degrade(to_network_images(pixels, device)).contiguous(memory_format=torch.channels_last)
        losses = clip_losses(model, params_head, images, ids.to(device), params.to(device))
        loss = losses["contrastive"] + params_weight * losses["params"]
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(lr, step, step / max_steps if max_steps else elapsed / budget, warmup)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        step += 1
        if time.perf_counter() - last_log > log_every:
            last_log = time.perf_counter()
            rate = step * batch / (last_log - start)
            print(f"step {step} {last_log - start:.0f}s {rate:.0f} img/s loss {loss.item():.4f} "
                  f"(contrastive {losses['contrastive'].item():.4f} params {losses['params'].item():.4f}) temperature {1 / model.log_scale.exp().item():.4f}", flush=True)
    seconds = time.perf_counter() - start
    del batches  # stops the render workers before the evaluation renders
    return save_result(out_dir, CLIP_FILE, "clip", model, seed, step, step * batch, seconds, device, history,
                       evaluate(model, eval_sets, eval_faces), init=str(init) if init else None,
                       image_init=None if init else image_init, image_init_sha256=image_init_sha256)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.train.synthfaces_clip", description=__doc__.split("\n")[0])
    training_arguments(parser, CLIP_FILE)
    parser.add_argument("--batch", type=int, default=None, help="renders per batch (default: 512 CUDA, 128 CPU)")
    parser.add_argument("--pair-fraction", type=float, default=0.5, help="share of each batch in contrast pairs")
    parser.add_argument("--params-weight", type=float, default=1.0, help="weight of the params-head loss")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=200, help="learning-rate warm-up steps")
    parser.add_argument("--init", type=Path, default=None, help="clip.pt to fine-tune instead of training from scratch")
    parser.add_argument("--image-init", default="predictor",
                        help="predictor.pt whose encoder starts the image tower: 'predictor' (the shipped one), a path, or 'none'")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    keep_freed_memory()
    report = train(args.out, args.seed, args.minutes, args.device, args.workers, args.batch, args.pair_fraction,
                   args.params_weight, args.lr, args.warmup, args.init,
                   None if args.image_init == "none" else args.image_init, max_steps=args.max_steps)
    print(json.dumps(report, indent=1))
    if args.ship:
        built_from = {PREDICTOR_FILE: report["image_init_sha256"]} if report["image_init"] == "predictor" else None
        ship(CLIP_FILE, args.out, "pti_lab.train.synthfaces_clip", argv, report, built_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())

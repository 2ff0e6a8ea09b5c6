"""Fit InterfaceGAN boundaries the InterfaceGAN way, and (optionally) ship them for synthfaces.

    python -m pti_lab.train.fit_boundaries [--generator CKPT] [--samples 10000] [--ratio 0.05]
                                             [--out boundaries.pt] [--ship]

1. sample `samples` z ~ N(0, I) (seeded), map them to w and render G(w) (noise 'const');
2. score every render with the attribute predictor (pti_lab.metrics.edit_scores.attribute_scores);
3. per attribute keep the `ratio` highest- and lowest-scoring latents (InterfaceGAN's
   chosen_num_or_ratio), split them 70 / 30 into training and validation sets;
4. fit a linear SVM (sklearn SVC, linear kernel, as InterfaceGAN's train_boundary) on w;
   the boundary is its unit normal, oriented so that + means more of the attribute.

Reported per attribute: validation accuracy, and the measured effect of the edit on fresh samples
(mean predictor change for ws +- 2 n). `--ship` writes the file into pti_lab/synthfaces/weights and
records it in the manifest with this command, the seed and these numbers.
"""

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pti_lab.atomic import save_torch
from pti_lab.editing.directions import BOUNDARIES_FILE, BOUNDARIES_KIND
from pti_lab.errors import MissingExtraError
from pti_lab.extras import require
from pti_lab.metrics.edit_scores import attribute_scores
from pti_lab.generators import make_generator
from pti_lab.models.fingerprint import generator_fingerprint
from pti_lab.models.stylegan2 import Generator
from pti_lab.runtime import keep_freed_memory
from pti_lab.synthfaces import shipped
from pti_lab.synthfaces.predictor import PREDICTOR_FILE, AttributePredictor

log = logging.getLogger(__name__)

CHECK_SAMPLES = 256   # fresh samples behind each edit-effect number
CHECK_STRENGTH = 2.0  # strength of the edit-effect check
FEATURE = "pti_lab.train.fit_boundaries"  # what a missing scikit-learn is reported for


def sample_and_score(G: Generator, scorer, count: int, seed: int, batch: int = 250) -> tuple[np.ndarray, dict]:
    """w [count, w_dim] of seeded z and the scores {attribute: [count]} of their renders."""
    device = next(G.parameters()).device
    rng = np.random.RandomState(seed)
    latents, scores = [], {}
    for start in range(0, count, batch):
        z = torch.from_numpy(rng.randn(min(batch, count - start), G.z_dim)).float().to(device)
        with torch.no_grad():
            ws = G.mapping(z, None, skip_w_avg_update=True)          # [n, num_ws, w_dim]
            images = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
        latents.append(ws[:, 0].cpu().numpy())
        for name, values in attribute_scores(scorer, images).items():
            scores.setdefault(name, []).append(values.numpy())
    return np.concatenate(latents), {name: np.concatenate(values) for name, values in scores.items()}


def fit_boundary(latents: np.ndarray, scores: np.ndarray, ratio: float, seed: int,
                 split: float = 0.7) -> tuple[np.ndarray, float]:
    """InterfaceGAN's train_boundary: (unit normal [w_dim], validation accuracy)."""
    svm = require("sklearn.svm", FEATURE)

    chosen = int(len(scores) * ratio)
    order = np.argsort(scores)[::-1]
    positive, negative = latents[order[:chosen]], latents[order[-chosen:]]
    rng = np.random.RandomState(seed)
    positive, negative = positive[rng.permutation(chosen)], negative[rng.permutation(chosen)]
    train = int(chosen * split)
    x_train = np.concatenate([positive[:train], negative[:train]])
    y_train = np.concatenate([np.ones(train), np.zeros(train)])
    x_val = np.concatenate([positive[train:], negative[train:]])
    y_val = np.concatenate([np.ones(chosen - train), np.zeros(chosen - train)])
    classifier = svm.SVC(kernel="linear").fit(x_train, y_train)
    accuracy = float((classifier.predict(x_val) == y_val).mean())
    normal = classifier.coef_.reshape(-1).astype(np.float32)
    return normal / np.linalg.norm(normal), accuracy


def edit_effect(G: Generator, scorer, boundary: torch.Tensor, name: str, seed: int) -> float:
    """Mean change of attribute `name` from ws - s n to ws + s n (s = CHECK_STRENGTH), on fresh samples."""
    device = next(G.parameters()).device
    z = torch.from_numpy(np.random.RandomState(seed).randn(CHECK_SAMPLES, G.z_dim)).float().to(device)
    with torch.no_grad():
        ws = G.mapping(z, None, skip_w_avg_update=True)
        step = CHECK_STRENGTH * boundary.to(device)
        plus = attribute_scores(scorer, G.synthesis(ws + step, noise_mode="const").clamp(-1, 1))[name]
        minus = attribute_scores(scorer, G.synthesis(ws - step, noise_mode="const").clamp(-1, 1))[name]
    return float((plus - minus).mean())


def fit_all(G: Generator, scorer, samples: int, ratio: float, seed: int) -> tuple[dict, dict]:
    """Boundaries {attribute: [w_dim]} of every scored attribute and their metrics."""
    start = time.perf_counter()
    latents, scores = sample_and_score(G, scorer, samples, seed)
    boundaries, metrics = {}, {"samples": samples, "ratio": ratio}
    for name in sorted(scores):
        normal, accuracy = fit_boundary(latents, scores[name], ratio, seed)
        boundaries[name] = torch.from_numpy(normal)
        metrics[f"{name}_val_accuracy"] = round(accuracy, 4)
        metrics[f"{name}_effect_pm2"] = round(edit_effect(G, scorer, boundaries[name], name, seed + 1), 4)
        log.info("%s: validation accuracy %.3f, effect of -+%g: %+.3f", name, accuracy, CHECK_STRENGTH,
                 metrics[f"{name}_effect_pm2"])
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    return boundaries, metrics


def save_boundaries(path: Path, boundaries: dict, G: Generator, metrics: dict) -> None:
    save_torch({"kind": BOUNDARIES_KIND, "generator_fingerprint": generator_fingerprint(G),
                "boundaries": boundaries, "metrics": metrics}, path)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.train.fit_boundaries", description=__doc__.split("\n")[0])
    parser.add_argument("--generator", default=None, help="checkpoint (default: shipped synthfaces generator)")
    parser.add_argument("--predictor", default=None, help="predictor.pt (default: shipped synthfaces predictor)")
    parser.add_argument("--samples", type=int, default=10_000, help="sampled latents")
    parser.add_argument("--ratio", type=float, default=0.05, help="share of highest and of lowest scores kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs") / BOUNDARIES_FILE)
    parser.add_argument("--ship", action="store_true", help="also ship the file in pti_lab/synthfaces/weights")
    args = parser.parse_args(argv)
    try:
        require("sklearn.svm", FEATURE)  # now, not after minutes of sampling
    except MissingExtraError as exc:
        raise SystemExit(f"error: {exc}") from None
    keep_freed_memory()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not 0 < args.ratio <= 0.5 or args.samples * args.ratio < 10:
        parser.error("need 0 < --ratio <= 0.5 and at least 10 latents per side (--samples x --ratio)")
    G = make_generator(args.generator).float().eval()
    scorer = AttributePredictor(args.predictor)
    boundaries, metrics = fit_all(G, scorer, args.samples, args.ratio, args.seed)
    save_boundaries(args.out, boundaries, G, metrics)
    print(f"wrote {args.out}: {', '.join(boundaries)}")
    for key, value in metrics.items():
        print(f"  {key}: {value}")
    if args.ship:
        command = " ".join(["python -m pti_lab.train.fit_boundaries", *(argv if argv is not None else sys.argv[1:])])
        files = shipped.read_manifest()["files"]
        built_from = {name: files[name]["sha256"] for name, given in
                      ((shipped.GENERATOR_FILE, args.generator), (PREDICTOR_FILE, args.predictor)) if given is None}
        shipped.record(BOUNDARIES_FILE, args.out, command=command, seed=args.seed,
                       minutes=round(metrics["seconds"] / 60, 1), device="cpu", metrics=metrics, built_from=built_from)
        print(f"shipped -> {shipped.WEIGHTS_DIR / BOUNDARIES_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

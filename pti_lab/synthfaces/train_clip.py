"""Train the tiny synthfaces CLIP on renders captioned from their parameters.

    python -m pti_lab.synthfaces.train_clip --out DIR --seed 0 --minutes 45 [--device cpu|cuda]

writes DIR/clip.pt (fp16 weights + vocabulary, loaded by pti_lab.synthfaces.clip.load_clip) and
DIR/clip.json (held-out metrics, steps, seconds). Training stops after --minutes of wall time.

Captions come from a small grammar over the parameters (`facts`, `caption`): every clearly visible
property gives a fact with a few phrasings (an adjective before the noun, or a phrase after it),
e.g. "a smiling grey-haired man with glasses, wearing a red beanie and on a blue background".
Attributes (smile, open mouth, closed eyes, wrinkles, grey hair, age, head turn), identity cues
(hair style and colour, beard, eye colour, skin) and the extras (glasses, hats, face paint,
make-up, earrings) are all named, and each caption keeps a random subset of the facts, so short
prompts such as "a smiling face" or "a face with glasses" are in the training distribution.
Properties in the middle of their range are not named; negatives ("that is not smiling",
"without glasses") are, so that contrasting prompts work. The vocabulary is every word the
grammar can produce; it is stored with the weights.

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
from pti_lab.synthfaces import weights as shipped
from pti_lab.synthfaces.clip import CLIP_FILE, Tokenizer, TinyCLIP, load_clip
from pti_lab.synthfaces.params import (
    ATTRIBUTES, EXTRA_FLAGS, EXTRA_STYLES, FIELDS, HAIR_STYLES, INDEX, NAMES, hair_style_of, sample_params,
)
from pti_lab.synthfaces.predictor import PREDICTOR_FILE, SIZE, load_predictor
from pti_lab.synthfaces.render import render
from pti_lab.synthfaces.train_predictor import (
    autocast, batch_seed, batch_stream, cosine_lr, default_workers, degrade, identity_groups, pick_device,
    save_result, ship, to_network_images, training_arguments,
)
from pti_lab.weights import sha256_of

EVAL_SEED = 9200

# Names of the renderer's palettes (render.py), anchor by anchor, and of hues.
HAIR_COLOURS = ("black", "dark brown", "brown", "auburn", "blonde", "platinum")
EYE_COLOURS = ("dark brown", "brown", "hazel", "green", "blue", "grey")
FRAME_COLOURS = ("black", "tortoiseshell", "gold", "red", "blue")
JEWEL_COLOURS = ("gold", "silver", "copper", "red", "turquoise")
HAT_KINDS = ("beanie", "wide-brimmed hat", "cap")
PAINT_KINDS = ("painted stripes", "a painted mask", "half-face paint")
HAIR_STYLE_WORDS = dict(zip(HAIR_STYLES, ("buzzed", "short", "bobbed", "long", "curly")))
HUE_NAMES = ((0.04, "red"), (0.11, "orange"), (0.2, "yellow"), (0.45, "green"), (0.55, "teal"),
             (0.72, "blue"), (0.82, "purple"), (0.93, "pink"), (1.01, "red"))  # (hue below which, name)
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
TOPICS = ("smile", "mouth_open", "eyes_open", "wrinkles", "grey_hair", "age", "yaw", "hair", "beard", "eye_colour",
          "skin", "background", "shirt") + EXTRA_FLAGS  # what a fact can be about (see `facts`)
NEGATIVE_KEEP = 0.3  # negatives ("without glasses") are true of most faces: name them less often

# (positive prompt, negative prompt, field, value where the positive is true, where the negative is)
PROMPT_PAIRS = (
    ("a smiling face", "a face that is not smiling", "smile", 0.8, -0.3),
    ("a face with an open mouth", "a face with a closed mouth", "mouth_open", 0.95, 0.1),
    ("a face with closed eyes", "a face with open eyes", "eyes_open", 0.0, 0.7),
    ("a face with wrinkles", "a face without wrinkles", "wrinkles", 0.9, 0.1),
    ("a face with grey hair", "a face without grey hair", "grey_hair", 0.9, 0.1),
    ("a face that is turned to the left", "a face that is turned to the right", "yaw", -0.8, 0.8),
    ("a face with glasses", "a face without glasses", "glasses", 1.0, 0.0),
    ("a face wearing a hat", "a face without a hat", "hat", 1.0, 0.0),
    ("a face with face paint", "a face without face paint", "face_paint", 1.0, 0.0),
    ("a face with heavy make-up", "a face without make-up", "makeup", 1.0, 0.0),
    ("a face wearing earrings", "a face without earrings", "earrings", 1.0, 0.0),
)

# ----------------------------------------------------------------------------
# The caption grammar.


def hue_name(hue: float) -> str:
    return next(name for below, name in HUE_NAMES if hue < below)


def nearest(value: float, names: tuple) -> str:
    """The name of the palette anchor nearest to `value` (anchors evenly spread over [0, 1])."""
    return names[int(round(value * (len(names) - 1)))]


def sliced(value: float, names: tuple) -> str:
    """The name of the equal slice of [0, 1] holding `value` (the renderer's `pick`)."""
    return names[min(int(value * len(names)), len(names) - 1)]


def article(phrase: str) -> str:
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def facts(row: dict, hair_style: str) -> list:
    """Every visible property of one face as (topic, keep weight, forms): the topic is the field it
    is about ('smile', 'glasses', ... or 'hair', 'background', ...); a form is ('adj' | 'post', text)."""
    found = []

    def fact(topic, *forms, weight=1.0):
        found.append((topic, weight, forms))

    smile, grey, wrinkles, yaw = row["smile"], row["grey_hair"], row["wrinkles"], row["yaw"]
    # Attributes.
    if smile >= 0.4:
        fact("smile", ("adj", "smiling"), ("post", "with a smile"), ("post", "that is smiling"))
    elif smile <= -0.4:
        fact("smile", ("adj", "frowning"), ("post", "with a frown"), ("post", "that is frowning"), ("post", "that is not smiling"))
    elif smile <= 0.1:
        fact("smile", ("adj", "unsmiling"), ("post", "with a neutral expression"), ("post", "that is not smiling"))
    if row["mouth_open"] >= 0.6:
        fact("mouth_open", ("adj", "open-mouthed"), ("post", "with an open mouth"))
    elif row["mouth_open"] <= 0.3:
        fact("mouth_open", ("post", "with a closed mouth"))
    if row["eyes_open"] <= 0.06:
        fact("eyes_open", ("post", "with closed eyes"), ("post", "with eyes closed"))
    elif row["eyes_open"] >= 0.3:
        fact("eyes_open", ("post", "with open eyes"))
    if wrinkles >= 0.6:
        fact("wrinkles", ("adj", "wrinkled"), ("post", "with wrinkles"))
    elif wrinkles <= 0.2:
        fact("wrinkles", ("post", "without wrinkles"), ("post", "with smooth skin"))
    if grey >= 0.65:
        fact("grey_hair", ("adj", "grey-haired"), ("post", "with grey hair"))
    elif grey <= 0.25:
        fact("grey_hair", ("post", "without grey hair"))
    if wrinkles >= 0.55 and grey >= 0.55:
        fact("age", ("adj", "old"), ("adj", "elderly"))
    elif wrinkles <= 0.3 and grey <= 0.3:
        fact("age", ("adj", "young"))
    if yaw >= 0.45:
        fact("yaw", ("post", "that is turned to the right"), ("post", "facing right"))
    elif yaw <= -0.45:
        fact("yaw", ("post", "that is turned to the left"), ("post", "facing left"))
    elif abs(yaw) <= 0.15:
        fact("yaw", ("adj", "frontal"), ("post", "facing the camera"))
    # Identity cues.
    colour = "grey" if grey >= 0.65 else nearest(row["hair_colour"], HAIR_COLOURS) if grey <= 0.3 else None
    style = HAIR_STYLE_WORDS[hair_style] if row["hat"] < 0.5 else None  # a hat hides the hair style
    if colour and style:
        fact("hair", ("post", f"with {style} {colour} hair"), ("post", f"with {colour} hair"), ("post", f"with {style} hair"))
    elif colour or style:
        fact("hair", ("post", f"with {colour or style} hair"))
    if row["beard"] >= 0.75:
        fact("beard", ("adj", "bearded"), ("post", "with a beard"))
    elif row["beard"] >= 0.6:
        fact("beard", ("post", "with stubble"))
    elif row["beard"] <= 0.5:
        fact("beard", ("adj", "clean-shaven"), ("post", "without a beard"), weight=NEGATIVE_KEEP)
    if row["eyes_open"] >= 0.3 and row["glasses_tint"] < 0.6:
        fact("eye_colour", ("post", f"with {nearest(row['eye_colour'], EYE_COLOURS)} eyes"))
    if row["skin_tone"] <= 0.2:
        fact("skin", ("post", "with light skin"))
    elif row["skin_tone"] >= 0.75:
        fact("skin", ("post", "with dark skin"))
    # Background and shirt.
    backdrop = "grey" if row["bg_saturation"] < 0.3 else "dark" if row["bg_lightness"] < 0.2 else hue_name(row["bg_hue"])
    fact("background", ("post", f"on {article(backdrop)} background"), ("post", f"in front of {article(backdrop)} background"))
    fact("shirt", ("post", f"wearing {article(hue_name(row['shirt_hue']))} shirt"), weight=0.5)
    # Extras.
    if row["glasses"] >= 0.5:
        kind = "sunglasses" if row["glasses_tint"] >= 0.6 else "glasses"
        shape = "round" if row["glasses_style"] < 0.35 else "rectangular" if row["glasses_style"] > 0.65 else None
        frame = sliced(row["glasses_colour"], FRAME_COLOURS)
        fact("glasses", ("post", f"with {kind}"), ("post", f"wearing {kind}"), ("post", f"with {frame} {kind}"),
             *((("post", f"wearing {shape} {kind}"),) if shape else ()))
    else:
        fact("glasses", ("post", "without glasses"), weight=NEGATIVE_KEEP)
    if row["hat"] >= 0.5:
        kind = HAT_KINDS[min(int(row["hat_style"] * 3), 2)]
        hat_colour = "dark" if row["hat_lightness"] < 0.2 else hue_name(row["hat_hue"])
        fact("hat", ("post", "wearing a hat"), ("post", "with a hat"), ("post", f"wearing {article(kind)}"),
             ("post", f"wearing {article(hat_colour)} {kind}"), ("post", f"with {article(hat_colour)} hat"))
    else:
        fact("hat", ("post", "without a hat"), weight=NEGATIVE_KEEP)
    if row["face_paint"] >= 0.5:
        paint = hue_name(row["paint_hue"])
        fact("face_paint", ("post", "with face paint"), ("post", f"with {paint} face paint"),
             ("post", f"with {PAINT_KINDS[min(int(row['paint_style'] * 3), 2)]}"))
    else:
        fact("face_paint", ("post", "without face paint"), weight=NEGATIVE_KEEP)
    if row["makeup"] >= 0.5:
        makeup = hue_name(row["makeup_hue"])
        fact("makeup", ("post", "with heavy make-up"), ("post", "wearing heavy make-up"), ("post", f"with {makeup} lipstick"),
             ("post", f"with {makeup} eyeshadow"))
    else:
        fact("makeup", ("post", "without make-up"), weight=NEGATIVE_KEEP)
    if row["earrings"] >= 0.5:
        kind = "hoop" if row["earring_style"] < 0.5 else "drop"
        fact("earrings", ("post", "with earrings"), ("post", "wearing earrings"),
             ("post", f"wearing {sliced(row['earring_colour'], JEWEL_COLOURS)} earrings"), ("post", f"with {kind} earrings"))
    else:
        fact("earrings", ("post", "without earrings"), weight=NEGATIVE_KEEP)
    return found


def nouns(row: dict) -> tuple:
    return ("face", "person", "man") if row["beard"] >= 0.6 else ("face", "person")


def join(phrases: list) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(row: dict, hair_style: str, rng: np.random.Generator, full: bool = False,
            required: Optional[str] = None) -> str:
    """One caption of a face: a random subset of its facts (each kept with a probability drawn per
    caption; the fact of topic `required` always; at least one), random phrasings, order and noun.
    The draws are made per topic whether the face has a fact on it or not, so two faces captioned
    from generators in the same state get the same choices: captions of a contrast pair differ only
    where the faces do. full=True: every positive fact (no negatives), first phrasings, fixed order,
    noun "face", no draws: the descriptions used for retrieval."""
    found = facts(row, hair_style)
    if full:
        chosen = [forms[0] for topic, weight, forms in found if weight == 1.0]
        noun = "face"
    else:
        probability = rng.uniform(0.1, 0.9)
        keep, pick, order = rng.uniform(size=(3, len(TOPICS)))
        noun_choices = nouns(row)
        noun = noun_choices[int(rng.uniform() * len(noun_choices))]
        drawn = [(TOPICS.index(topic), weight, forms) for topic, weight, forms in found]
        kept = [(t, forms) for t, weight, forms in drawn if keep[t] < probability * weight or TOPICS[t] == required]
        if not kept:
            t, _, forms = min(drawn, key=lambda fact: keep[fact[0]])
            kept = [(t, forms)]
        chosen = [forms[int(pick[t] * len(forms))] for t, forms in sorted(kept, key=lambda fact: order[fact[0]])]
    head = " ".join([text for slot, text in chosen if slot == "adj"] + [noun])
    phrases = [text for slot, text in chosen if slot == "post"]
    return article(head) + (" " + join(phrases) if phrases else "")


def captions_of(params: np.ndarray, seed: int, full: bool = False, required: Optional[list] = None,
                keys: Optional[list] = None) -> list:
    """Captions of [N, DIM] faces: face i drawn with generator default_rng([seed, keys[i]]) (keys
    default to 0..N-1; equal keys give equal choices) and naming topic required[i] (None: any)."""
    keys = range(len(params)) if keys is None else keys
    required = required or [None] * len(params)
    return [caption(dict(zip(NAMES, row.tolist())), style, np.random.default_rng([seed, key]), full, topic)
            for row, style, topic, key in zip(params, hair_style_of(params), required, keys)]


def vocabulary(count: int = 4000) -> list:
    """Every word the grammar produces, sorted: the words of every phrasing of every fact of `count`
    seeded faces (half with random extras), which reach every branch of `facts`, plus the nouns."""
    params = np.concatenate([sample_params(count, 1, extras="random"), sample_params(count, 2)])
    words = {"a", "an", "and", "face", "person", "man"}
    for row, style in zip(params, hair_style_of(params)):
        for _, _, forms in facts(dict(zip(NAMES, row.tolist())), style):
            for _, text in forms:
                words.update(text.split())
    return sorted(words)


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
    parser = argparse.ArgumentParser(prog="python -m pti_lab.synthfaces.train_clip", description=__doc__.split("\n")[0])
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
        ship(CLIP_FILE, args.out, "pti_lab.synthfaces.train_clip", argv, report, built_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())

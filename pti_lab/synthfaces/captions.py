"""The caption grammar of synthfaces: sentences that describe a face from its parameter vector.

Every clearly visible property gives a fact with a few phrasings (an adjective before the noun, or
a phrase after it), e.g. "a smiling grey-haired man with glasses, wearing a red beanie and on a
blue background". Attributes (smile, open mouth, closed eyes, wrinkles, grey hair, age, head turn),
identity cues (hair style and colour, beard, eye colour, skin) and the extras (glasses, hats, face
paint, make-up, earrings) are all named, and each caption keeps a random subset of the facts, so
short prompts such as "a smiling face" or "a face with glasses" are in the distribution. Properties
in the middle of their range are not named; negatives ("that is not smiling", "without glasses")
are, so that contrasting prompts work. `vocabulary()` is every word the grammar can produce.
The tiny CLIP (pti_lab.synthfaces.tiny_clip) is trained on these captions
(python -m pti_lab.train.synthfaces_clip).
"""

from typing import Optional

import numpy as np

from pti_lab.synthfaces.params import EXTRA_FLAGS, HAIR_STYLES, NAMES, hair_style_of, sample_params

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

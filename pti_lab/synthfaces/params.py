"""The synthfaces parameter vector: one float32 row per face, a documented and versioned layout.

Every field is a scalar with a range; `FIELDS` below is the single source of truth for its name,
group, range, sampling law and meaning. Groups:
  identity    who the face is: shape, colouring, features, hair (does not change under edits)
  attribute   what an edit changes: expression, age cues, head pose
  background  everything behind the face: backdrop colour and gradient, shirt
  extra       out-of-domain accessories (glasses, hat, face paint, heavy make-up, earrings), never
              used in training; each has an on/off flag and style/colour fields

The in-domain fields (identity + attribute + background) have a standardisation, z = (v - mean) / std
under the sampler's law, so the generator can be trained as a decoder with z = standardised
parameters. Hair style is categorical, stored one-hot in five `hair_*` fields; the renderer treats
them as blend weights, so interpolated or unstandardised Gaussian vectors still render.

Sampling laws are deliberately simple (uniform, fair coin, uniform category) so that the means and
standard deviations are exact; where a feature should be rare or mostly on (beard, closed eyes,
open mouth) the renderer maps the uniform value through a threshold instead.
"""

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Union

import numpy as np

from pti_lab.errors import BadInputError

LAYOUT_VERSION = 1  # bump whenever a field is added, removed, reordered or changes meaning
HAIR_STYLES = ("buzz", "short", "bob", "long", "curly")


@dataclass(frozen=True)
class Field:
    name: str
    group: str  # 'identity' | 'attribute' | 'background' | 'extra'
    lo: float
    hi: float
    doc: str
    law: str = "uniform"  # 'uniform' on [lo, hi] | 'flag' in {0, 1} | 'onehot' (one of the hair styles)

    @property
    def mean(self) -> float:
        if self.law == "onehot":
            return 1 / len(HAIR_STYLES)
        return (self.lo + self.hi) / 2

    @property
    def std(self) -> float:
        if self.law == "onehot":
            p = 1 / len(HAIR_STYLES)
            return math.sqrt(p * (1 - p))
        if self.law == "flag":
            return 0.5
        return (self.hi - self.lo) / math.sqrt(12)


FIELDS = (
    # Identity: face shape.
    Field("face_width", "identity", 0, 1, "narrow -> wide head"),
    Field("face_length", "identity", 0, 1, "short -> long head"),
    Field("jaw_width", "identity", 0, 1, "pointed chin -> square jaw"),
    # Identity: colouring.
    Field("skin_tone", "identity", 0, 1, "light -> dark skin (palette)"),
    Field("skin_warmth", "identity", 0, 1, "rosy -> golden undertone"),
    # Identity: eyes and brows.
    Field("eye_size", "identity", 0, 1, "small -> large eyes"),
    Field("eye_shape", "identity", 0, 1, "round -> narrow almond eyes"),
    Field("eye_tilt", "identity", -1, 1, "outer corners down -> up"),
    Field("eye_spacing", "identity", 0, 1, "close-set -> wide-set eyes"),
    Field("eye_colour", "identity", 0, 1, "iris: dark brown, brown, hazel, green, blue, grey (palette)"),
    Field("brow_thickness", "identity", 0, 1, "thin -> thick brows"),
    Field("brow_angle", "identity", -1, 1, "outer brow ends down -> up"),
    Field("brow_height", "identity", 0, 1, "low -> high brows above the eyes"),
    # Identity: nose, mouth, ears.
    Field("nose_length", "identity", 0, 1, "short -> long nose"),
    Field("nose_width", "identity", 0, 1, "narrow -> wide nose"),
    Field("mouth_width", "identity", 0, 1, "narrow -> wide mouth"),
    Field("lip_thickness", "identity", 0, 1, "thin -> full lips"),
    Field("lip_colour", "identity", 0, 1, "pale pink, rose, red, brown (palette)"),
    Field("ear_size", "identity", 0, 1, "small -> large ears"),
    # Identity: hair and beard.
    *(Field(f"hair_{style}", "identity", 0, 1, f"hair style is '{style}' (one-hot)", "onehot")
      for style in HAIR_STYLES),
    Field("hair_colour", "identity", 0, 1, "black, dark brown, brown, auburn, blonde, platinum (palette)"),
    Field("hair_fringe", "identity", 0, 1, "no fringe -> fringe down to the brows"),
    Field("hair_parting", "identity", -1, 1, "fringe swept to the left -> right"),
    Field("beard", "identity", 0, 1, "none below 0.55, then stubble -> full beard"),
    # Attributes: what edits change.
    Field("smile", "attribute", -1, 1, "frown -> neutral -> broad smile (mouth corners, cheek folds)"),
    Field("mouth_open", "attribute", 0, 1, "closed below 0.35, then parted -> open with teeth"),
    Field("eyes_open", "attribute", 0, 1, "closed -> wide open (lid opening ~ sqrt)"),
    Field("wrinkles", "attribute", 0, 1, "age cue: forehead lines, crow's feet, folds, eye bags"),
    Field("grey_hair", "attribute", 0, 1, "age cue: grey streaks -> fully grey hair, brows and beard"),
    Field("yaw", "attribute", -1, 1, "head turned to the viewer's left -> right (about +-40 degrees)"),
    # Background.
    Field("bg_hue", "background", 0, 1, "backdrop hue"),
    Field("bg_saturation", "background", 0, 1, "grey -> coloured backdrop"),
    Field("bg_lightness", "background", 0, 1, "dark -> light backdrop"),
    Field("bg_gradient", "background", -1, 1, "backdrop darker at the top -> darker at the bottom"),
    Field("shirt_hue", "background", 0, 1, "shirt hue"),
    Field("shirt_lightness", "background", 0, 1, "dark -> light shirt"),
    # Out-of-domain extras: never on in training renders.
    Field("glasses", "extra", 0, 1, "glasses on", "flag"),
    Field("glasses_style", "extra", 0, 1, "round -> rectangular frames"),
    Field("glasses_colour", "extra", 0, 1, "frame: black, tortoiseshell, gold, red, blue (fifths of the range)"),
    Field("glasses_tint", "extra", 0, 1, "clear lenses -> dark sunglasses"),
    Field("hat", "extra", 0, 1, "hat on", "flag"),
    Field("hat_style", "extra", 0, 1, "beanie below 1/3, wide-brimmed hat below 2/3, else cap"),
    Field("hat_hue", "extra", 0, 1, "hat hue"),
    Field("hat_lightness", "extra", 0, 1, "dark -> light hat"),
    Field("face_paint", "extra", 0, 1, "face paint on", "flag"),
    Field("paint_style", "extra", 0, 1, "cheek stripes below 1/3, eye mask below 2/3, else half face"),
    Field("paint_hue", "extra", 0, 1, "paint hue (saturated)"),
    Field("makeup", "extra", 0, 1, "heavy make-up on: eyeshadow, winged liner, vivid lipstick", "flag"),
    Field("makeup_hue", "extra", 0, 1, "eyeshadow and lipstick hue"),
    Field("earrings", "extra", 0, 1, "earrings on", "flag"),
    Field("earring_style", "extra", 0, 1, "hoops below 1/2, else drops"),
    Field("earring_colour", "extra", 0, 1, "gold, silver, copper, red, turquoise (fifths of the range)"),
)

NAMES = tuple(f.name for f in FIELDS)
INDEX = {name: i for i, name in enumerate(NAMES)}
DIM = len(FIELDS)
LOW = np.array([f.lo for f in FIELDS], dtype=np.float32)
HIGH = np.array([f.hi for f in FIELDS], dtype=np.float32)

IDENTITY = tuple(f.name for f in FIELDS if f.group == "identity")
ATTRIBUTES = tuple(f.name for f in FIELDS if f.group == "attribute")
BACKGROUND = tuple(f.name for f in FIELDS if f.group == "background")
EXTRAS = tuple(f.name for f in FIELDS if f.group == "extra")
EXTRA_FLAGS = tuple(f.name for f in FIELDS if f.law == "flag")  # glasses, hat, face_paint, makeup, earrings
EXTRA_STYLES = {  # each extra's style/colour fields, which mean nothing while its flag is off
    "glasses": ("glasses_style", "glasses_colour", "glasses_tint"),
    "hat": ("hat_style", "hat_hue", "hat_lightness"),
    "face_paint": ("paint_style", "paint_hue"),
    "makeup": ("makeup_hue",),
    "earrings": ("earring_style", "earring_colour"),
}
IN_DOMAIN = IDENTITY + ATTRIBUTES + BACKGROUND  # the fields the generator sees, in layout order
HAIR_FIELDS = tuple(f"hair_{style}" for style in HAIR_STYLES)

_IN_DOMAIN_INDEX = np.array([INDEX[name] for name in IN_DOMAIN])
_MEAN = np.array([FIELDS[i].mean for i in _IN_DOMAIN_INDEX], dtype=np.float32)
_STD = np.array([FIELDS[i].std for i in _IN_DOMAIN_INDEX], dtype=np.float32)

# ----------------------------------------------------------------------------
# Checking, named access and conversion.


def check_vectors(params, what: str = "params") -> np.ndarray:
    """`params` as a float32 [N, DIM] array; BadInputError on a wrong shape or a non-finite value."""
    array = np.asarray(params, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != DIM:
        raise BadInputError(f"{what}: expected shape [N, {DIM}] (layout v{LAYOUT_VERSION}), got {list(array.shape)}")
    bad = ~np.isfinite(array)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise BadInputError(f"{what}: row {row} field '{NAMES[col]}' is {array[row, col]}, expected a finite number")
    return array


def neutral() -> dict:
    """A plain frontal face: every field at the middle of its range, short hair, no extras."""
    values = {f.name: (f.lo + f.hi) / 2 for f in FIELDS}
    values.update({name: 0.0 for name in HAIR_FIELDS + EXTRAS})
    values["hair_short"] = 1.0
    return values


def to_vector(values: Mapping[str, Union[float, str]], base: Optional[Mapping] = None) -> np.ndarray:
    """Named values -> float32 [DIM]. Missing fields come from `base` (default `neutral()`).
    `hair_style='long'` is accepted as a shorthand for the one-hot hair fields."""
    merged = dict(neutral() if base is None else base)
    for name, value in values.items():
        if name == "hair_style":
            if value not in HAIR_STYLES:
                raise BadInputError(f"hair_style: '{value}' is not one of {', '.join(HAIR_STYLES)}")
            merged.update({field: float(field == f"hair_{value}") for field in HAIR_FIELDS})
        elif name not in INDEX:
            raise BadInputError(f"unknown synthfaces parameter '{name}' (layout v{LAYOUT_VERSION})")
        else:
            merged[name] = value
    missing = [name for name in NAMES if name not in merged]
    if missing:
        raise BadInputError(f"base values lack the fields {', '.join(missing)}")
    return check_vectors([[float(merged[name]) for name in NAMES]])[0]


def from_vector(vector) -> dict:
    """float32 [DIM] -> {field name: float}, the inverse of `to_vector`."""
    row = check_vectors(np.asarray(vector, dtype=np.float32)[None])[0]
    return {name: float(value) for name, value in zip(NAMES, row)}


def hair_style_of(vectors) -> list:
    """The dominant hair style name of each row of [N, DIM] vectors."""
    weights = check_vectors(vectors)[:, [INDEX[name] for name in HAIR_FIELDS]]
    return [HAIR_STYLES[i] for i in weights.argmax(axis=1)]


def extras_on(vectors) -> list:
    """Names of the extras switched on (flag >= 0.5), per row of [N, DIM] vectors."""
    flags = check_vectors(vectors)[:, [INDEX[name] for name in EXTRA_FLAGS]]
    return [[name for name, on in zip(EXTRA_FLAGS, row) if on >= 0.5] for row in flags]


def standardise(vectors) -> np.ndarray:
    """[N, DIM] parameters -> [N, len(IN_DOMAIN)] zero-mean unit-variance z (extras dropped)."""
    return (check_vectors(vectors)[:, _IN_DOMAIN_INDEX] - _MEAN) / _STD


def unstandardise(z) -> np.ndarray:
    """[N, len(IN_DOMAIN)] z -> [N, DIM] parameters with every extra off. Values are not clipped;
    the renderer clips to the field ranges."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != len(IN_DOMAIN) or not np.isfinite(z).all():
        raise BadInputError(f"z: expected finite values of shape [N, {len(IN_DOMAIN)}], got {list(z.shape)}")
    vectors = np.zeros((len(z), DIM), dtype=np.float32)
    vectors[:, _IN_DOMAIN_INDEX] = z * _STD + _MEAN
    return vectors


# ----------------------------------------------------------------------------
# Seeded sampling.


def sample_params(n: int, seed: int, extras: Union[bool, str, Mapping[str, float]] = False) -> np.ndarray:
    """n faces as float32 [n, DIM], a pure function of (n, seed, extras).

    extras=False     in-domain: every extra field is 0.
    extras='random'  out-of-domain: each face has at least one extra on (one chosen uniformly, each
                     other one on with probability 0.3), with random styles and colours.
    extras={...}     the given extra fields set as given for every face (e.g. {'glasses': 1,
                     'glasses_tint': 0.9}); unset style fields of switched-on extras are random.
    The in-domain fields depend on (n, seed) only, so the same seed gives the same faces with and
    without extras.
    """
    if n < 0:
        raise BadInputError(f"sample_params: n must be >= 0, got {n}")
    face_rng, extras_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    vectors = np.zeros((n, DIM), dtype=np.float32)
    for name in IN_DOMAIN:
        field = FIELDS[INDEX[name]]
        if field.law == "uniform":
            vectors[:, INDEX[name]] = face_rng.uniform(field.lo, field.hi, n)
    hair = face_rng.integers(0, len(HAIR_STYLES), n)
    vectors[np.arange(n), INDEX[HAIR_FIELDS[0]] + hair] = 1.0  # the hair fields are contiguous

    if extras is False:
        return vectors
    flag_index = [INDEX[name] for name in EXTRA_FLAGS]
    if extras == "random":
        flags = extras_rng.uniform(size=(n, len(EXTRA_FLAGS))) < 0.3
        flags[np.arange(n), extras_rng.integers(0, len(EXTRA_FLAGS), n)] = True
        vectors[:, flag_index] = flags
        given = {}
    elif isinstance(extras, Mapping):
        unknown = [name for name in extras if name not in EXTRAS]
        if unknown:
            raise BadInputError(f"sample_params: {', '.join(unknown)} are not extra fields ({', '.join(EXTRAS)})")
        given = dict(extras)
    else:
        raise BadInputError(f"sample_params: extras must be False, 'random' or a dict, got {extras!r}")
    for flag, styles in EXTRA_STYLES.items():
        values = extras_rng.uniform(0, 1, (n, len(styles)))  # drawn for every extra so streams stay aligned
        vectors[:, INDEX[flag]] = given.get(flag, vectors[:, INDEX[flag]])
        for name, column in zip(styles, values.T):
            vectors[:, INDEX[name]] = given.get(name, column) * (vectors[:, INDEX[flag]] >= 0.5)
    return vectors

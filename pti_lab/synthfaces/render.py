"""The synthfaces renderer: parameter vectors -> anti-aliased RGB face images, vectorised with numpy.

    images = render(sample_params(16, seed=0))           # uint8 [16, 64, 64, 3]
    x = render_torch(sample_params(16, seed=0))          # float [16, 3, 64, 64] in [-1, 1]

Geometry is in canvas units (x right, y down, the head centred near the origin; the image shows
x in [-0.84, 0.84]), so 64 px and 128 px renders show the same face. Each part is a coverage mask
computed analytically at the target resolution and composited back to front:

    background, hair (back), shirt, neck, ears, face skin, beard, face paint, wrinkles, eye make-up,
    eyes, brows, nose, mouth, ears in front of a turned head, hair (front), glasses, earrings, hat

Coverage is the exact box-filtered area of a 1-D edge profile (`cover`, `span_cover`, `band_cover`):
a pixel straddling an edge gets the fraction inside, which is what anti-aliasing needs and costs no
supersampling. Features on the face are drawn in *frontal* coordinates: the head is a vertical
cylinder turned by the yaw angle, and each pixel column is mapped back to where it sat before the
turn, which shifts and foreshortens eyes, nose and mouth together. Both eyes (and brows, glasses
lenses, nostrils) are evaluated at once in the mirrored coordinate |x_frontal|.

The render is a pure function of the parameters: no RNG, the hair texture is sines of the pixel
position. Values outside a field's range are clipped to it, so unstandardised Gaussian
vectors render; shapes and non-finite values are refused (`params.check_vectors`).
"""

import math
from types import SimpleNamespace

import numpy as np
import torch

from pti_lab.errors import BadInputError
from pti_lab.synthfaces.params import HAIR_FIELDS, HIGH, INDEX, LOW, check_vectors

CHUNK = 32  # images rendered together: big enough to amortise numpy overhead, small enough to stay in cache
MAX_SIZE = 1024

# Palettes: rows are anchor colours (RGB in [0, 1]) spread evenly over the field's [0, 1] range;
# FRAMES and JEWELS are picked from, not blended.
SKIN = np.array([[0.98, 0.87, 0.78], [0.94, 0.77, 0.64], [0.82, 0.62, 0.47], [0.64, 0.45, 0.32],
                 [0.45, 0.30, 0.21], [0.30, 0.20, 0.14]], dtype=np.float32)
IRIS = np.array([[0.23, 0.13, 0.07], [0.42, 0.25, 0.11], [0.50, 0.42, 0.19], [0.30, 0.50, 0.27],
                 [0.27, 0.47, 0.72], [0.52, 0.56, 0.60]], dtype=np.float32)
HAIR = np.array([[0.07, 0.06, 0.06], [0.20, 0.13, 0.08], [0.38, 0.24, 0.13], [0.55, 0.24, 0.11],
                 [0.80, 0.64, 0.36], [0.92, 0.87, 0.72]], dtype=np.float32)
LIPS = np.array([[0.86, 0.56, 0.54], [0.76, 0.39, 0.40], [0.66, 0.20, 0.24], [0.48, 0.25, 0.21]],
                dtype=np.float32)
FRAMES = np.array([[0.06, 0.06, 0.07], [0.42, 0.22, 0.09], [0.80, 0.65, 0.26], [0.72, 0.10, 0.14],
                   [0.14, 0.26, 0.68]], dtype=np.float32)
JEWELS = np.array([[0.93, 0.74, 0.22], [0.82, 0.83, 0.88], [0.76, 0.44, 0.24], [0.86, 0.08, 0.16],
                   [0.10, 0.76, 0.74]], dtype=np.float32)
GREY_HAIR = np.array([0.80, 0.80, 0.82], dtype=np.float32)[:, None, None, None]

# Hair style presets, blended by the one-hot hair fields (rows follow params.HAIR_STYLES):
#   volume  hair thickness beyond the skull outline
#   end     how far the side hair falls below the head centre (negative: above the ears)
#   fringe  how far the fringe field can bring the hairline down
#   curl    ringlet texture and bumpy outline
#   density opacity (a buzz cut lets the scalp show)
#   curtain hair in front of the face edges and over the ears
HAIR_PRESETS = np.array([
    # volume  end    fringe curl  density curtain
    [0.012, -0.02, 0.0, 0.0, 0.55, 0.0],   # buzz
    [0.055, -0.08, 0.6, 0.15, 1.0, 0.0],   # short
    [0.085, 0.36, 1.0, 0.0, 1.0, 1.0],     # bob
    [0.065, 1.40, 0.8, 0.0, 1.0, 1.0],     # long
    [0.190, 0.22, 0.5, 1.0, 1.0, 0.6],     # curly
], dtype=np.float32)

VIEW_HALF = 0.84                   # the image shows x in [-0.84, 0.84] ...
VIEW_Y = -0.04                     # ... and y in VIEW_Y +- 0.84
# Fixed head placement (faces are aligned, as FFHQ crops are): features can only appear inside
# these row bands, so small features are computed on the band instead of the whole canvas.
HEAD_Y = -0.04                     # head centre
EYE_Y = -0.07                      # eye line
EYE_BAND = (-0.33, 0.05)           # brows, eyes, crow's feet, glasses lenses
FOREHEAD_BAND = (-0.56, -0.14)     # forehead wrinkles
MOUTH_BAND = (-0.05, 0.50)         # nose, mouth, cheek folds
EAR_BAND = (-0.20, 0.36)           # ears and earrings
YAW_RADIANS = 0.7                  # yaw = +-1 turns the head by about 40 degrees


# ----------------------------------------------------------------------------
# Coverage primitives: the fraction of each pixel (a box of side px) inside a shape.


def cover(d, px):
    """Coverage of the region d < 0 for a signed distance d (canvas units): exact for a straight edge."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def span_cover(y, top, bottom, px):
    """Coverage of the vertical span top < y < bottom (per column), exact for spans thinner than a pixel."""
    return np.clip(np.minimum(y + px / 2, bottom) - np.maximum(y - px / 2, top), 0.0, px) / px


def band_cover(dist, width, px):
    """Coverage of a line of the given width at unsigned distance `dist` from its centre line."""
    return np.clip(np.minimum(dist + px / 2, width / 2) - np.maximum(dist - px / 2, -width / 2), 0.0, px) / px


def ellipse_distance(x, y, a, b):
    """Approximate signed distance to the ellipse x^2/a^2 + y^2/b^2 = 1 (first-order, exact on the axes)."""
    k0 = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    k1 = np.sqrt((x / (a * a)) ** 2 + (y / (b * b)) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def box_distance(x, y, half_w, half_h, radius):
    """Signed distance to a rounded box centred at the origin."""
    qx = np.abs(x) - (half_w - radius)
    qy = np.abs(y) - (half_h - radius)
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - radius


def palette(t, anchors):
    """[N] values in [0, 1] -> [N, 3] colours interpolated between evenly spaced anchors."""
    xp = np.linspace(0.0, 1.0, len(anchors))
    return np.stack([np.interp(t, xp, anchors[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def pick(t, colours):
    """[N] values in [0, 1] -> [N, 3]: one of the colours, by equal slices of [0, 1] (no dull blends)."""
    return colours[np.clip((t * len(colours)).astype(int), 0, len(colours) - 1)]


def hsv(h, s, v):
    """Hue, saturation, value in [0, 1] ([N] arrays or scalars) -> [N, 3] RGB."""
    h, s, v = (np.asarray(a, dtype=np.float32)[:, None] for a in np.broadcast_arrays(h, s, v))
    k = (np.array([5.0, 3.0, 1.0], dtype=np.float32) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def rgb(colours):
    """[N, 3] colours -> [3, N, 1, 1], broadcastable over the image planes."""
    return np.ascontiguousarray(colours.T)[:, :, None, None]


def fixed_colour(r, g, b):
    """One colour for every face, as [3, 1, 1, 1]."""
    return np.array([r, g, b], dtype=np.float32)[:, None, None, None]


# ----------------------------------------------------------------------------
# The canvas: pixel grid plus the image being painted, optionally restricted to a band of rows.


class Canvas:
    def __init__(self, image, y, x, px, rows):
        self.image = image  # float32 [3, N, rows, W] colour planes (a view into the full image for a band)
        self.y = y          # [1, rows, 1] canvas y of the pixel centres
        self.x = x          # [1, 1, W] canvas x of the pixel centres
        self.px = px        # pixel side in canvas units
        self.rows = rows    # which rows of the full canvas these are, to cut full-canvas masks to the band

    @classmethod
    def blank(cls, n, size):
        px = 2.0 * VIEW_HALF / size
        centres = ((np.arange(size, dtype=np.float32) + 0.5) * px - VIEW_HALF).astype(np.float32)
        image = np.empty((3, n, size, size), dtype=np.float32)  # planes: numpy loops run along W, not RGB
        return cls(image, centres[None, :, None] + VIEW_Y, centres[None, None, :], px, slice(0, size))

    def band(self, top, bottom):
        """The rows whose pixels reach into [top, bottom] (plus a pixel margin), as a view."""
        y0 = float(self.y[0, 0, 0]) - self.px / 2                    # top edge of the first row
        first = max(0, int(math.floor((top - y0) / self.px)) - 1)
        last = max(first, min(self.image.shape[2], int(math.ceil((bottom - y0) / self.px)) + 1))
        rows = slice(self.rows.start + first, self.rows.start + last)
        return Canvas(self.image[:, :, first:last], self.y[:, first:last], self.x, self.px, rows)

    def paint(self, alpha, colour):
        """Composite `colour` ([3, N, 1, 1] or per pixel) over the image with coverage `alpha` [N, rows, W]."""
        self.image += alpha * (colour - self.image)


# ----------------------------------------------------------------------------
# Per-face quantities derived from the parameters, as [N, 1, 1] arrays.


def face_layout(params):
    """Geometry and colours of each face: a namespace of [N, 1, 1] arrays and [3, N, 1, 1] colours."""
    p = {name: params[:, i] for name, i in INDEX.items()}
    f = SimpleNamespace()

    def column(values):
        return np.asarray(values, dtype=np.float32)[:, None, None]

    # Head outline and pose.
    f.fw = column(0.37 + 0.10 * p["face_width"])         # head half-width
    f.fh = column(0.50 + 0.09 * p["face_length"])        # head half-height
    f.cy = HEAD_Y
    f.chin = f.cy + f.fh
    f.taper = column(0.42 - 0.27 * p["jaw_width"])       # narrowing of the head toward the chin
    f.turn = column(np.sin(YAW_RADIANS * p["yaw"]))
    f.psi = column(YAW_RADIANS * p["yaw"])
    f.radius = 1.12 * f.fw                                # the cylinder the face is painted on
    f.cx = 0.06 * f.turn                                  # the whole head drifts a little with the turn

    # Eyes and brows (mirrored: distances from the eye centre line |x_frontal| = spacing).
    f.ey = EYE_Y
    f.eye_spacing = column(0.145 + 0.05 * p["eye_spacing"])
    f.ew = column(0.068 + 0.024 * p["eye_size"])          # eye half-width
    f.eh = f.ew * column(0.50 - 0.14 * p["eye_shape"])    # eye half-height when fully open
    f.eye_tilt = column(0.22 * p["eye_tilt"])
    f.eye_open = column(np.sqrt(np.clip(p["eyes_open"], 0, 1)))
    f.brow_y = f.ey - f.eh - column(0.045 + 0.04 * p["brow_height"])
    f.brow_thickness = column(0.014 + 0.026 * p["brow_thickness"])
    f.brow_angle = column(0.035 * p["brow_angle"])

    # Nose and mouth.
    f.ny = f.ey + column(0.19 + 0.07 * p["nose_length"])  # bottom of the nose
    f.nose_half_width = column(0.042 + 0.024 * p["nose_width"])
    f.my = f.ny + 0.4 * (f.chin - f.ny)                   # mouth line
    f.smile = column(p["smile"])
    f.mw = column(0.11 + 0.04 * p["mouth_width"]) * (1 + 0.25 * np.maximum(f.smile, 0))
    f.mouth_gap = column(0.07 * np.clip((p["mouth_open"] - 0.35) / 0.65, 0, 1))
    f.upper_lip = column(0.014 + 0.016 * p["lip_thickness"])
    f.lower_lip = column(0.018 + 0.022 * p["lip_thickness"])

    # Ears.
    f.ear_y = f.ey + 0.035
    f.ear_rx = column(0.045 + 0.015 * p["ear_size"])
    f.ear_ry = column(0.085 + 0.030 * p["ear_size"])

    # Hair: blend the style presets by the (clipped, normalised) one-hot weights.
    weights = np.clip(params[:, [INDEX[name] for name in HAIR_FIELDS]], 0, 1)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.where(total > 1e-6, weights / np.maximum(total, 1e-6), 1 / len(HAIR_FIELDS))
    volume, end, fringe, curl, density, curtain = (column(v) for v in (weights @ HAIR_PRESETS).T)
    f.hair_volume, f.hair_end, f.hair_curl, f.hair_density, f.hair_curtain = volume, end, curl, density, curtain
    f.fringe = fringe * column(p["hair_fringe"]) * 0.27 * f.fh
    f.parting = column(p["hair_parting"])
    f.beard = column(np.clip((p["beard"] - 0.55) / 0.45, 0, 1))
    f.grey = column(p["grey_hair"])
    f.wrinkles = column(p["wrinkles"])

    # Colours.
    warmth = (p["skin_warmth"] - 0.5)[:, None] * np.array([-0.04, 0.03, -0.06], dtype=np.float32)
    skin = np.clip(palette(p["skin_tone"], SKIN) + warmth, 0, 1)
    f.skin = rgb(skin)
    f.hair = rgb(palette(p["hair_colour"], HAIR))
    f.iris = rgb(palette(p["eye_colour"], IRIS))
    lips = palette(p["lip_colour"], LIPS) * 0.7 + skin * 0.3
    makeup = p["makeup"][:, None]
    lipstick = hsv(p["makeup_hue"], 0.85, 0.6)
    f.lips = rgb(lips + 0.9 * makeup * (lipstick - lips))
    f.background = rgb(hsv(p["bg_hue"], 0.08 + 0.5 * p["bg_saturation"], 0.25 + 0.65 * p["bg_lightness"]))
    f.bg_gradient = column(0.25 * p["bg_gradient"])
    f.shirt = rgb(hsv(p["shirt_hue"], 0.45, 0.22 + 0.6 * p["shirt_lightness"]))

    # Extras: on/off as 0..1 weights plus their styles and colours.
    f.glasses = column(p["glasses"])
    f.glasses_round = column(1 - p["glasses_style"])
    f.frame = rgb(pick(p["glasses_colour"], FRAMES))
    f.tint = column(p["glasses_tint"])
    f.hat = column(p["hat"])
    f.hat_kind = column(np.clip(np.floor(p["hat_style"] * 3), 0, 2))      # 0 beanie, 1 wide brim, 2 cap
    f.hat_colour = rgb(hsv(p["hat_hue"], 0.65, 0.2 + 0.7 * p["hat_lightness"]))
    f.paint = column(p["face_paint"])
    f.paint_kind = column(np.clip(np.floor(p["paint_style"] * 3), 0, 2))  # 0 stripes, 1 eye mask, 2 half face
    f.paint_colour = rgb(hsv(p["paint_hue"], 0.9, 0.85))
    f.makeup = column(p["makeup"])
    f.shadow_colour = rgb(hsv(p["makeup_hue"], 0.75, 0.75))
    f.earrings = column(p["earrings"])
    f.hoops = column(p["earring_style"] < 0.5)
    f.jewel = rgb(pick(p["earring_colour"], JEWELS))
    return f


def frontal_x(f, x):
    """Canvas x -> x on the un-turned face (the cylinder of radius f.radius rotated back by yaw)."""
    s = np.clip((x - f.cx) / f.radius, -1.0, 1.0)
    return (f.radius * np.sin(np.arcsin(s) - f.psi)).astype(np.float32)


# ----------------------------------------------------------------------------
# Parts, back to front. Each paints onto a canvas (or a band of it) in place.


def paint_background(cv, f):
    shade = 1.0 - f.bg_gradient * cv.y                       # [N, H, 1]
    cv.image[:] = f.background * shade


def hair_shape(cv, f):
    """Hair silhouette coverage (behind the face) and its per-pixel colour."""
    x, y = cv.x - f.cx, cv.y
    top_y = f.cy - 0.03
    cap = ellipse_distance(x, y - top_y, f.fw + f.hair_volume, f.fh + f.hair_volume)
    side_half_width = f.fw + 0.9 * f.hair_volume + 0.12 * np.maximum(y - f.cy, 0.0)
    sides = np.maximum(np.abs(x) - side_half_width, top_y - y)
    d = np.minimum(cap, sides)
    d = np.maximum(d, y - (f.cy + f.hair_end) + 0.06 * (x / f.fw) ** 2)
    # Curls: a bumpy outline and ringlets; straight hair: strands radiating from above the crown.
    ringlets = np.sin(41.0 * x + 2.1 * np.sin(23.0 * y)) * np.sin(37.0 * y + 1.7 * np.sin(29.0 * x))
    d = d - 0.03 * f.hair_curl * ringlets
    # Periods of 3+ px at 64 px: finer texture would alias.
    strands = np.sin(35.0 * (x - 0.1 * f.parting) / (y - (f.cy - f.fh - 0.45)))
    texture = strands + f.hair_curl * (ringlets - strands)
    alpha = cover(d, cv.px) * f.hair_density
    grey = np.clip(1.5 * f.grey - 0.45 + 0.15 * texture, 0.0, 1.0)
    sheen = 0.12 * np.exp(-(((y - (f.cy - 0.75 * f.fh)) / 0.09) ** 2))
    colour = (f.hair + grey * (GREY_HAIR - f.hair)) * (0.88 + 0.07 * texture + sheen)
    return alpha, colour


def paint_body(cv, f):
    """Shirt and neck."""
    x, y = cv.x - f.cx * 0.5, cv.y
    neck_half = 0.52 * f.fw
    shirt = np.maximum(ellipse_distance(x, y - 1.3, 0.98, 0.62),
                       -ellipse_distance(x, y - 0.68, 1.25 * neck_half, 0.10))
    cv.paint(cover(shirt, cv.px), f.shirt * (1.0 - 0.3 * np.clip(y - 0.68, 0, 1)))
    neck = np.maximum(np.abs(x) - neck_half, f.cy + 0.2 - y)
    under_chin = 1.0 - 0.28 * np.clip(1.0 - (y - f.chin) / 0.14, 0.0, 1.0)
    cv.paint(cover(neck, cv.px), f.skin * (0.86 * under_chin))


def ear_shapes(cv, f):
    """The left and right ear: coverage, colour, where earrings hang, and how far each has turned
    in front of the face (the ear on the side the head turns from) or behind it (the other one)."""
    ears = []
    for side in (-1.0, 1.0):
        ex = f.cx + side * 0.88 * f.radius * np.cos(f.psi)
        x, y = cv.x - ex, cv.y - f.ear_y
        outer = ellipse_distance(x, y, f.ear_rx, f.ear_ry)
        inner = ellipse_distance(x + side * 0.25 * f.ear_rx, y + 0.1 * f.ear_ry, 0.5 * f.ear_rx, 0.6 * f.ear_ry)
        ears.append(SimpleNamespace(
            alpha=cover(outer, cv.px),
            colour=f.skin * (0.92 * (1.0 - 0.3 * cover(inner, 2 * cv.px))),
            in_front=np.clip(-side * f.turn * 3.0, 0.0, 1.0),
            behind=np.clip(side * f.turn * 3.0, 0.0, 1.0),
            lobe_x=ex + side * 0.3 * f.ear_rx,
            lobe_y=f.ear_y + 0.85 * f.ear_ry,
        ))
    return ears


def face_shape(cv, f):
    """Signed distance to the head outline (the chin swings toward the turn)."""
    y = cv.y - f.cy
    v = np.clip(y / f.fh, 0.0, 1.0)
    x = cv.x - f.cx - 0.22 * f.radius * f.turn * v * v
    return ellipse_distance(x, y, f.fw * (1.0 - f.taper * v * v), f.fh)


def paint_face(cv, f, face_d, xf):
    edge = np.clip(1.0 + face_d / 0.16, 0.0, 1.0) ** 2             # 0 inside, 1 at the outline
    light = 1.0 - 0.05 * xf / f.fw                                  # lit from the viewer's left
    cheeks = np.clip(1.0 - ((np.abs(xf) - 0.55 * f.fw) ** 2 + (cv.y - f.ny + 0.02) ** 2) / 0.11 ** 2, 0.0, 1.0)
    blush = (0.07 + 0.25 * f.makeup) * cheeks
    colour = f.skin * ((1.0 - 0.2 * edge) * light)
    colour = colour + blush * (fixed_colour(0.85, 0.35, 0.4) - colour)
    cv.paint(cover(face_d, cv.px), colour)


def paint_beard(cv, f, face_alpha, xf):
    # Top edge: a moustache under the nose, then the cheek line from the mouth corners up to the ears.
    ax = np.abs(xf)
    corner = f.mw + 0.03
    t = np.clip((ax - corner) / (0.95 * f.fw - corner), 0.0, 1.0)
    line = np.where(ax < corner, f.ny + 0.025, f.my + (f.ear_y + 0.04 - f.my) * t)
    alpha = face_alpha * cover(line - cv.y, 3 * cv.px) * (0.85 * f.beard)
    colour = (f.hair + np.clip(1.6 * f.grey - 0.4, 0, 1) * (GREY_HAIR - f.hair)) * 0.85
    cv.paint(alpha, colour)


def paint_face_paint(cv, f, face_alpha, xf):
    ax, y = np.abs(xf), cv.y
    # Stripes: two war-paint bars on each cheek, rising toward the ears.
    stripes = sum(band_cover(np.abs(y - (f.ny - offset) + 0.12 * ax), 0.03, cv.px) for offset in (0.03, 0.09))
    stripes = np.minimum(stripes, 1.0) * cover(0.3 * f.fw - ax, cv.px) * cover(ax - 0.9 * f.fw, cv.px)
    # Eye mask: a band across both eyes, narrowing toward the temples.
    mask = span_cover(y, f.ey - 0.11 + 0.02 * (ax / f.fw), f.ey + 0.07 - 0.04 * (ax / f.fw) ** 2, cv.px)
    # Half face: the viewer's left half.
    half = cover(xf, cv.px)
    shape = np.where(f.paint_kind == 0, stripes, np.where(f.paint_kind == 1, mask, half))
    cv.paint(face_alpha * shape * (0.85 * f.paint), f.paint_colour)


def paint_forehead_lines(cv, f, xf):
    alpha = 0.0
    ax = np.abs(xf)
    for k in range(3):
        line_y = f.brow_y - 0.08 - 0.045 * k + 0.006 * np.sin(12.0 * xf + k)
        strength = np.clip(2.0 * f.wrinkles - 0.5 * k, 0.0, 1.0)
        alpha = alpha + strength * band_cover(np.abs(cv.y - line_y), 0.008, cv.px)
    alpha = 0.45 * np.minimum(alpha, 1.0) * cover(ax - 0.55 * f.fw, 4 * cv.px)
    cv.paint(alpha, f.skin * 0.62)


def paint_eyes(cv, f, xf):
    """Eye make-up, crow's feet, eye bags, sclera, iris, pupil, catch-light, lids, lashes, brows."""
    ax, side = np.abs(xf), np.sign(xf)
    dx = ax - f.eye_spacing                                         # > 0 toward the outer corner
    q = dx / f.ew
    lid = np.clip(1.0 - q * q, 0.0, 1.0)                            # lid curve profile, 0 past the corners
    within = cover(np.abs(dx) - 1.05 * f.ew, cv.px)                  # columns of the eye
    y = cv.y - f.ey + f.eye_tilt * dx                               # eye-local y, tilt removed
    lower = 0.5 * f.eh * lid
    upper = lower - 1.5 * f.eh * f.eye_open * lid

    if f.makeup.any():
        shadow = span_cover(y, upper - 1.3 * f.eh * np.sqrt(lid) - 0.02, upper, cv.px)
        cv.paint(shadow * cover(np.abs(dx) - 1.25 * f.ew, 3 * cv.px) * (0.85 * f.makeup), f.shadow_colour)

    # Age: crow's feet at the outer corners and bags under the eyes.
    beyond = dx - 1.08 * f.ew
    feet = sum(band_cover(np.abs(y - slope * beyond) / math.sqrt(1 + slope * slope), 0.007, cv.px)
               for slope in (-0.55, 0.0, 0.55))
    feet = np.minimum(feet, 1.0) * cover(-beyond, cv.px) * cover(beyond - 0.045, 2 * cv.px)
    bags = band_cover(np.abs(y - lower - 0.02 * np.sqrt(lid) - 0.006), 0.007, cv.px) * within
    cv.paint(np.minimum(feet + 0.8 * bags, 1.0) * (0.5 * f.wrinkles), f.skin * 0.62)

    # The eyeball seen through the lid opening.
    opening = span_cover(y, upper, lower, cv.px)
    lid_shadow = 1.0 - 0.25 * np.clip(1.0 - (y - upper) / (0.6 * f.eh), 0.0, 1.0)
    cv.paint(opening, fixed_colour(0.93, 0.91, 0.88) * lid_shadow)
    iris_r = 0.92 * f.eh
    iris_y = -0.1 * f.eh
    r = np.sqrt(dx * dx + (cv.y - f.ey - iris_y) ** 2)
    limbus = 1.0 - 0.45 * np.clip((r / iris_r - 0.62) / 0.38, 0.0, 1.0)
    cv.paint(opening * cover(r - iris_r, cv.px), f.iris * limbus)
    cv.paint(opening * cover(r - 0.42 * iris_r, cv.px), fixed_colour(0.05, 0.05, 0.05))
    glint = np.sqrt((dx + 0.3 * iris_r * side) ** 2 + (cv.y - f.ey - iris_y + 0.35 * iris_r) ** 2)
    cv.paint(opening * cover(glint - 0.2 * iris_r, cv.px) * 0.9, fixed_colour(1.0, 1.0, 1.0))

    # Lid crease, lower lash line, upper lash line (thicker and winged with make-up).
    crease = band_cover(np.abs(y - upper + 0.012 + 0.35 * f.eh * lid), 0.006, cv.px) * within
    cv.paint(0.45 * crease, f.skin * 0.7)
    cv.paint(0.3 * band_cover(np.abs(y - lower), 0.005, cv.px) * within, f.skin * 0.55)
    lash = 0.014 + 0.014 * f.makeup
    wing = f.makeup * 0.5 * np.maximum(dx - 0.6 * f.ew, 0.0)          # liner flicks up past the corner
    lash_cover = span_cover(y, upper - lash * (0.3 + 0.7 * lid) - wing, upper + 0.3 * lash * lid, cv.px)
    cv.paint(0.92 * lash_cover * cover(np.abs(dx) - (1.05 + 0.35 * f.makeup) * f.ew, cv.px),
             fixed_colour(0.10, 0.07, 0.06))

    # Brows: an arched band, thicker at the inner end, tapering at both ends.
    bx = ax - f.eye_spacing - 0.01
    qb = bx / (1.3 * f.ew)
    arch = np.clip(1.0 - qb * qb, 0.0, 1.0)
    centre = f.brow_y - 0.02 * arch - f.brow_angle * qb
    half = 0.5 * f.brow_thickness * (1.0 - 0.35 * (qb + 1.0) / 2.0) * np.sqrt(np.sqrt(arch))
    brow = span_cover(cv.y, centre - half, centre + half, cv.px)
    brow_colour = (f.hair + np.clip(f.grey - 0.3, 0, 1) * (GREY_HAIR - f.hair)) * 0.6
    cv.paint(0.9 * brow, brow_colour)


def paint_nose_and_mouth(cv, f, xf):
    y = cv.y
    # Nose: the ridge moves further than the bridge when the head turns (it sticks out).
    along = np.clip((y - f.ey) / (f.ny - f.ey), 0.0, 1.0)
    xn = xf - f.turn * (0.02 + 0.08 * along)
    tall = span_cover(y, f.ey + 0.04, f.ny - 0.03, cv.px)
    side_weight = np.where(xn > 0, 0.14 + 0.3 * np.maximum(f.turn, 0), 0.04 + 0.3 * np.maximum(-f.turn, 0))
    side_line = np.clip(1.0 - np.abs(np.abs(xn) - 0.5 * f.nose_half_width) / 0.018, 0.0, 1.0)
    cv.paint(side_weight * side_line * tall, f.skin * 0.6)
    tip = np.clip(1.0 - (xn / 0.03) ** 2 - ((y - f.ny + 0.035) / 0.024) ** 2, 0.0, 1.0)
    cv.paint(0.22 * tip, fixed_colour(1.0, 1.0, 1.0))
    under = np.clip(1.0 - (xn / f.nose_half_width) ** 2 - ((y - f.ny - 0.01) / 0.02) ** 2, 0.0, 1.0)
    cv.paint(0.3 * under, f.skin * 0.65)
    axn = np.abs(xn)
    wings = band_cover(np.abs(np.sqrt((axn - 0.85 * f.nose_half_width) ** 2 + (y - f.ny + 0.018) ** 2) - 0.026),
                       0.008, cv.px) * cover(0.85 * f.nose_half_width - axn, cv.px) * cover(f.ny - 0.03 - y, cv.px)
    cv.paint(0.35 * wings, f.skin * 0.6)
    nostrils = ellipse_distance(axn - 0.5 * f.nose_half_width, y - f.ny + 0.008, 0.016, 0.009)
    cv.paint(0.75 * cover(nostrils, cv.px), f.skin * 0.4)

    # Cheek folds from the nose wings to past the mouth corners; deeper with a smile and with age.
    t = np.clip((y - f.ny + 0.01) / (f.my + 0.05 - f.ny + 0.01), 0.0, 1.0)
    smile = np.maximum(f.smile, 0.0)
    fold_x = (f.nose_half_width + 0.02) + (f.mw + 0.035 - f.nose_half_width - 0.02) * t \
        + (0.015 + 0.02 * smile) * np.sin(math.pi * t)
    taper = np.sqrt(np.maximum(np.sin(math.pi * t), 0.0))          # fades out at both ends
    fold = band_cover(np.abs(np.abs(xf - 0.03 * f.turn) - fold_x), 0.009, cv.px) * taper
    cv.paint(np.minimum(fold * (0.08 + 0.32 * smile + 0.35 * f.wrinkles), 1.0), f.skin * 0.65)

    # Mouth: lips between curves of x; corners rise with `smile`; the lips part with `mouth_open`.
    q = (xf - 0.04 * f.turn) / f.mw
    env = np.clip(1.0 - q * q, 0.0, 1.0)
    lift = 0.06 * np.maximum(f.smile, 0.0) + 0.025 * np.minimum(f.smile, 0.0)  # a frown is subtler
    centre = f.my - lift * q * q
    upper_bottom = centre - 0.35 * f.mouth_gap * env
    lower_top = centre + 0.65 * f.mouth_gap * env
    bow = 1.0 - 0.35 * np.clip(1.0 - (q / 0.22) ** 2, 0.0, 1.0)      # Cupid's bow dip
    upper_top = upper_bottom - f.upper_lip * np.sqrt(env) * bow
    lower_bottom = lower_top + f.lower_lip * np.sqrt(env)
    inside = span_cover(y, upper_bottom, lower_top, cv.px)
    cv.paint(inside, fixed_colour(0.30, 0.08, 0.10))
    teeth = span_cover(y, upper_bottom, upper_bottom + 0.5 * (lower_top - upper_bottom), cv.px)
    cv.paint(teeth * cover(np.abs(q) - 0.7, 2 * cv.px / f.mw), fixed_colour(0.93, 0.91, 0.85))
    cv.paint(span_cover(y, upper_top, upper_bottom, cv.px), f.lips * 0.88)
    cv.paint(span_cover(y, lower_top, lower_bottom, cv.px), f.lips * 1.05)
    seam = band_cover(np.abs(y - centre), 0.007, cv.px) * cover(np.abs(q) - 1.04, cv.px / f.mw)
    cv.paint(0.55 * seam, f.lips * 0.45)


def hair_front_alpha(cv, f, hair_alpha, xf):
    """The part of the hair that lies over the face: above the hairline, and side curtains."""
    ax = np.abs(xf)
    fringe_x = (xf - 0.25 * f.fw * f.parting) / (0.9 * f.fw)
    hairline = f.cy - 0.62 * f.fh + f.fringe * np.clip(1.0 - fringe_x ** 2, 0.0, 1.0) \
        + (f.fringe > 0.01) * (0.05 * f.parting * xf / f.fw + 0.01 * np.sin(55.0 * xf)) \
        + 0.25 * f.fh * np.clip(ax / f.fw - 0.55, 0.0, None) / 0.45
    above = cover(cv.y - hairline, cv.px)
    curtain = f.hair_curtain * cover(0.8 * f.fw - ax, cv.px)
    return hair_alpha * np.maximum(above, curtain)


def paint_glasses(cv, f, xf):
    ax = np.abs(xf)
    dx = ax - f.eye_spacing
    half_w = 1.45 * f.ew + 0.01
    half_h = 0.062
    y = cv.y - f.ey + 0.005
    lens = box_distance(dx, y, half_w, half_h, half_h * (0.25 + 0.75 * f.glasses_round))
    frame_width = 0.026 + 0.012 * (1.0 - f.glasses_round)
    # Clear lenses reflect a little (so they show on dark skin too), sunglasses are dark.
    inside = cover(lens, cv.px) * f.glasses
    clear, dark = fixed_colour(0.78, 0.82, 0.88), fixed_colour(0.08, 0.08, 0.11)
    lens_colour = clear + f.tint * (dark - clear)
    cv.paint(inside * (0.2 + 0.7 * f.tint), lens_colour)
    glare = band_cover(np.abs(0.6 * dx + y + 0.02), 0.018, cv.px)
    cv.paint(inside * glare * 0.35, fixed_colour(1.0, 1.0, 1.0))
    bar_y = y + 0.3 * half_h
    bar = span_cover(bar_y, -frame_width / 2, frame_width / 2, cv.px)   # bridge and temples, one height
    bridge = bar * cover(ax - (f.eye_spacing - half_w + 0.005), cv.px)
    temples = bar * cover(f.eye_spacing + half_w - ax, cv.px) * cover(np.abs(cv.x - f.cx) - 0.97 * f.radius, cv.px)
    frame = np.maximum(band_cover(np.abs(lens), frame_width, cv.px), np.maximum(bridge, temples))
    cv.paint(frame * f.glasses, f.frame)


def paint_earrings(cv, f, ears, face_alpha):
    for ear in ears:
        x, y = cv.x - ear.lobe_x, cv.y - ear.lobe_y
        hoop = np.abs(np.sqrt(x * x + (y - 0.058) ** 2) - 0.055) - 0.015
        stem = np.maximum(np.abs(x) - 0.01, np.abs(y - 0.035) - 0.035)
        drop = np.minimum(np.sqrt(x * x + (y - 0.095) ** 2) - 0.04, stem)
        stud = np.sqrt(x * x + y * y) - 0.02
        d = np.minimum(stud, f.hoops * hoop + (1.0 - f.hoops) * drop)
        visible = f.earrings * (1.0 - ear.behind * face_alpha)   # hidden behind a head turned away
        shine = 1.0 + 0.25 * np.clip(-y / 0.05, -1.0, 1.0)
        cv.paint(cover(d - 0.008, cv.px) * visible, f.jewel * 0.3)   # a dark rim shows on any backdrop
        cv.paint(cover(d, cv.px) * visible, f.jewel * shine)


def paint_hat(cv, f):
    x, y = cv.x - f.cx, cv.y
    brim_y = f.cy - 0.42 * f.fh                                     # where the hat meets the forehead
    top_y = f.cy - f.fh - f.hair_volume - 0.05                      # above the hair
    half_w = f.fw + 0.06 + 0.6 * f.hair_volume
    dome = ellipse_distance(x, y - brim_y, half_w, brim_y - top_y)
    beanie = np.maximum(dome, y - brim_y)
    crown = box_distance(x, y - (brim_y + top_y - 0.08) / 2, 0.85 * half_w, (brim_y - top_y + 0.08) / 2, 0.08)
    brim = ellipse_distance(x, y - brim_y + 0.02, f.fw + 0.32, 0.06)
    wide = np.minimum(crown, brim)
    visor = np.maximum(ellipse_distance(x - 0.2 * f.turn, y - brim_y, 0.95 * f.fw, 0.08), brim_y - 0.02 - y)
    cap = np.minimum(beanie, visor)
    kind = f.hat_kind
    d = np.where(kind == 0, beanie, np.where(kind == 1, wide, cap))
    # Shading: a folded cuff on the beanie, a ribbon on the wide hat, a darker visor on the cap.
    cuff = span_cover(y, brim_y - 0.1, brim_y, cv.px)
    ribbon = span_cover(y, brim_y - 0.11, brim_y - 0.055, cv.px)
    shade = 1.0 - np.where(kind == 0, 0.2 * cuff, np.where(kind == 1, 0.45 * ribbon, 0.3 * cover(visor, cv.px)))
    cv.paint(cover(d, cv.px) * f.hat, f.hat_colour * shade)


# ----------------------------------------------------------------------------
# Rendering.


def render_chunk(params, size):
    """float32 [n, DIM] (already clipped) -> float32 colour planes [3, n, size, size] in [0, 1]."""
    f = face_layout(params)
    cv = Canvas.blank(len(params), size)
    xf = frontal_x(f, cv.x)                                              # [N, 1, W]
    ear_band, eye_band = cv.band(*EAR_BAND), cv.band(*EYE_BAND)

    paint_background(cv, f)
    hair_alpha, hair_colour = hair_shape(cv, f)
    cv.paint(hair_alpha, hair_colour)
    paint_body(cv, f)
    ears = ear_shapes(ear_band, f)
    for ear in ears:
        ear_band.paint(ear.alpha, ear.colour)
    rows = ear_band.rows
    ear_alpha = np.maximum(ears[0].alpha, ears[1].alpha)
    ear_band.paint(hair_alpha[:, rows] * f.hair_curtain * ear_alpha, hair_colour[:, :, rows])  # long hair over ears
    face_d = face_shape(cv, f)
    face_alpha = cover(face_d, cv.px)
    paint_face(cv, f, face_d, xf)
    if f.beard.any():
        paint_beard(cv, f, face_alpha, xf)
    if f.paint.any():
        paint_face_paint(cv, f, face_alpha, xf)
    if f.wrinkles.any():
        paint_forehead_lines(cv.band(*FOREHEAD_BAND), f, xf)
    paint_eyes(eye_band, f, xf)
    paint_nose_and_mouth(cv.band(*MOUTH_BAND), f, xf)
    for ear in ears:
        ear_band.paint(ear.alpha * ear.in_front * (1.0 - f.hair_curtain), ear.colour)
    cv.paint(hair_front_alpha(cv, f, hair_alpha, xf), hair_colour)
    if f.glasses.any():
        paint_glasses(eye_band, f, xf)
    if f.earrings.any():
        paint_earrings(ear_band, f, ears, face_alpha[:, rows])
    if f.hat.any():
        paint_hat(cv, f)
    return cv.image


def render(params_batch, size: int = 64) -> np.ndarray:
    """Parameter vectors [N, DIM] -> uint8 images [N, size, size, 3]. Out-of-range values are clipped
    to the field ranges; a wrong shape or a NaN/inf raises BadInputError."""
    params = check_vectors(params_batch, "render params")
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= MAX_SIZE:
        raise BadInputError(f"render: size must be an integer in [16, {MAX_SIZE}] px, got {size!r}")
    params = np.clip(params, LOW, HIGH)
    images = np.empty((len(params), size, size, 3), dtype=np.uint8)
    for start in range(0, len(params), CHUNK):
        planes = render_chunk(params[start:start + CHUNK], size)
        images[start:start + CHUNK] = np.clip(planes * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)
    return images


def render_torch(params_batch, size: int = 64, device=None) -> torch.Tensor:
    """Like `render`, as a float32 tensor [N, 3, size, size] in [-1, 1] (what the generator outputs)."""
    images = torch.from_numpy(render(params_batch, size)).to(device)
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0

"""synthfaces parameter layout, renderer and test sets."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

import pti_lab.synthfaces.render as render_module
from pti_lab.errors import BadInputError
from pti_lab.synthfaces import params as P
from pti_lab.synthfaces.render import render, render_torch
from pti_lab.synthfaces import testsets
from pti_lab.synthfaces.testsets import make_testset


def rows_of(y0, y1, size=64):
    """Pixel rows covering canvas y in [y0, y1]."""
    to_row = lambda y: (y - render_module.VIEW_Y + render_module.VIEW_HALF) / (2 * render_module.VIEW_HALF) * size
    return slice(int(to_row(y0)), int(np.ceil(to_row(y1))))


def mean_abs_diff(a, b):
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean()


def with_field(vectors, name, value):
    vectors = vectors.copy()
    vectors[:, P.INDEX[name]] = value
    return vectors


# ----------------------------------------------------------------------------
# Parameter layout.


def test_layout_groups_cover_every_field_once():
    assert P.DIM == len(P.NAMES) == len(set(P.NAMES))
    assert sorted(P.IDENTITY + P.ATTRIBUTES + P.BACKGROUND + P.EXTRAS) == sorted(P.NAMES)
    assert set(P.EXTRA_FLAGS) == {"glasses", "hat", "face_paint", "makeup", "earrings"}
    assert {"smile", "yaw", "eyes_open", "mouth_open", "wrinkles", "grey_hair"} <= set(P.ATTRIBUTES)
    assert sorted(P.EXTRA_FLAGS + sum(P.EXTRA_STYLES.values(), ())) == sorted(P.EXTRAS)
    assert (P.LOW < P.HIGH).all()


def test_vector_round_trip():
    vectors = np.concatenate([P.sample_params(16, 0), P.sample_params(16, 1, extras="random")])
    for row in vectors:
        values = P.from_vector(row)
        assert list(values) == list(P.NAMES)
        np.testing.assert_array_equal(P.to_vector(values), row)
    long_hair = P.from_vector(P.to_vector({"hair_style": "long", "smile": 0.5}))
    assert long_hair["hair_long"] == 1 and long_hair["hair_short"] == 0 and long_hair["smile"] == 0.5
    with pytest.raises(BadInputError, match="unknown synthfaces parameter 'smiel'"):
        P.to_vector({"smiel": 1})


def test_standardise_round_trip_and_moments():
    vectors = P.sample_params(20000, 7)
    z = P.standardise(vectors)
    assert z.shape == (20000, len(P.IN_DOMAIN))
    assert np.abs(z.mean(axis=0)).max() < 0.05 and np.abs(z.std(axis=0) - 1).max() < 0.05
    np.testing.assert_allclose(P.unstandardise(z), vectors, atol=1e-5)
    gaussian = P.unstandardise(np.random.default_rng(0).standard_normal((4, len(P.IN_DOMAIN))))
    assert render(gaussian).shape == (4, 64, 64, 3)  # out-of-range values are clipped, not refused


def test_sampler_extras():
    indomain = P.sample_params(200, 3)
    assert (indomain[:, [P.INDEX[name] for name in P.EXTRAS]] == 0).all()
    ood = P.sample_params(200, 3, extras="random")
    flags = ood[:, [P.INDEX[name] for name in P.EXTRA_FLAGS]]
    assert (flags.sum(axis=1) >= 1).all() and set(np.unique(flags)) == {0.0, 1.0}
    assert all(flags[:, i].mean() > 0.25 for i in range(len(P.EXTRA_FLAGS)))  # every extra is common
    in_domain = [P.INDEX[name] for name in P.IN_DOMAIN]
    np.testing.assert_array_equal(ood[:, in_domain], indomain[:, in_domain])  # same faces, extras added
    np.testing.assert_array_equal(P.sample_params(200, 3, extras="random"), ood)
    assert not np.array_equal(P.sample_params(200, 4), indomain)
    hats = P.sample_params(5, 3, extras={"hat": 1, "hat_style": 0.9})
    assert (hats[:, P.INDEX["hat"]] == 1).all() and (hats[:, P.INDEX["hat_style"]] == np.float32(0.9)).all()
    assert (hats[:, P.INDEX["glasses"]] == 0).all() and (hats[:, P.INDEX["glasses_tint"]] == 0).all()


def test_bad_params_raise_one_line_errors():
    good = P.sample_params(2, 0)
    nan = good.copy()
    nan[1, P.INDEX["smile"]] = np.nan
    cases = [(good[:, :-1], f"expected shape \\[N, {P.DIM}\\]"), (good[0], "expected shape"),
             (nan, "row 1 field 'smile' is nan")]
    for bad, message in cases:
        with pytest.raises(BadInputError, match=message) as error:
            render(bad)
        assert "\n" not in str(error.value)
    with pytest.raises(BadInputError, match="size must be"):
        render(good, size=8)
    with pytest.raises(BadInputError, match="extras must be"):
        P.sample_params(2, 0, extras="sometimes")


# ----------------------------------------------------------------------------
# Renderer.


def test_render_is_deterministic_and_batch_independent():
    vectors = np.concatenate([P.sample_params(20, 11), P.sample_params(20, 12, extras="random")])
    images = render(vectors)
    assert images.dtype == np.uint8 and images.shape == (40, 64, 64, 3)
    np.testing.assert_array_equal(render(vectors), images)
    np.testing.assert_array_equal(np.concatenate([render(vectors[i:i + 1]) for i in range(40)]), images)
    assert render(vectors[:2], size=128).shape == (2, 128, 128, 3)
    x = render_torch(vectors[:3])
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(((x + 1) * 127.5).permute(0, 2, 3, 1).numpy(), images[:3], atol=1e-3)


def test_edges_are_anti_aliased():
    # A face edge against a flat backdrop passes through intermediate values, and a 128 px render
    # box-downsampled to 64 px is close to the 64 px render (what supersampling would give).
    face = P.to_vector({"bg_gradient": 0, "bg_lightness": 1, "bg_saturation": 0, "skin_tone": 1, "hair_style": "buzz"})
    row = render(face[None])[0, rows_of(0.28, 0.28)][0, :, 0].astype(int)
    backdrop, skin = row[0], row[32]
    between = (row > skin + 8) & (row < backdrop - 8)
    assert 1 <= between.sum() <= 4
    vectors = np.concatenate([P.sample_params(8, 2), P.sample_params(8, 3, extras="random")])
    small = render(vectors, 64)
    down = render(vectors, 128).astype(np.float64).reshape(16, 64, 2, 64, 2, 3).mean(axis=(2, 4))
    assert np.abs(down - small).mean() < 1.5


def test_bands_never_cut_features(monkeypatch):
    # Small features are computed on fixed row bands; at the corners of the parameter space the
    # render must equal one computed on the whole canvas.
    rng = np.random.default_rng(0)
    vectors = np.where(rng.uniform(size=(48, P.DIM)) < 0.5, P.LOW, P.HIGH).astype(np.float32)
    hair = [P.INDEX[name] for name in P.HAIR_FIELDS]
    vectors[:, hair] = np.eye(len(hair), dtype=np.float32)[rng.integers(0, len(hair), 48)]
    banded = render(vectors)
    for band in ("EYE_BAND", "FOREHEAD_BAND", "MOUTH_BAND", "EAR_BAND"):
        monkeypatch.setattr(render_module, band, (-2.0, 2.0))
    np.testing.assert_array_equal(render(vectors), banded)


@pytest.mark.parametrize("extra, region", [
    ("glasses", (rows_of(-0.16, 0.0), slice(12, 52))),      # the eye band
    ("hat", (rows_of(-0.84, -0.18), slice(0, 64))),         # the top of the head
    ("face_paint", (rows_of(-0.66, 0.62), slice(10, 54))),  # the face
    ("makeup", (rows_of(-0.2, 0.45), slice(16, 48))),       # eyes, cheeks and lips
    ("earrings", (rows_of(0.0, 0.3), slice(0, 64))),        # below the ears
])
def test_each_extra_changes_its_region(extra, region):
    vectors = P.sample_params(16, 5)
    vectors[:, [P.INDEX[name] for name in P.HAIR_FIELDS]] = 0
    vectors = with_field(with_field(vectors, "hair_short", 1), "yaw", 0)     # both ears in view
    plain = render(vectors)
    dressed_vectors = P.sample_params(16, 5, extras={extra: 1})
    in_domain = [P.INDEX[name] for name in P.IN_DOMAIN]
    dressed_vectors[:, in_domain] = vectors[:, in_domain]
    dressed = render(dressed_vectors)
    rows, columns = region
    strong = np.abs(plain.astype(int) - dressed).max(axis=-1) > 30           # clearly visible changes
    assert strong[:, rows, columns].sum(axis=(1, 2)).min() >= 8, f"{extra} is hard to see on some faces"
    outside = strong.copy()
    outside[:, rows, columns] = False
    assert outside.sum() <= 0.05 * strong.sum(), f"{extra}: visible changes outside its region"


def test_smile_changes_the_mouth_and_little_else():
    vectors = with_field(P.sample_params(16, 8), "yaw", 0)
    frown, smile = render(with_field(vectors, "smile", -1)), render(with_field(vectors, "smile", 1))
    rows, columns = rows_of(0.08, 0.5), slice(18, 46)
    inside = mean_abs_diff(frown[:, rows, columns], smile[:, rows, columns])
    outside_mask = np.ones(frown.shape[1:3], dtype=bool)
    outside_mask[rows, columns] = False
    outside = mean_abs_diff(frown[:, outside_mask], smile[:, outside_mask])
    assert inside > 1.5 and outside < 0.05 * inside, (inside, outside)


def test_yaw_moves_the_features():
    # The dark pixels of the eye band (pupils, lashes, brows) move right as the head turns right.
    face = P.to_vector({"hair_style": "short", "hair_colour": 1, "bg_lightness": 1, "skin_tone": 0,
                        "eyes_open": 1, "beard": 0})
    xs = []
    for yaw in (-1.0, 0.0, 1.0):
        image = render(with_field(face[None], "yaw", yaw))[0, rows_of(-0.2, 0.0)].astype(float).mean(axis=-1)
        _, columns = np.nonzero(image < 90)
        xs.append(columns.mean())
    assert xs[0] + 2 < xs[1] < xs[2] - 2, xs


# ----------------------------------------------------------------------------
# Test sets.


def test_make_testset():
    images, vectors = make_testset("ood", count=6, seed=3)
    assert images.shape == (6, 64, 64, 3) and vectors.shape == (6, P.DIM)
    assert all(P.extras_on(vectors))
    images_in, vectors_in = make_testset("indomain", count=6, seed=3)
    assert not any(P.extras_on(vectors_in))
    np.testing.assert_array_equal(render(vectors_in), images_in)
    with pytest.raises(BadInputError, match="kind 'odd'"):
        make_testset("odd")


def test_testsets_command_writes_sets_and_is_byte_identical(tmp_path):
    def run(out):
        assert testsets.main([str(out), "--count", "5", "--seed", "21"]) == 0
        return {path.relative_to(out): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}

    first = run(tmp_path / "a")
    for kind in ("indomain", "ood"):
        names = sorted(str(path.name) for path in first if path.parent.name == kind)
        assert names == [f"{i:03d}.png" for i in range(5)] + ["params.json", "params.npy"]
        images, vectors = make_testset(kind, count=5, seed=21)
        np.testing.assert_array_equal(np.load(tmp_path / "a" / kind / "params.npy"), vectors)
        np.testing.assert_array_equal(np.asarray(PIL.Image.open(tmp_path / "a" / kind / "003.png")), images[3])
        header = json.loads((tmp_path / "a" / kind / "params.json").read_text())
        assert header["layout_version"] == P.LAYOUT_VERSION and header["fields"] == list(P.NAMES)
        assert [record["extras"] for record in header["images"]] == P.extras_on(vectors)
        assert np.array_equal(np.array([list(r["params"].values()) for r in header["images"]], np.float32), vectors)
    assert run(tmp_path / "b") == first
    assert testsets.main([str(tmp_path / "a"), "--count", "3", "--seed", "21"]) == 0
    assert sorted(path.name for path in (tmp_path / "a" / "ood").glob("*.png")) == ["000.png", "001.png", "002.png"]
    assert not list(tmp_path.rglob("*.tmp"))

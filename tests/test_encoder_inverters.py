"""Encoder inverters (inverter=e4e|psp): pivots from run.py, the shipped synthfaces encoders' measured
quality, PTI from the e4e pivot, projector refinement, the generator check and the pivot cache key."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from pti_lab.data import SynthfacesTestSet
from pti_lab.errors import BadInputError
from pti_lab.generators import make_generator
from pti_lab.inversion import EncoderInverter
from pti_lab.models import LPIPS, EncoderNet, GradualStyleEncoder, load_encoder, save_encoder
from pti_lab.pipeline import pivot_cache
from pti_lab.synthfaces import shipped
from pti_lab.train import synthfaces_encoders
from tests.conftest import run_py

SHIPPED_MARGIN = 1.5  # the shipped encoders' mean LPIPS on 4 in-domain faces, at most this times the manifest's
TINY = dict(widths=[16, 16, 16, 16], units=[1, 1, 1, 1], style_channels=16)  # encoder sizes of the fast tests


@pytest.fixture(scope="module")
def G():
    return make_generator(None)


@pytest.fixture(scope="module")
def faces(G):
    return [sample.image for sample in SynthfacesTestSet(kind="indomain", limit=4).samples(G.img_resolution)]


@pytest.fixture(scope="module")
def lpips():
    return LPIPS("alex")


def render_lpips(G, pivots, faces, lpips) -> float:
    with torch.no_grad():
        return mean([lpips(G.synthesis(pivot, noise_mode="const").clamp(-1, 1), face).item()
                     for pivot, face in zip(pivots, faces)])


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def tiny_encoder_file(path: Path, resolution: int, seed: int = 0) -> Path:
    """A seeded pSp in the official layout for a `resolution` px, w_dim 256 generator."""
    torch.manual_seed(seed)
    num_ws = 2 * (resolution.bit_length() - 1) - 2
    encoder = GradualStyleEncoder(num_ws=num_ws, w_dim=256, input_size=64, **TINY)
    return save_encoder(EncoderNet(encoder), path, generator_resolution=resolution)


def test_run_py_e4e_pivot_then_pivotal_tuning(tmp_path):
    """PTI from the e4e pivot (the official use_e4e): an inversion row with 0 steps, then tuning below it."""
    out = tmp_path / "run"
    run_py("inverter=e4e", "tuner=pivotal", "debug=smoke", "tuner.steps=20", "tuner.lpips_threshold=null",
           f"hydra.run.dir={out}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["choices"]["inverter"] == "e4e" and summary["failed"] == []
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    inversion = next(row for row in rows if row["stage"] == "inversion")
    tuning = next(row for row in rows if row["stage"] == "tuning")
    assert inversion["steps"] == 0 and inversion["id_sim"] is not None
    assert tuning["lpips"] < 0.8 * inversion["lpips"]
    pivot = torch.load(next((out / "images").iterdir()) / "pivot.pt", weights_only=True)
    assert list(pivot.shape) == [1, 10, 256]
    assert not torch.equal(pivot, pivot[:, :1].expand_as(pivot))  # W+: e4e's offsets are applied


def test_run_py_psp_inversion_only(tmp_path):
    out = tmp_path / "run"
    run_py("+method=psp", "debug=smoke", f"hydra.run.dir={out}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["choices"]["inverter"] == "psp" and summary["images"] == 1 and summary["failed"] == []
    assert 0 < summary["stages"]["inversion"]["lpips"] < 0.5 and "tuning" not in summary["stages"]


@pytest.mark.parametrize("kind", list(shipped.ENCODER_FILES))
def test_shipped_encoders_reach_their_measured_lpips(kind, G, faces, lpips):
    measured = shipped.read_manifest()["files"][shipped.ENCODER_FILES[kind]]["metrics"]["recon_lpips_indomain"]
    inverter = EncoderInverter(kind=kind)
    value = render_lpips(G, [inverter.invert(G, face).pivot for face in faces], faces, lpips)
    assert value <= SHIPPED_MARGIN * measured, f"{kind}: LPIPS {value:.4f} vs {measured:.4f} in the manifest"


def test_refinement_improves_on_the_encoder(G, faces, lpips):
    raw, refined = EncoderInverter(kind="e4e"), EncoderInverter(kind="e4e", refine_steps=20, progress=False)
    inversion = refined.invert(G, faces[0])
    assert inversion.steps == 20 and len(inversion.losses) == 20
    pivots = [raw.invert(G, face).pivot for face in faces[:2]], [inversion.pivot, refined.invert(G, faces[1]).pivot]
    before, after = (render_lpips(G, p, faces[:2], lpips) for p in pivots)
    assert after < 0.9 * before, f"refined LPIPS {after:.4f} vs encoder {before:.4f}"


def test_generator_mismatch_is_one_line_naming_both(tmp_path):
    file = tiny_encoder_file(tmp_path / "psp_128.pt", resolution=128)
    result = run_py("inverter=psp", f"inverter.path={file}", f"hydra.run.dir={tmp_path / 'run'}", "debug=smoke",
                    check=False)
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(file) in line and "num_ws=12" in line and "num_ws=10" in line


def test_kind_must_match_the_file(tmp_path):
    file = tiny_encoder_file(tmp_path / "psp.pt", resolution=64)
    with pytest.raises(BadInputError, match="holds psp, not e4e; use inverter=psp"):
        EncoderInverter(kind="e4e", path=str(file))


def test_pivot_cache_key_holds_the_encoder_weights(tmp_path):
    """The same settings (`path` included) with other weights must not share cached pivots."""
    cfg = OmegaConf.create({"inverter": {"kind": "psp", "path": "encoder.pt"}, "paths": {"cache_dir": str(tmp_path)},
                            "seed": 0})
    target = torch.zeros([1, 3, 64, 64])
    files = [tiny_encoder_file(tmp_path / f"{name}.pt", 64, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    keys = [pivot_cache(cfg, "G", torch.device("cpu"), EncoderInverter(kind="psp", path=str(file))).path(target)
            for file in files]
    assert keys[0] == keys[1] != keys[2]


def test_training_is_seeded_and_writes_an_encoder_load_encoder_reads(tmp_path):
    """Same command and seed: the same bytes; another seed: other weights (both phases, e4e's stages)."""
    def train(name: str, seed: int) -> Path:
        synthfaces_encoders.train("e4e", tmp_path / name, seed=seed, latent_steps=2, steps=3, device="cpu", batch=3,
                                  latent_batch=4, progressive_every=1, sizes=TINY)
        return tmp_path / name / shipped.ENCODER_FILES["e4e"]
    first, again, other = train("first", 0), train("again", 0), train("other", 1)
    assert first.read_bytes() == again.read_bytes() != other.read_bytes()
    encoder = load_encoder(str(first))
    assert (encoder.kind, encoder.num_ws, encoder.w_dim, encoder.input_size) == ("e4e", 10, 256, (64, 64))

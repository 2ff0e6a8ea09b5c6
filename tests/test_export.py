"""python -m pti_lab.export: a run's tuned generator in the rosinality, official and pti-lab formats.

Each format is written from a real run (PTI on a small generator read from an official-format
pickle), read back with load_generator and must render the tuned reconstruction within 1e-4. The
official format is checked once against NVIDIA's own loader: tests/golden/export/official_tuned.pt
holds what stylegan2-ada-pytorch's legacy.load_network_pkl made of an exported pickle
(tests/golden/export/make_official_golden.py has the command and the numbers it printed).
"""

import io
import pickletools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pti_lab.errors import CheckpointError
from pti_lab.export import main as export_main
from pti_lab.finished_run import open_image_dir
from pti_lab.models import load_generator
from pti_lab.models.checkpoints import OFFICIAL_PICKLE_GLOBALS, record_state_dict
from pti_lab.models.checkpoint_writers import official_pickle, rosinality_checkpoint, save_official, save_rosinality
from pti_lab.models.stylegan2 import Generator
from pti_lab.safe_pickle import SafeUnpickler
from tests.conftest import REPO, run_py
from tests.official_pickle import dumps_network_pickle

GOLDEN = Path(__file__).resolve().parent / "golden" / "export"


def seeded_generator(seed: int, **kwargs) -> Generator:
    """A generator whose every tensor matters (zero-initialised biases and noise strengths randomised)."""
    torch.manual_seed(seed)
    G = Generator(c_dim=0, img_channels=3, mapping_kwargs=dict(num_layers=2), **kwargs)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("bias", "noise_strength")):
                p.add_(torch.randn_like(p) * 0.3)
        G.mapping.w_avg.normal_()
    return G.eval().requires_grad_(False)


def official_base_generator() -> Generator:
    """A small StyleGAN2: 32 px, z = w = 32, 32 channels."""
    return seeded_generator(7, z_dim=32, w_dim=32, img_resolution=32,
                            synthesis_kwargs=dict(channel_base=512, channel_max=32))


def rosinality_base_generator() -> Generator:
    """The sizes of rosinality's Generator(size=8, style_dim=32, n_mlp=2): 512 channels."""
    return seeded_generator(8, z_dim=32, w_dim=32, img_resolution=8,
                            synthesis_kwargs=dict(channel_base=4096, channel_max=512))


def tuned_copy(G: Generator) -> Generator:
    """G with seeded changes to every synthesis parameter, standing in for a tuned generator."""
    tuned = Generator(**G.init_kwargs)
    tuned.load_state_dict(G.state_dict())
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if name.startswith("synthesis."):
                p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return tuned.eval().requires_grad_(False)


def golden_latents(G: Generator) -> torch.Tensor:
    z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return G.mapping(z, None, truncation_psi=0.8)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished PTI run (5 + 5 steps, one image) whose base generator is an official-format pickle."""
    root = tmp_path_factory.mktemp("export")
    base = root / "base.pkl"
    base.write_bytes(dumps_network_pickle(official_base_generator()))
    run_py(f"generator.path={base}", "data.limit=1", "inverter.steps=5", "tuner.steps=5", "logger=none",
           "metrics=reconstruction", "identity=none", "preview=null", f"hydra.run.dir={root / 'run'}")
    return root / "run"


def export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pti_lab.export", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("fmt", ["rosinality", "official", "pti-lab"])
def test_each_format_round_trips(run_dir, tmp_path, capsys, fmt):
    image_dir = run_dir / "images" / "ood_000"
    out = tmp_path / f"tuned.{fmt}"
    assert export_main([str(image_dir), "--format", fmt, "--out", str(out)]) == 0
    assert "within 0.0e+00" in capsys.readouterr().out  # the same float32 tensors: exactly the same image

    image = open_image_dir(image_dir)
    reloaded = load_generator(out)
    with torch.no_grad():
        expected = image.render(image.pivot)
        error = (reloaded.synthesis(image.pivot, noise_mode="const") - expected).abs().max().item()
    assert error <= 1e-4
    # It is the tuned generator, not the base: the base renders the pivot visibly differently.
    assert (image.render(image.pivot, original=True) - expected).abs().max().item() > 1e-2
    if fmt == "rosinality":  # the layout rosinality's Generator.load_state_dict(strict=True) expects
        ckpt = torch.load(out, weights_only=True)
        assert sorted(ckpt) == ["g_ema", "latent_avg"] and ckpt["latent_avg"].shape == (32,)
        sd = ckpt["g_ema"]
        assert sd["convs.0.conv.weight"].shape == (1, 32, 32, 3, 3) and sd["noises.noise_0"].shape == (1, 1, 4, 4)
        assert sd["to_rgbs.0.bias"].shape == (1, 3, 1, 1) and sd["conv1.noise.weight"].shape == (1,)
        assert torch.allclose(sd["convs.0.conv.blur.kernel"].sum(), torch.tensor(4.0))  # rosinality's up**2 gain
        assert len([k for k in sd if k.startswith("noises.")]) == 2 * 3 + 1


def test_official_export_keeps_the_rest_of_the_users_pickle(tmp_path):
    base = official_base_generator()
    path = tmp_path / "base.pkl"
    path.write_bytes(dumps_network_pickle(base, extra={"note": "kept"}))
    data = official_pickle(tuned_copy(base), path)
    # The file's other networks and settings are the user's, unchanged; G_ema holds the tuned weights.
    original = SafeUnpickler(io.BytesIO(path.read_bytes()), OFFICIAL_PICKLE_GLOBALS).load()
    written = SafeUnpickler(io.BytesIO(data), OFFICIAL_PICKLE_GLOBALS).load()
    assert sorted(written) == sorted(original) and written["note"] == "kept"
    assert written["G_ema"].module_src == original["G_ema"].module_src
    assert dict(written["training_set_kwargs"]) == dict(original["training_set_kwargs"])
    untouched = record_state_dict(written["G"])
    assert all(torch.equal(untouched[k], t) for k, t in base.state_dict().items())
    tuned = record_state_dict(written["G_ema"])
    assert not torch.equal(tuned["synthesis.b8.conv0.weight"], base.state_dict()["synthesis.b8.conv0.weight"])
    b4 = written["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b4"]
    assert isinstance(b4.state["_parameters"]["const"], torch.nn.Parameter)  # parameters stay parameters
    # The global names are the official ones, and nothing of pti-lab's is named in the file.
    names = {arg for op, arg, _ in pickletools.genops(data) if op.name in ("SHORT_BINUNICODE", "BINUNICODE")}
    assert {"torch_utils.persistence", "_reconstruct_persistent_obj", "dnnlib.util", "EasyDict"} <= names
    assert not any("pti_lab" in str(name) for name in names)


def test_official_export_matches_nvidias_loader(tmp_path):
    """The tensors an official export holds render, through our loader, what NVIDIA's loader rendered of them."""
    golden = torch.load(GOLDEN / "official_tuned.pt", weights_only=True)
    base = official_base_generator()
    tuned = tuned_copy(base)
    original = tmp_path / "base.pkl"
    original.write_bytes(dumps_network_pickle(base))
    reloaded = load_generator(save_official(tuned, original, tmp_path / "tuned.pkl"))
    ws = golden_latents(base)
    assert torch.allclose(ws, golden["ws"], atol=1e-6)
    with torch.no_grad():
        image = reloaded.synthesis(ws, noise_mode="const")
        mapped = reloaded.mapping(golden["z"], None, truncation_psi=0.8)
    assert (image - golden["images"]).abs().max().item() <= 1e-4
    assert (mapped - golden["ws_nvidia"]).abs().max().item() <= 1e-5


def test_rosinality_export_matches_rosinalitys_generator(tmp_path):
    """rosinality's own Generator, strictly loading a save_rosinality file, rendered these (make_rosinality_golden.py)."""
    golden = torch.load(GOLDEN / "rosinality_base.pt", weights_only=True)
    G = rosinality_base_generator()
    reloaded = load_generator(save_rosinality(G, tmp_path / "g.pt"))
    with torch.no_grad():
        assert (reloaded.mapping(golden["z"], None) - golden["ws"]).abs().max().item() <= 1e-5
        assert (reloaded.synthesis(golden["ws"], noise_mode="const") - golden["images"]).abs().max().item() <= 1e-4
        assert (reloaded(golden["z"], None, noise_mode="const") - golden["images_z"]).abs().max().item() <= 1e-4


def test_bad_inputs_get_one_line(run_dir, tmp_path):
    result = export(run_dir, "--format", "pti-lab", "--out", tmp_path / "x.pt")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "not an image directory of a run" in result.stderr and "Traceback" not in result.stderr
    result = export(run_dir / "images" / "ood_000", "--format", "official", "--out", tmp_path / "x.pkl",
                    "--generator", tmp_path / "missing.pkl")
    assert result.returncode == 1 and "missing.pkl is missing" in result.stderr
    other = tmp_path / "other.pkl"
    other.write_bytes(dumps_network_pickle(tuned_copy(official_base_generator())))
    result = export(run_dir / "images" / "ood_000", "--format", "official", "--out", tmp_path / "x.pkl",
                    "--generator", other)
    assert result.returncode == 1 and "not the one this run was tuned from" in result.stderr
    assert not (tmp_path / "x.pkl").exists()


def test_rosinality_refuses_what_rosinality_cannot_hold():
    G = Generator(z_dim=16, c_dim=0, w_dim=32, img_resolution=8, img_channels=3,
                  synthesis_kwargs=dict(channel_base=64, channel_max=16))
    with pytest.raises(CheckpointError, match="z_dim 16, w_dim 32"):
        rosinality_checkpoint(G)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=8, img_channels=3,
                  synthesis_kwargs=dict(channel_base=64, channel_max=16, conv_clamp=256))
    with pytest.raises(CheckpointError, match="conv_clamp"):
        rosinality_checkpoint(G)

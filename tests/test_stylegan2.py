"""The StyleGAN2 generator: official semantics (golden images from the official code) and interface."""

from pathlib import Path

import pytest
import torch

from pti_lab.models import Generator
from tests.conftest import FIXTURES, small_generator

GOLDEN_DIR = FIXTURES / "official_stylegan2"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.pt"))


def load_golden(path: Path) -> tuple[Generator, dict]:
    golden = torch.load(path, weights_only=True)
    G = Generator(**golden["init_kwargs"]).eval()
    G.load_state_dict(golden["state_dict"], strict=True)
    return G, golden


def test_golden_files_exist():
    names = {p.stem for p in GOLDEN_FILES}
    assert {"res16_base", "res32_clamp", "res8_cond_gray", "res64_small"} <= names, names


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("fused", [None, True, False])
def test_reproduces_official_images(path, fused):
    G, golden = load_golden(path)
    z, c = golden["z"], golden["c"]
    for case in golden["cases"]:
        with torch.no_grad():
            ws = G.mapping(z, c, truncation_psi=case["truncation_psi"], truncation_cutoff=case["truncation_cutoff"])
            img = G.synthesis(ws, noise_mode=case["noise_mode"], fused_modconv=fused, force_fp32=True)
        scale = case["img"].abs().max().item()
        assert torch.allclose(ws, case["ws"], rtol=0, atol=1e-5 * case["ws"].abs().max().item())
        error = (img - case["img"]).abs().max().item()
        assert error < 1e-4 * scale, f"{path.stem} {case['noise_mode']} psi={case['truncation_psi']}: {error}"


@pytest.mark.parametrize("path", GOLDEN_FILES[:1], ids=lambda p: p.stem)
def test_batch_of_one_matches_batch(path):
    G, golden = load_golden(path)
    case = golden["cases"][0]
    with torch.no_grad():
        single = G(golden["z"][1:], golden["c"][1:], noise_mode=case["noise_mode"])
    assert (single - case["img"][1:]).abs().max() < 1e-4 * case["img"].abs().max()


def test_clamp_fixture_really_clamps():
    G, golden = load_golden(GOLDEN_DIR / "res32_clamp.pt")
    assert G.synthesis_kwargs["conv_clamp"] == 0.5
    unclamped = Generator(**{**golden["init_kwargs"], "synthesis_kwargs": {
        **golden["init_kwargs"]["synthesis_kwargs"], "conv_clamp": None}}).eval()
    unclamped.load_state_dict(golden["state_dict"])
    with torch.no_grad():
        a = G(golden["z"], golden["c"], noise_mode="const")
        b = unclamped(golden["z"], golden["c"], noise_mode="const")
    assert (a - b).abs().max() > 0.1
    # Each ToRGB output is clamped; the image sums them over blocks (skip architecture).
    num_blocks = len(G.synthesis.block_resolutions)
    assert a.abs().max() <= 0.5 * num_blocks + 1e-6 < b.abs().max()


def test_official_interface_and_names():
    G = small_generator()
    assert (G.z_dim, G.w_dim, G.img_resolution, G.img_channels, G.num_ws) == (32, 32, 16, 3, 6)
    assert G.mapping.w_avg.shape == (32,)
    names = set(G.state_dict())
    for name in ["mapping.fc0.weight", "mapping.fc1.bias", "mapping.w_avg", "synthesis.b4.const",
                 "synthesis.b4.conv1.noise_const", "synthesis.b4.conv1.noise_strength",
                 "synthesis.b8.conv0.affine.weight", "synthesis.b8.conv0.resample_filter",
                 "synthesis.b8.resample_filter", "synthesis.b8.torgb.weight", "synthesis.b16.torgb.affine.bias"]:
        assert name in names, name
    z = torch.randn(3, 32)
    ws = G.mapping(z, None)
    assert ws.shape == (3, 6, 32)  # [N, num_ws, w_dim]
    img = G.synthesis(ws, noise_mode="const")
    assert img.shape == (3, 3, 16, 16)  # [NCHW]
    assert torch.equal(G(z, None, noise_mode="const"), img)


@pytest.mark.parametrize("resolution,num_ws", [(4, 2), (8, 4), (64, 10), (256, 14), (1024, 18)])
def test_num_ws_counts_conv_and_torgb_layers(resolution, num_ws):
    # One conv at 4 px, two per block above it, plus the last block's ToRGB: 18 at 1024 px.
    G = Generator(8, 0, 8, resolution, 3, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=4096, channel_max=4))
    assert G.num_ws == num_ws


def test_noise_modes():
    G = small_generator()
    ws = G.mapping(torch.randn(2, 32), None)
    with torch.no_grad():
        const_a = G.synthesis(ws, noise_mode="const")
        const_b = G.synthesis(ws, noise_mode="const")
        none = G.synthesis(ws, noise_mode="none")
        random_a = G.synthesis(ws, noise_mode="random")
        random_b = G.synthesis(ws, noise_mode="random")
    assert torch.equal(const_a, const_b)
    assert (const_a - none).abs().max() > 1e-3
    assert (random_a - random_b).abs().max() > 1e-3
    with pytest.raises(AssertionError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


def test_truncation():
    G = small_generator()
    z = torch.randn(4, 32)
    ws = G.mapping(z, None)
    at_mean = G.mapping(z, None, truncation_psi=0)
    assert torch.allclose(at_mean, G.mapping.w_avg.expand_as(at_mean))
    cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], G.mapping.w_avg.lerp(ws[:, :2], 0.5), atol=1e-6)
    assert torch.equal(cut[:, 2:], ws[:, 2:])


def test_w_avg_tracks_mapped_samples_in_training_mode():
    G = small_generator()
    before = G.mapping.w_avg.clone()
    G.eval()
    G.mapping(torch.randn(8, 32), None)
    assert torch.equal(G.mapping.w_avg, before)
    G.train()
    ws = G.mapping(torch.randn(8, 32), None)
    assert torch.allclose(G.mapping.w_avg, ws[:, 0].mean(0).lerp(before, 0.995), atol=1e-6)


def test_gradients_reach_latents_and_weights():
    G = small_generator().requires_grad_(True)
    ws = G.mapping(torch.randn(2, 32), None).detach().requires_grad_(True)
    G.synthesis(ws, noise_mode="const").square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    for name in ["synthesis.b16.conv0.weight", "synthesis.b4.const", "synthesis.b8.conv1.noise_strength"]:
        assert G.get_parameter(name).grad.abs().sum() > 0, name


def test_conditional_generator_needs_labels():
    G = Generator(16, 4, 16, 8, 1, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=16)).eval()
    img = G(torch.randn(2, 16), torch.eye(4)[:2], noise_mode="none")
    assert img.shape == (2, 1, 8, 8)
    with pytest.raises(AssertionError, match=r"c must be \[N, 4\]"):
        G(torch.randn(2, 16), None)


def test_rejects_bad_shapes():
    G = small_generator()
    with pytest.raises(AssertionError, match=r"ws must be \[N, 6, 32\]"):
        G.synthesis(torch.randn(2, 5, 32))
    with pytest.raises(AssertionError, match="power of two"):
        Generator(8, 0, 8, 48, 3)
    with pytest.raises(AssertionError, match="no channels at 256 px"):
        Generator(8, 0, 8, 256, 3, synthesis_kwargs=dict(channel_base=64))


def test_orig_architecture_has_one_torgb():
    G = small_generator(architecture="orig")
    assert [n for n in G.state_dict() if "torgb.weight" in n] == ["synthesis.b16.torgb.weight"]
    assert G.num_ws == 6
    assert G(torch.randn(2, 32), None, noise_mode="const").shape == (2, 3, 16, 16)

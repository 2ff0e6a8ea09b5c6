"""Inverters (W, W+, mean, random) and the W statistics cache, on a tiny 16 px generator."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pti_lab.config import check_components
from pti_lab.errors import BadInputError
from pti_lab.inversion import (EncoderInverter, Inversion, MeanInverter, NonFiniteLossError, RandomInverter, WInverter,
                               WPlusInverter, cached_w_stats)
from pti_lab.inversion import w_stats as w_stats_module
from pti_lab.inversion.projector import noise_regularization
from tests.conftest import REPO, inversion_generator

pytestmark = pytest.mark.usefixtures("one_thread", "cache_dir")

INVERTER_OPTIONS = sorted(p.stem for p in (REPO / "conf" / "inverter").glob("*.yaml"))
TEST_STEPS = 40  # with lr 0.1 (the stock StyleGAN2 projector's) enough to recover a 16 px image
TEST_LR = 0.1


def render(G, w: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return G.synthesis(w, noise_mode="const")  # [NCHW]


@pytest.fixture(scope="module")
def G():
    return inversion_generator()


@pytest.fixture(scope="module")
def w_true(G):
    z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return G.mapping(z, None)  # [1, num_ws, w_dim]


@pytest.fixture(scope="module")
def target(G, w_true):
    return render(G, w_true).clamp(-1, 1)


@pytest.fixture(scope="module")
def w_run(G, target):
    """One W inversion shared by several tests, with G's state before and after it."""
    before = {name: t.clone() for name, t in G.state_dict().items()}
    inversion = WInverter(steps=TEST_STEPS, lr=TEST_LR, progress=False).invert(G, target, seed=0)
    after = {name: t.clone() for name, t in G.state_dict().items()}
    return inversion, before, after


def test_w_inversion_recovers_an_image_of_the_generator(G, target, w_run):
    inversion, _, _ = w_run
    assert isinstance(inversion, Inversion) and inversion.steps == TEST_STEPS
    assert len(inversion.losses) == TEST_STEPS and set(inversion.losses[0]) == {"loss", "dist", "noise_reg"}
    assert inversion.seconds > 0
    assert inversion.losses[-1]["dist"] < 0.25 * inversion.losses[0]["dist"]
    mean_pivot = MeanInverter().invert(G, target).pivot
    mse_start = (render(G, mean_pivot) - target).square().mean()
    mse_end = (render(G, inversion.pivot) - target).square().mean()
    assert mse_end < 0.5 * mse_start, (mse_end, mse_start)


def test_w_pivot_is_one_latent_for_all_layers(G, w_run):
    pivot = w_run[0].pivot
    assert pivot.shape == (1, G.num_ws, G.w_dim) and not pivot.requires_grad
    assert torch.equal(pivot, pivot[:, :1].expand_as(pivot))


def test_generator_is_not_modified(G, w_run):
    _, before, after = w_run
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before), "G's weights or noise buffers changed"
    assert any(name.endswith("noise_const") for name in before)
    assert all(p.grad is None for p in G.parameters()), "gradients accumulated in G"


def test_w_plus_pivot_has_one_latent_per_layer(G, target):
    inversion = WPlusInverter(steps=5, lr=TEST_LR, progress=False).invert(G, target, seed=0)
    pivot = inversion.pivot
    assert pivot.shape == (1, G.num_ws, G.w_dim)
    assert all(not torch.equal(pivot[0, i], pivot[0, j]) for i in range(G.num_ws) for j in range(i))
    assert inversion.losses[-1]["dist"] < inversion.losses[0]["dist"]


def test_inversion_is_deterministic_per_seed(G, target):
    inverter = WInverter(steps=3, lr=TEST_LR, progress=False)
    first = inverter.invert(G, target, seed=7)
    again = inverter.invert(G, target, seed=7)
    other = inverter.invert(G, target, seed=8)
    assert torch.equal(first.pivot, again.pivot) and first.losses == again.losses
    assert not torch.equal(first.pivot, other.pivot)


def test_non_finite_loss_stops_with_the_step(target):
    G = inversion_generator()
    with torch.no_grad():
        G.synthesis.b16.torgb.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"WInverter: loss is nan at step 1/2"):
        WInverter(steps=2, progress=False).invert(G, target)


@pytest.mark.parametrize("inverter", [WInverter(progress=False), WPlusInverter(progress=False), MeanInverter(),
                                      RandomInverter()], ids=lambda inv: type(inv).__name__)
def test_wrong_target_size_is_refused(G, inverter):
    with pytest.raises(BadInputError, match=r"target is float32 \[1, 3, 32, 32\]; expected \[1, 3, 16, 16\]"):
        inverter.invert(G, torch.zeros([1, 3, 32, 32]))


def test_mean_inverter_returns_mu_w(G, target):
    inversion = MeanInverter().invert(G, target)
    # mu_w as the official projector computes it: RandomState(123) z, mapped, averaged.
    z = torch.from_numpy(np.random.RandomState(123).randn(600, G.z_dim))
    with torch.no_grad():
        mu = G.mapping(z, None)[:, 0].mean(dim=0)
    assert inversion.steps == 0 and inversion.losses == []
    assert inversion.pivot.shape == (1, G.num_ws, G.w_dim)
    assert torch.allclose(inversion.pivot, mu.expand(1, G.num_ws, -1), atol=1e-5)


@pytest.mark.parametrize("psi", [1.0, 0.5])
def test_random_inverter_returns_f_of_seeded_z(G, target, psi):
    inversion = RandomInverter(truncation_psi=psi).invert(G, target, seed=3)
    z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = G.mapping(z, None, truncation_psi=psi)
    assert inversion.steps == 0 and torch.equal(inversion.pivot, expected)
    assert not torch.equal(inversion.pivot, RandomInverter(psi).invert(G, target, seed=4).pivot)


def test_w_stats_are_computed_once_per_generator(G, target, monkeypatch, tmp_path):
    monkeypatch.setenv("PTI_LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(w_stats_module, "MEMORY_CACHE", {})
    calls = []
    compute = w_stats_module.compute_w_stats
    monkeypatch.setattr(w_stats_module, "compute_w_stats", lambda *args: calls.append(args) or compute(*args))

    inverter = WInverter(steps=1, progress=False)
    inverter.invert(G, target)
    inverter.invert(G, target, seed=1)
    MeanInverter().invert(G, target)
    assert len(calls) == 1
    assert len(list((tmp_path / "w_stats").glob("*.pt"))) == 1

    w_stats_module.MEMORY_CACHE.clear()  # as in a new process: the disk cache answers
    from_disk = cached_w_stats(G)
    assert len(calls) == 1
    assert torch.equal(from_disk.mean, compute(G, 600, 123).mean)

    cached_w_stats(G, num_samples=100)  # other statistics, other key
    G_other = inversion_generator()
    with torch.no_grad():
        G_other.mapping.fc0.weight.mul_(1.01)
    cached_w_stats(G_other)  # other mapping weights, other key
    assert len(calls) == 3


def test_unreadable_cache_file_is_recomputed(G, monkeypatch, tmp_path):
    monkeypatch.setenv("PTI_LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(w_stats_module, "MEMORY_CACHE", {})
    path = tmp_path / "w_stats" / f"{w_stats_module.fingerprint(G, 600, 123)}.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    stats = cached_w_stats(G)
    assert stats.mean.shape == (1, G.w_dim) and stats.std > 0
    assert torch.load(path, weights_only=True)["num_samples"] == 600


def test_learning_rate_schedule():
    inverter = WInverter(steps=100, lr=0.01, progress=False)
    assert inverter.learning_rate(0.0) == 0.0                          # linear warm-up from zero
    assert inverter.learning_rate(0.025) == pytest.approx(0.005)
    assert inverter.learning_rate(0.05) == inverter.learning_rate(0.5) == pytest.approx(0.01)
    assert inverter.learning_rate(0.875) == pytest.approx(0.005)       # half-way down the cosine
    assert 0 < inverter.learning_rate(0.99) < 1e-4


def test_noise_regularization_penalises_structure():
    white = torch.randn([64, 64], generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.avg_pool2d(white[None, None], 5, stride=1, padding=2)[0, 0]
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert noise_regularization([white]) < 0.01 * noise_regularization([smooth])


@pytest.mark.parametrize("option", INVERTER_OPTIONS)
def test_every_inverter_config_instantiates(option):
    cfg = OmegaConf.load(REPO / "conf" / "inverter" / f"{option}.yaml")
    check_components(cfg)
    inverter = instantiate(cfg)
    expected = {"w": WInverter, "w_plus": WPlusInverter, "mean": MeanInverter, "random": RandomInverter,
                "e4e": EncoderInverter, "psp": EncoderInverter}[option]
    assert type(inverter) is expected
    if isinstance(inverter, WInverter):
        assert (inverter.steps, inverter.lr, inverter.noise_reg_weight, inverter.w_avg_samples) == (450, 0.01, 1e5, 600)


def test_inverter_configs_cover_the_six_inverters():
    assert INVERTER_OPTIONS == ["e4e", "mean", "psp", "random", "w", "w_plus"]

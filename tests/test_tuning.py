"""Pivotal and joint tuning, locality regularisation: on a real small generator with real LPIPS."""

import pytest
import torch

from pti_lab.models import LPIPS, Generator
from pti_lab.errors import BadInputError, NonFiniteLossError
from pti_lab.tuning import JointTuner, LocalityRegularizer, PivotalTuner
from tests.conftest import NaNDistance, out_of_domain_target, tuning_generator


@pytest.fixture(scope="module")
def lpips():
    return LPIPS(net="alex")


@pytest.fixture(scope="module")
def G():
    return tuning_generator()


def test_pivotal_tuning_recovers_what_the_pivot_misses(G, lpips):
    target, pivot = out_of_domain_target(G)
    before = lpips(G.synthesis(pivot, noise_mode="const"), target).item()
    tuner = PivotalTuner(steps=60, lr=3e-3, lpips_threshold=None, progress=False)
    result = tuner.tune(G, target, pivot, lpips)
    after = lpips(result.generator.synthesis(pivot, noise_mode="const"), target).item()
    assert after < 0.5 * before, (before, after)
    assert result.steps == 60 and not result.stopped_early and len(result.losses) == 60
    assert result.losses[-1]["loss"] < result.losses[0]["loss"]
    assert torch.equal(result.pivots, pivot)


def test_the_original_generator_is_untouched(G, lpips):
    snapshot = {k: v.clone() for k, v in G.state_dict().items()}
    target, pivot = out_of_domain_target(G)
    result = PivotalTuner(steps=5, lr=1e-2, lpips_threshold=None, progress=False).tune(G, target, pivot, lpips)
    assert all(torch.equal(snapshot[k], v) for k, v in G.state_dict().items())
    tuned = result.generator.state_dict()
    assert not torch.equal(tuned["synthesis.b32.conv1.weight"], snapshot["synthesis.b32.conv1.weight"])
    assert torch.equal(tuned["mapping.fc0.weight"], snapshot["mapping.fc0.weight"])  # not in the graph
    assert not any(p.requires_grad for p in result.generator.parameters())


def test_params_regex_chooses_what_is_tuned(G, lpips):
    target, pivot = out_of_domain_target(G)
    result = PivotalTuner(steps=3, lr=1e-2, lpips_threshold=None, params=r"^synthesis\.b32\.", progress=False).tune(
        G, target, pivot, lpips)
    tuned = result.generator.state_dict()
    assert torch.equal(tuned["synthesis.b16.conv1.weight"], G.state_dict()["synthesis.b16.conv1.weight"])
    assert not torch.equal(tuned["synthesis.b32.conv0.weight"], G.state_dict()["synthesis.b32.conv0.weight"])
    with pytest.raises(BadInputError, match="matches no parameter of the synthesis network"):
        PivotalTuner(steps=1, params="^nothing", progress=False).tune(G, target, pivot, lpips)


def test_early_stop_at_the_lpips_threshold(G, lpips):
    target, pivot = out_of_domain_target(G)
    result = PivotalTuner(steps=50, lpips_threshold=5.0, progress=False).tune(G, target, pivot, lpips)
    assert result.stopped_early and result.steps == 0


def test_auto_threshold_is_the_generators_calibrated_one_else_the_official(G, lpips):
    import copy

    from pti_lab.tuning.pivotal import OFFICIAL_LPIPS_THRESHOLD

    tuner = PivotalTuner(steps=3, progress=False)  # lpips_threshold 'auto'
    assert tuner.early_stop(G) == OFFICIAL_LPIPS_THRESHOLD == 0.06
    calibrated = copy.deepcopy(G)
    calibrated.tuning_lpips_threshold = 5.0  # every LPIPS is below: stops before the first step
    target, pivot = out_of_domain_target(G)
    result = tuner.tune(calibrated, target, pivot, lpips)
    assert result.stopped_early and result.steps == 0
    assert PivotalTuner(steps=3, lpips_threshold=0.1, progress=False).early_stop(calibrated) == 0.1  # explicit wins
    assert PivotalTuner(steps=3, lpips_threshold=None, progress=False).early_stop(calibrated) is None  # never stops


def test_nan_loss_stops_the_image_with_the_step(G, lpips):
    target, pivot = out_of_domain_target(G)

    with pytest.raises(NonFiniteLossError, match="loss is nan at step 2"):
        PivotalTuner(steps=10, lpips_threshold=None, progress=False).tune(G, target, pivot, NaNDistance(lpips, at_call=3))


def test_multi_id_tunes_one_generator_for_all_images(G, lpips):
    targets, pivots = zip(*(out_of_domain_target(G, seed) for seed in (1, 2)))
    targets, pivots = torch.cat(targets), torch.cat(pivots)
    before = lpips(G.synthesis(pivots, noise_mode="const"), targets).flatten()
    result = PivotalTuner(steps=40, lr=3e-3, lpips_threshold=None, progress=False).tune(
        G, targets, pivots, lpips)
    after = lpips(result.generator.synthesis(pivots, noise_mode="const"), targets).flatten()
    assert (after < 0.7 * before).all(), (before, after)


def test_locality_step_has_length_alpha():
    regularizer = LocalityRegularizer(alpha=30.0)
    pivot = torch.randn(1, 6, 32)
    w_z = torch.randn(4, 6, 32) * 5
    w_r = regularizer.move_towards(pivot, w_z)
    assert torch.allclose((w_r - pivot).flatten(1).norm(dim=1), torch.full([4], 30.0), atol=1e-4)
    cosine = torch.nn.functional.cosine_similarity((w_r - pivot).flatten(1), (w_z - pivot).flatten(1))
    assert torch.allclose(cosine, torch.ones(4), atol=1e-5)


def test_locality_loss_is_zero_for_an_unchanged_generator(G, lpips):
    pivots = G.mapping(torch.randn(2, 32), None)[None]  # one generator, two pivots [1, 2, num_ws, w_dim]
    untuned = lambda w_r: G.synthesis(w_r.flatten(0, 1), noise_mode="none").reshape(*w_r.shape[:2], 3, G.img_resolution, G.img_resolution)
    loss, lpips_part, mse_part = LocalityRegularizer(samples=2).loss(G, untuned, pivots, lpips, [torch.Generator()])
    assert loss.tolist() == lpips_part.tolist() == mse_part.tolist() == [0.0]


def test_locality_regularisation_reduces_drift_around_the_pivot(G, lpips):
    # Probes at the regulariser's distance from the pivot, in other directions than it samples.
    # alpha = 6 is ~0.3 of the typical distance between latents of this small W space (~20).
    target, pivot = out_of_domain_target(G)
    regularizer = LocalityRegularizer(alpha=6.0, samples=2)
    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(9))
    probe = regularizer.move_towards(pivot, G.mapping(z, None, truncation_psi=0.5))

    def drift(tuned):
        with torch.no_grad():
            return lpips(G.synthesis(probe, noise_mode="none"), tuned.synthesis(probe, noise_mode="none")).mean().item()

    tuner = PivotalTuner(steps=40, lr=3e-3, lpips_threshold=None, progress=False)
    plain = tuner.tune(G, target, pivot, lpips)
    regularized = tuner.tune(G, target, pivot, lpips, regularizer)
    assert drift(regularized.generator) < 0.5 * drift(plain.generator)  # measured: 0.06 vs 0.26
    assert regularized.losses[-1]["lpips"] < 2 * plain.losses[-1]["lpips"] + 0.01  # the fit is kept
    assert "locality_lpips" in regularized.losses[0]


def test_joint_tuning_moves_the_latent_within_w(G, lpips):
    target, _ = out_of_domain_target(G)
    start = G.mapping.w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1)
    result = JointTuner(steps=20, lr=3e-3, w_lr=0.05, lpips_threshold=None, progress=False).tune(G, target, start, lpips)
    assert not torch.allclose(result.pivots, start)
    assert torch.equal(result.pivots, result.pivots[:, :1].expand_as(result.pivots))  # still one w per image
    assert result.losses[-1]["loss"] < result.losses[0]["loss"]


def test_a_generator_whose_renders_span_ten_tunes(lpips):
    """Official networks with fresh weights render far outside [-1, 1]; tuning must not refuse its
    own renders (only the targets are images that must be in range)."""
    torch.manual_seed(5)
    G = Generator(32, 0, 32, 32, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=512, channel_max=32)).eval().requires_grad_(False)
    with torch.no_grad():
        for res in G.synthesis.block_resolutions:  # as an official 64 px network with fresh weights
            getattr(G.synthesis, f"b{res}").torgb.weight.mul_(4)
    pivot = G.mapping(torch.randn(1, 32), None)
    with torch.no_grad():
        raw = G.synthesis(pivot, noise_mode="const")
    assert raw.abs().max() > 5  # the case: renders span about +-10
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = PivotalTuner(steps=40, lr=3e-3, lpips_threshold=None, progress=False).tune(G, target, pivot, lpips)
    before = lpips(raw.clamp(-1, 1), target).item()
    with torch.no_grad():
        after = lpips(result.generator.synthesis(pivot, noise_mode="const").clamp(-1, 1), target).item()
    assert after < 0.8 * before, (before, after)


def test_on_step_sees_every_step_with_its_losses_and_renders(G, lpips):
    target, pivot = out_of_domain_target(G)
    seen = []
    result = PivotalTuner(steps=4, lr=1e-3, lpips_threshold=None, progress=False).tune(
        G, target, pivot, lpips, on_step=lambda step, losses, renders: seen.append((step, losses, renders.shape)))
    assert [step for step, _, _ in seen] == [0, 1, 2, 3]
    assert [losses for _, losses, _ in seen] == result.losses
    assert all(shape == target.shape for _, _, shape in seen)


def test_the_shipped_synthfaces_generator_tunes_without_early_stop():
    """Measured (experiments/early_stop_curve.py): on 64 px synthfaces identity keeps rising to the
    last of 350 steps, long after LPIPS passes the official 0.06."""
    from pti_lab.generators import make_generator

    assert PivotalTuner().early_stop(make_generator()) is None  # lpips_threshold=auto: never stops

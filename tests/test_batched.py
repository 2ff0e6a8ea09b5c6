"""Batched PTI: K images inverted and K generators tuned in one pass, each image as if alone.

Every test runs the batched call and the one-image call on the same images and compares them: pivots,
tuned weights, renders and per-step losses equal within float tolerance, early stops and failures per
image. The batch changes only the order of floating-point sums, but Adam divides each gradient by its
own running size: an element whose gradient is near zero moves by up to the learning rate in a
direction set by rounding noise. So latents and weights are compared on average over their elements
(a few such elements cannot move the mean), renders and losses element by element.
"""

import math

import pytest
import torch

from pti_lab.batching.stacked import StackedAdam, StackedSynthesis
from pti_lab.errors import BadInputError, NonFiniteLossError
from pti_lab.inversion import Inversion, WInverter, WPlusInverter
from pti_lab.inversion.projector import noise_regularization
from pti_lab.models import LPIPS
from pti_lab.precision import autocast_context
from pti_lab.tuning import JointTuner, LocalityRegularizer, PivotalTuner, Tuning
from tests.conftest import NaNDistance, inversion_generator, out_of_domain_target, tuning_generator

pytestmark = pytest.mark.usefixtures("one_thread", "cache_dir")  # tiny networks; W statistics in a temporary cache


@pytest.fixture(scope="module")
def G():
    return tuning_generator()


@pytest.fixture(scope="module")
def lpips():
    return LPIPS(net="alex")


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> bool:
    return (a - b).abs().max().item() <= rel * max(b.abs().max().item(), 1e-3)


def moved_alike(batched: torch.Tensor, alone: torch.Tensor, start: torch.Tensor, rel: float = 0.01) -> bool:
    """The two optimisations took `start` to the same place: mean |difference| <= rel * mean |movement|."""
    return (batched - alone).abs().mean().item() <= rel * (alone - start).abs().mean().item()


def same_losses(batched: list[dict], alone: list[dict], rel: float = 1e-3) -> bool:
    return len(batched) == len(alone) and all(
        batched_step.keys() == alone_step.keys() and
        all(math.isclose(batched_step[key], alone_step[key], rel_tol=rel, abs_tol=1e-7) for key in alone_step)
        for batched_step, alone_step in zip(batched, alone))


# -- stacked Adam -----------------------------------------------------------------------------------


def test_stacked_adam_is_adam_per_row_and_drops_rows():
    torch.manual_seed(0)
    start, targets = torch.randn(3, 5), torch.randn(3, 5)
    stacked = StackedAdam([{"x": start}], [0.1])
    alone = [torch.nn.Parameter(start[k].clone()) for k in range(3)]
    optimizers = [torch.optim.Adam([p], lr=0.1) for p in alone]
    for step in range(6):
        x = stacked[0]["x"]
        stacked.step((x - targets[: len(x)]).pow(2).sum(1).mul(torch.arange(1.0, len(x) + 1)).sum())
        for k, (p, opt) in enumerate(zip(alone, optimizers)):
            if step >= 3 and k == 2:
                continue
            opt.zero_grad()
            ((p - targets[k]).pow(2).sum() * (k + 1)).backward()
            opt.step()
        if step == 2:
            stacked.keep(torch.tensor([True, True, False]))
    assert stacked[0]["x"].shape == (2, 5)
    for k in range(2):
        assert torch.allclose(stacked[0]["x"][k], alone[k].detach(), atol=1e-6)


# -- inversion ----------------------------------------------------------------------------------------


def assert_inverted_alike(G, batched: Inversion, alone: Inversion):
    assert same_losses(batched.losses, alone.losses)
    start = G.mapping.w_avg.reshape(1, 1, -1)
    assert not torch.equal(alone.pivot, start.expand_as(alone.pivot)) and moved_alike(batched.pivot, alone.pivot, start)
    with torch.no_grad():
        assert close(G.synthesis(batched.pivot, noise_mode="const"), G.synthesis(alone.pivot, noise_mode="const"), 1e-2)


@pytest.fixture(scope="module")
def inversion_targets():
    G = inversion_generator()
    z = torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        images = G.synthesis(G.mapping(z, None), noise_mode="const").clamp(-1, 1)
    return G, list(images.split(1))


@pytest.mark.parametrize("cls", [WInverter, WPlusInverter])
def test_batched_inversion_equals_one_at_a_time(inversion_targets, cls):
    G, targets = inversion_targets
    inverter = cls(steps=12, lr=0.1, progress=False)
    seen = {k: [] for k in range(3)}
    batched = inverter.invert_batch(G, targets, seed=3,
                                    on_steps=[lambda s, losses, r, k=k: seen[k].append((s, r.shape)) for k in range(3)])
    for k, target in enumerate(targets):
        alone = inverter.invert(G, target, seed=3)
        assert isinstance(batched[k], Inversion) and batched[k].steps == 12
        assert_inverted_alike(G, batched[k], alone)
        assert seen[k] == [(s, (1, 3, 16, 16)) for s in range(12)]
    assert not torch.equal(batched[0].pivot, batched[1].pivot)


def test_batched_inversion_fails_only_the_image_whose_loss_turns_nan(inversion_targets):
    G, targets = inversion_targets
    inverter = WInverter(steps=6, lr=0.1, progress=False)
    distance = inverter.projector_distance(torch.device("cpu"))
    calls = []

    def nan_in_row_1_at_step_4(feats_x, feats_y):  # the second image's loss is NaN at the 4th step
        value = type(distance).distance(distance, feats_x, feats_y)
        calls.append(1)
        return value * torch.tensor([1.0, float("nan"), 1.0]) if len(calls) == 4 else value

    distance.distance = nan_in_row_1_at_step_4
    try:
        batched = inverter.invert_batch(G, [*targets, torch.zeros([1, 3, 8, 8])], seed=0)
    finally:
        del distance.distance
    assert isinstance(batched[1], NonFiniteLossError) and "loss is nan at step 4/6" in str(batched[1])
    assert isinstance(batched[3], BadInputError) and "expected [1, 3, 16, 16]" in str(batched[3])
    for k in (0, 2):
        assert_inverted_alike(G, batched[k], inverter.invert(G, targets[k], seed=0))


def test_noise_regularization_per_image_equals_alone():
    maps = [torch.randn(3, 1, 16, 16), torch.randn(3, 1, 8, 8)]
    per_image = noise_regularization(maps)
    assert per_image.shape == (3,)
    for k in range(3):
        assert math.isclose(per_image[k].item(), noise_regularization([m[k, 0] for m in maps]).item(), rel_tol=1e-5)


# -- tuning --------------------------------------------------------------------------------------------


def tuning_images(G, seeds=(1, 2, 3)):
    targets, pivots = zip(*(out_of_domain_target(G, seed) for seed in seeds))
    return list(targets), [p.detach() for p in pivots]


def assert_tuned_alike(G, batched: Tuning, alone: Tuning, pivot):
    assert batched.steps == alone.steps and batched.stopped_early == alone.stopped_early
    assert same_losses(batched.losses, alone.losses)
    assert torch.equal(batched.pivots, alone.pivots) or close(batched.pivots, alone.pivots, 1e-3)
    flat = lambda generator: torch.cat([p.flatten() for p in generator.synthesis.parameters()])  # noqa: E731
    if alone.steps > 0:
        assert moved_alike(flat(batched.generator), flat(alone.generator), flat(G))
    else:
        assert torch.equal(flat(batched.generator), flat(G)) and torch.equal(flat(alone.generator), flat(G))
    with torch.no_grad():
        image_b = batched.generator.synthesis(pivot, noise_mode="const")
        image_a = alone.generator.synthesis(pivot, noise_mode="const")
    assert close(image_b, image_a, rel=1e-2)


def test_batched_tuning_equals_one_at_a_time(G, lpips):
    targets, pivots = tuning_images(G)
    tuner = PivotalTuner(steps=8, lr=3e-3, lpips_threshold=None, progress=False)
    seen = []
    batched = tuner.tune_batch(G, targets, pivots, lpips,
                               on_steps=[None, lambda s, losses, r: seen.append((s, losses, r.shape)), None])
    for k in range(3):
        alone = tuner.tune(G, targets[k], pivots[k], lpips)
        assert_tuned_alike(G, batched[k], alone, pivots[k])
    assert [s for s, _, _ in seen] == list(range(8)) and [l for _, l, _ in seen] == batched[1].losses
    assert all(shape == (1, 3, 32, 32) for _, _, shape in seen)
    weights = [result.generator.synthesis.b32.conv1.weight for result in batched]
    assert not torch.equal(weights[0], weights[1])  # each image its own generator


def test_batched_tuning_with_locality_regulariser_equals_one_at_a_time(G, lpips):
    targets, pivots = tuning_images(G, seeds=(4, 5))
    tuner = PivotalTuner(steps=5, lr=3e-3, lpips_threshold=None, progress=False)
    regularizer = LocalityRegularizer(alpha=6.0, samples=2)
    batched = tuner.tune_batch(G, targets, pivots, lpips, regularizer)
    for k in range(2):
        alone = tuner.tune(G, targets[k], pivots[k], lpips, regularizer)
        assert "locality_lpips" in alone.losses[0]
        assert_tuned_alike(G, batched[k], alone, pivots[k])


def test_each_image_stops_early_on_its_own(G, lpips):
    targets, pivots = tuning_images(G, seeds=(6, 7))
    with torch.no_grad():  # an image the generator already renders at its pivot: stops before step 0
        targets.append(G.synthesis(pivots[0], noise_mode="const").clamp(-1, 1))
    pivots.append(pivots[0])
    curve = PivotalTuner(steps=12, lr=3e-3, lpips_threshold=None, progress=False).tune(G, targets[0], pivots[0], lpips)
    threshold = curve.losses[5]["lpips"] * (1 + 1e-5)  # the first image reaches it after a few steps
    tuner = PivotalTuner(steps=12, lr=3e-3, lpips_threshold=threshold, progress=False)
    batched = tuner.tune_batch(G, targets, pivots, lpips)
    alone = [tuner.tune(G, t, p, lpips) for t, p in zip(targets, pivots)]
    assert [r.steps for r in alone][2] == 0 and 0 < alone[0].steps < 12
    assert len({r.steps for r in alone}) == 3, [r.steps for r in alone]
    for k in range(3):
        assert_tuned_alike(G, batched[k], alone[k], pivots[k])


def test_batched_tuning_fails_only_the_image_whose_loss_turns_nan(G, lpips):
    targets, pivots = tuning_images(G)

    tuner = PivotalTuner(steps=6, lr=3e-3, lpips_threshold=None, progress=False)
    batched = tuner.tune_batch(G, targets, pivots, NaNDistance(lpips, at_call=3, rows=[1]))
    assert isinstance(batched[1], NonFiniteLossError) and "loss is nan at step 2" in str(batched[1])
    for k in (0, 2):
        assert_tuned_alike(G, batched[k], tuner.tune(G, targets[k], pivots[k], lpips), pivots[k])


def test_batched_joint_tuning_equals_one_at_a_time(G, lpips):
    targets, _ = tuning_images(G, seeds=(8, 9))
    start = G.mapping.w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1)
    tuner = JointTuner(steps=5, lr=3e-3, w_lr=0.05, lpips_threshold=None, progress=False)
    batched = tuner.tune_batch(G, targets, [start, start], lpips)
    for k in range(2):
        alone = tuner.tune(G, targets[k], start, lpips)
        assert not torch.equal(alone.pivots, start)
        assert_tuned_alike(G, batched[k], alone, alone.pivots)


@pytest.mark.filterwarnings("ignore:autocast=bf16 on cpu")  # CPUs without native bf16 emulate it (slower)
def test_bf16_autocast_batches_give_the_fp32_results_within_bf16_precision(G, lpips, inversion_targets):
    """inverter.autocast=bf16 and tuner.autocast=bf16 (the benchmark's --autocast bf16), on the CPU."""
    targets, pivots = tuning_images(G, seeds=(1, 2))
    inversion_G, inversion_images = inversion_targets
    results = {}
    for autocast in (None, "bf16"):
        tuner = PivotalTuner(steps=6, lr=3e-3, lpips_threshold=None, autocast=autocast, progress=False)
        inverter = WInverter(steps=6, lr=0.1, autocast=autocast, progress=False)
        results[autocast] = (tuner.tune_batch(G, targets, pivots, lpips),
                             [tuner.tune(G, targets[0], pivots[0], lpips)],
                             inverter.invert_batch(inversion_G, inversion_images[:2]))
    for low, high, key in zip(results["bf16"], results[None], ("lpips", "lpips", "dist")):
        for a, b in zip(low, high):
            assert len(a.losses) == len(b.losses) == 6
            assert all(math.isfinite(value) for step in a.losses for value in step.values())
            assert a.losses[-1][key] == pytest.approx(b.losses[-1][key], rel=0.05, abs=0.01), key
            assert a.losses[0][key] != b.losses[0][key], key  # bf16 really ran: its rounding shows


@pytest.mark.filterwarnings("ignore:autocast=bf16 on cpu")
def test_bf16_autocast_reaches_the_generators_of_a_batch(G, monkeypatch):
    """Autocast does not reach inside torch.func.vmap: the K > 1 render casts its convolutions itself, so
    that a batch computes in bf16 like one generator alone (before, the batch's convolutions ran in float32)."""
    synthesis = StackedSynthesis(G, [name for name, _ in G.synthesis.named_parameters()])
    ws = G.mapping(torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(3)), None)[:, None]  # [K, 1, L, w]
    seen = []
    for conv in ("conv2d", "conv_transpose2d"):
        original = getattr(torch.nn.functional, conv)
        monkeypatch.setattr(torch.nn.functional, conv, lambda x, w, *args, _original=original, **kwargs:
                            seen.append((x.dtype, w.dtype)) or _original(x, w, *args, **kwargs))
    with autocast_context("bf16", torch.device("cpu")):
        images = synthesis.render(synthesis.initial(2), ws, "const")  # vmap over the two rows
    assert len(seen) > 2 * G.synthesis.num_ws and set(seen) == {(torch.bfloat16, torch.bfloat16)}
    assert images.isfinite().all()


def test_an_unknown_autocast_is_a_one_line_error():
    for build in (WInverter, PivotalTuner):
        with pytest.raises(BadInputError, match=r"autocast='fp16': expected null \(float32\), auto or one of bf16$"):
            build(autocast="fp16")


def test_auto_autocast_is_bf16_exactly_where_the_hardware_has_it():
    """autocast=auto (+recipe=fast): bf16 on a CPU with AVX512_BF16 or AMX, float32 (no autocast) elsewhere."""
    cpu = torch.device("cpu")
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    with autocast_context("auto", cpu):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == (torch.bfloat16 if native else torch.float32)
    print(f"this CPU {'has' if native else 'lacks'} native bf16: auto computed in {product.dtype}")


# -- the driver ---------------------------------------------------------------------------------------


def test_driver_batch_fails_only_the_image_with_a_nan_loss_and_resumes_it(G, lpips, tmp_path):
    from pti_lab.data import Sample
    from pti_lab.driver import Driver
    from pti_lab.stages import Stages
    from pti_lab.tracking.stage_files import TUNED_FILE
    from pti_lab.tracking.recorder import Recorder
    from pti_lab.tracking.store import RunStore

    targets, _ = tuning_images(G)
    samples = [Sample(f"img{k}", target) for k, target in enumerate(targets)]

    def run(out, batch_size, perceptual):
        stages = Stages(generator=G, inverter=WInverter(steps=4, progress=False), perceptual=perceptual,
                        identity=None, tuner=PivotalTuner(steps=3, lr=3e-3, lpips_threshold=None, progress=False))
        Driver(stages, Recorder(RunStore(out)), batch_size=batch_size).run(samples)
        return RunStore(out)

    alone = run(tmp_path / "one", 1, lpips)
    batch = run(tmp_path / "three", 3, NaNDistance(lpips, at_call=2, rows=[1], size=3))  # not the memory probe's 1 and 2
    assert [f["image"] for f in batch.failed()] == ["img1"]
    assert "tuning: PivotalTuner: loss is nan at step 1" in batch.failed()[0]["reason"]
    assert batch.done("img1", "tuning") is None and not (batch.image_dir("img1") / TUNED_FILE).exists()
    assert batch.done("img1", "inversion") is not None
    for name in ("img0", "img2"):  # the numbers as one at a time (the unit tests above compare them closely)
        for stage in ("inversion", "tuning"):
            row, reference = batch.done(name, stage), alone.done(name, stage)
            assert row["lpips"] == pytest.approx(reference["lpips"], rel=0.02) and row["steps"] == reference["steps"]
        assert (batch.image_dir(name) / TUNED_FILE).is_file()
    stamp = (batch.image_dir("img0") / TUNED_FILE).stat().st_mtime_ns
    resumed = run(tmp_path / "three", 3, lpips)  # the re-run tunes only the failed image
    assert resumed.done("img1", "tuning")["lpips"] == pytest.approx(alone.done("img1", "tuning")["lpips"], rel=0.02)
    assert (batch.image_dir("img0") / TUNED_FILE).stat().st_mtime_ns == stamp


def test_a_batch_that_cannot_fit_fails_before_any_image(G, lpips, tmp_path):
    from pti_lab.batching.memory import available_bytes
    from pti_lab.config import ConfigError
    from pti_lab.data import Sample
    from pti_lab.driver import Driver
    from pti_lab.stages import Stages
    from pti_lab.tracking.recorder import Recorder
    from pti_lab.tracking.store import RunStore

    if available_bytes(torch.device("cpu")) is None:
        pytest.skip("this system does not report its available memory (/proc/meminfo)")
    targets, _ = tuning_images(G, seeds=(1, 2))
    stages = Stages(generator=G, inverter=WInverter(steps=4, progress=False), perceptual=lpips, identity=None,
                    tuner=PivotalTuner(steps=3, lpips_threshold=None, progress=False))
    driver = Driver(stages, Recorder(RunStore(tmp_path)), batch_size=10 ** 9)
    with pytest.raises(ConfigError, match=r"^batch_size=1000000000 does not fit in cpu memory: it needs about "
                                          r"[0-9.]+ GiB \([0-9.]+ GiB per image\), [0-9.]+ GiB can be used; "
                                          r"the largest batch that fits is [0-9]+$"):
        driver.run([Sample(f"img{k}", target) for k, target in enumerate(targets)])
    assert RunStore(tmp_path).results() == [] and not (tmp_path / "images").exists()


def test_driver_batches_an_inversion_only_method_like_one_at_a_time(G, lpips, tmp_path):
    """tuner=none (the W and W+ rows of Table 1): the batch is inverted in one pass, no tuning stage."""
    from pti_lab.data import Sample
    from pti_lab.driver import Driver
    from pti_lab.stages import Stages
    from pti_lab.tracking.recorder import Recorder
    from pti_lab.tracking.store import RunStore

    targets, _ = tuning_images(G, seeds=(1, 2))
    samples = [Sample(f"img{k}", target) for k, target in enumerate(targets)]
    stores = {}
    for batch_size in (1, 2):
        stages = Stages(generator=G, inverter=WInverter(steps=4, progress=False), perceptual=lpips,
                        identity=None, tuner=None)
        Driver(stages, Recorder(RunStore(tmp_path / str(batch_size))), batch_size=batch_size).run(samples)
        stores[batch_size] = RunStore(tmp_path / str(batch_size))
    for sample in samples:
        one, two = (stores[k].done(sample.name, "inversion") for k in (1, 2))
        assert two["lpips"] == pytest.approx(one["lpips"], rel=0.02) and two["steps"] == one["steps"] == 4
        assert stores[2].done(sample.name, "tuning") is None

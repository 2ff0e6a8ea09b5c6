"""Per-image reconstruction metrics on images in [-1, 1]."""

import math

import pytest
import torch
import torch.nn.functional as F

from pti_lab.errors import BadInputError
from pti_lab.metrics.image import lpips, ms_ssim, ms_ssim_betas, mse, psnr, reconstruction_metrics, ssim


def smooth_images(size: int, count: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(count, 3, 8, 8, generator=generator) * 1.6 - 0.8
    return F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def noisy(images: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (images + sigma * torch.randn(images.shape, generator=generator)).clamp(-1, 1)


def test_mse_and_psnr_of_constant_offsets():
    x = smooth_images(64, count=3) * 0.5
    offsets = torch.tensor([0.1, 0.25, 0.5])
    y = x + offsets.view(3, 1, 1, 1)
    expected_mse = offsets ** 2                                     # 0.01, 0.0625, 0.25
    expected_psnr = torch.tensor([10 * math.log10(4 / m) for m in expected_mse.tolist()])  # 26.02, 18.06, 12.04 dB
    torch.testing.assert_close(mse(x, y), expected_mse)
    torch.testing.assert_close(psnr(x, y), expected_psnr)
    assert torch.isinf(psnr(x, x)).all() and (mse(x, x) == 0).all()


def test_ssim_of_identical_images_is_one_and_drops_with_noise():
    x = smooth_images(64)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    assert (ssim(x, noisy(x, 0.3)) < ssim(x, noisy(x, 0.05))).all()


@pytest.mark.parametrize("size, scales", [(16, 1), (32, 2), (64, 3), (100, 3), (128, 4), (255, 4), (256, 5), (1024, 5)])
def test_ms_ssim_scales_follow_image_size(size, scales):
    betas = ms_ssim_betas(size, size)
    assert len(betas) == scales and math.isclose(sum(betas), 1.0)
    assert all(isinstance(beta, float) for beta in betas)


@pytest.mark.parametrize("size", [64, 256])
def test_ms_ssim_works_and_decreases_with_noise(size):
    x = smooth_images(size, count=1)
    values = [ms_ssim(x, noisy(x, sigma)) for sigma in (0.0, 0.05, 0.2, 0.5)]
    torch.testing.assert_close(values[0], torch.ones(1), rtol=0, atol=1e-5)
    for cleaner, noisier in zip(values, values[1:]):
        assert (noisier < cleaner).all()
    assert all(v.shape == (1,) and ((v >= 0) & (v <= 1 + 1e-6)).all() for v in values)


def test_ms_ssim_refuses_tiny_images():
    x = smooth_images(12)
    with pytest.raises(BadInputError, match=r"ms_ssim: x .* at least 16 px"):
        ms_ssim(x, x)


def perturbed_face_pairs(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four synthfaces renders at `size` px, five times over (x [20, 3, size, size]), and as y the
    same faces with noise (std 0.1), a 5x5 box blur, a shift by (3, -2) px, contrast cut to 0.3x,
    and inverted (negative contrast terms: MS-SSIM's relu clipping)."""
    from pti_lab.synthfaces.params import sample_params
    from pti_lab.synthfaces.render import render_torch

    faces = render_torch(sample_params(4, seed=3), size)
    perturbed = (
        noisy(faces, 0.1),
        F.avg_pool2d(faces, 5, stride=1, padding=2, count_include_pad=False),
        torch.roll(faces, shifts=(3, -2), dims=(2, 3)),
        faces * 0.3,
        -faces,
    )
    return faces.repeat(len(perturbed), 1, 1, 1), torch.cat(perturbed)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_metrics_match_torchmetrics(size):
    """Our PSNR, SSIM and MS-SSIM give torchmetrics' values (the ones pti-lab reported when it used
    torchmetrics) with the same settings, per image. Measured max differences: SSIM 1.8e-7, MS-SSIM
    6e-8, PSNR 3.8e-6 dB (float32 rounding)."""
    reference = pytest.importorskip(
        "torchmetrics.functional.image", reason="torchmetrics (pip install -e '.[dev]') is the reference here")
    x, y = perturbed_face_pairs(size)
    window = dict(sigma=1.5, kernel_size=11, data_range=2.0, reduction="none")
    expected = {
        "psnr": reference.peak_signal_noise_ratio(x, y, data_range=2.0, reduction="none", dim=(1, 2, 3)),
        "ssim": reference.structural_similarity_index_measure(x, y, **window),
        "ms_ssim": reference.multiscale_structural_similarity_index_measure(
            x, y, betas=ms_ssim_betas(size, size), normalize="relu", **window),
    }
    ours = {metric.__name__: metric(x, y) for metric in (psnr, ssim, ms_ssim)}
    for name, values in ours.items():
        assert values.shape == (20,) and torch.isfinite(values).all(), name
        torch.testing.assert_close(values, expected[name], rtol=0, atol=1e-5, msg=lambda message: f"{name}: {message}")
    inverted = slice(16, 20)
    assert (ours["ssim"][inverted] < 0).all() and (ours["ms_ssim"][inverted] == 0).all()
    assert 0.4 < ours["ms_ssim"][:16].min() < ours["ms_ssim"][:16].max() < 1


def test_lpips_metric_per_image():
    x = smooth_images(64, count=3)
    y = noisy(x, 0.2)
    values = lpips(x, y)
    assert values.shape == (3,) and (values > 0).all()
    assert (lpips(x, x) == 0).all()
    assert lpips(x, y, net="vgg").shape == (3,)


def test_reconstruction_metrics_keys():
    x = smooth_images(64)
    results = reconstruction_metrics(x, noisy(x, 0.1))
    assert set(results) == {"mse", "psnr", "ssim", "ms_ssim", "lpips"}
    assert all(value.shape == (2,) and torch.isfinite(value).all() for value in results.values())


@pytest.mark.parametrize("metric", [mse, psnr, ssim, ms_ssim, lpips])
def test_bad_inputs_raise(metric):
    x = smooth_images(64)
    name = metric.__name__
    with pytest.raises(BadInputError, match=rf"^{name}: x has values in .*\[0, 255\]") if name != "lpips" else \
            pytest.raises(BadInputError, match=r"^LPIPS\(alex\): x has values in"):
        metric((x + 1) * 127.5, (x + 1) * 127.5)
    with pytest.raises(BadInputError, match="shapes must match"):
        metric(x, x[:1])
    with pytest.raises(BadInputError, match="uint8"):
        metric(x, ((x + 1) * 127.5).to(torch.uint8))


def eye_region_speckle(images: torch.Tensor, sigma: float = 0.1, seed: int = 0) -> torch.Tensor:
    """`images` [N, 3, 64, 64] with pixel noise of std `sigma` over the eyes (rows 22-32, columns
    16-47 of a synthfaces render): the fine, mottled error of a tuned reconstruction's eyes."""
    generator = torch.Generator().manual_seed(seed)
    out = images.clone()
    out[:, :, 22:33, 16:48] += sigma * torch.randn(out[:, :, 22:33, 16:48].shape, generator=generator)
    return out.clamp(-1, 1)


def test_eval_size_256_sees_errors_in_the_eyes_that_64_px_lpips_misses():
    """What `metrics.eval_size=256` is for. Eight synthfaces renders (64 px) with noise of std 0.1
    over the eye region, the kind of error a tuned reconstruction shows there: LPIPS(alex) at 64 px
    is 0.0077 on average, at 256 px (both images upsampled first) 0.057, 4.5x to 22x more per image.
    At 64 px AlexNet's first layer (11x11, stride 4) pools a whole eye into one position.

    A blur of the eye region, by contrast, is seen at both sizes alike (Gaussian sigma 1 px: 0.043 at
    64 px, 0.036 at 256, per-image ratios 0.4 to 2.3): upsampling a 64 px image blurs it too."""
    from pti_lab.metrics.image import reconstruction_row
    from pti_lab.synthfaces.params import sample_params
    from pti_lab.synthfaces.render import render_torch

    faces = render_torch(sample_params(8, seed=3), 64)
    speckled = eye_region_speckle(faces)
    at_64 = torch.tensor([reconstruction_row(faces[i:i + 1], speckled[i:i + 1])["lpips"] for i in range(8)])
    rows_256 = [reconstruction_row(faces[i:i + 1], speckled[i:i + 1], eval_size=256) for i in range(8)]
    at_256 = torch.tensor([row["lpips"] for row in rows_256])
    assert at_64.mean() < 0.015
    assert at_256.mean() > 0.04
    assert (at_256 > 2.5 * at_64).all(), (at_64, at_256)
    assert all(row["eval_size"] == 256 for row in rows_256)
    assert reconstruction_row(faces[:1], speckled[:1])["eval_size"] == 64


def test_eval_size_resizes_like_pil_bilinear():
    """The field's scripts resize PIL images with torchvision's Resize (PIL bilinear, antialiased when
    downsampling); resize_square matches PIL on float images (measured max difference 1.8e-7)."""
    import numpy as np
    import PIL.Image

    from pti_lab.imaging import resize_square

    rng = np.random.default_rng(0)
    for source in (64, 300, 1024):
        plane = rng.random((source, source)).astype(np.float32)
        expected = np.asarray(PIL.Image.fromarray(plane, mode="F").resize((256, 256), PIL.Image.BILINEAR))
        resized = resize_square(torch.from_numpy(plane)[None, None], 256)[0, 0].numpy()
        assert np.abs(resized - expected).max() < 1e-5, source


def test_run_metrics_refuses_a_bad_eval_size():
    from pti_lab.metrics.run_metrics import RunMetrics

    for bad in (8, "256", 256.0, True):
        with pytest.raises(BadInputError, match="metrics.eval_size must be null or an integer >= 16"):
            RunMetrics(eval_size=bad)
    assert RunMetrics(eval_size=None).size_at(64) == 64 and RunMetrics().size_at(64) == 256

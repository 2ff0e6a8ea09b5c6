"""Per-image reconstruction metrics on image batches in [-1, 1].

Every function takes x, y: float [N, 3, H, W] in [-1, 1] (same shape) and returns one value per
image, a float tensor [N]. They are metrics, computed without autograd; bad inputs ([0, 255]
images, wrong layout, mismatched shapes) raise BadInputError (see pti_lab.imaging).

    mse      mean squared error over pixels and channels, in [0, 4]; 0 for identical images
    psnr     10 log10(data_range^2 / mse) in dB with data_range 2 (the width of [-1, 1]);
             +inf for identical images
    ssim     SSIM with a Gaussian window (sigma 1.5, 11 taps), K1 0.01, K2 0.03, data_range 2;
             in [-1, 1], about [0, 1] in practice, 1 for identical images
    ms_ssim  MS-SSIM (Wang et al. 2003) with the same window; in [0, 1] (negative contrast terms
             are clipped to 0 as torchmetrics' normalize='relu' does), 1 for identical images
    lpips    LPIPS v0.1 (AlexNet by default), >= 0, 0 for identical images

Runs compare reconstructions at an evaluation size (`reconstruction_row(eval_size=...)`, the run's
`metrics.eval_size`, 256 by default): both images are resized to eval_size x eval_size first, as the
field's evaluation scripts do (`pti_lab.imaging.resize_square`). At 64 px AlexNet LPIPS is nearly
blind: its first layer (11x11, stride 4) leaves a 15x15 map, and a reconstruction with smeared eyes
scores a few thousandths.

MS-SSIM at small sizes: the standard five scales need images of about 176 px or more. We keep as many
of the five scales as leave the coarsest scale at least 16 px, so the 11-tap window fits (64 px -> 3
scales, 128 -> 4, 256 and larger -> all 5; at least 16 px in all), and renormalise the kept
standard weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) to sum to 1. From 256 px up this is the
standard MS-SSIM; values at different sizes are not comparable.
"""

import functools
from typing import Optional

import torch
import torch.nn.functional as F

from pti_lab.imaging import check_image_pair, resize_square
from pti_lab.models.lpips import LPIPS

IDENTITY_OFF = "identity network disabled"  # the reason of id_sim null under identity=none

DATA_RANGE = 2.0  # width of [-1, 1]
SSIM_SIGMA = 1.5  # of the Gaussian window
SSIM_WINDOW = 11  # taps of the window; torchmetrics derives the same from sigma: 2 * int(3.5 * 1.5 + 0.5) + 1
SSIM_K1, SSIM_K2 = 0.01, 0.03
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # standard weights, finest scale first
MS_SSIM_MIN_COARSEST = 16  # smallest side (px) kept at the coarsest MS-SSIM scale


def mean_squared_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image [N] of a checked pair, in float32."""
    return ((x.float() - y.float()) ** 2).mean(dim=(1, 2, 3))


@torch.no_grad()
def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image [N], in [0, 4]."""
    check_image_pair(x, y, "mse")
    return mean_squared_error(x, y)


@torch.no_grad()
def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR per image [N] in dB, data_range 2; +inf for identical images."""
    check_image_pair(x, y, "psnr")
    return 10 * torch.log10(DATA_RANGE ** 2 / mean_squared_error(x, y))


def gaussian_blur(images: torch.Tensor) -> torch.Tensor:
    """`images` [N, C, H, W] filtered by the SSIM window (11 x 11 taps, sigma 1.5), same size out.

    Borders are reflected, as torchmetrics does. The window is applied as one 11 x 11 convolution,
    not as two 1-D passes: float32 rounding in E[x^2] - E[x]^2 puts SSIM up to 5e-5 off its float64
    value on synthfaces images, and two 1-D passes round differently, up to 8e-5 away from
    torchmetrics' values (which pti-lab reported before); the same summation stays within 2e-7."""
    offsets = torch.arange(SSIM_WINDOW, dtype=images.dtype, device=images.device) - SSIM_WINDOW // 2
    taps = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    taps = taps / taps.sum()
    channels, pad = images.shape[1], SSIM_WINDOW // 2
    window = torch.outer(taps, taps).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)
    return F.conv2d(F.pad(images, (pad, pad, pad, pad), mode="reflect"), window, groups=channels)


def ssim_and_contrast(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image SSIM [N] and contrast-structure term [N] of float images x, y [N, C, H, W].

    As torchmetrics averages them, so that values match it: the SSIM map over every pixel (the
    windows at the border see reflected pixels), the contrast map only over pixels at least half a
    window (5 px) from the border."""
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = gaussian_blur(torch.cat((x, y, x * x, y * y, x * y))).split(len(x))
    # Float32 cancellation can make E[x^2] - E[x]^2 slightly negative; a variance is not.
    variance_x = (mean_xx - mean_x ** 2).clamp(min=0)
    variance_y = (mean_yy - mean_y ** 2).clamp(min=0)
    covariance = mean_xy - mean_x * mean_y
    luminance = (2 * mean_x * mean_y + c1) / (mean_x ** 2 + mean_y ** 2 + c1)
    contrast = (2 * covariance + c2) / (variance_x + variance_y + c2)
    pad = SSIM_WINDOW // 2
    inner_contrast = contrast[..., pad:-pad, pad:-pad]
    return (luminance * contrast).flatten(1).mean(1), inner_contrast.flatten(1).mean(1)


@torch.no_grad()
def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM per image [N] (Gaussian window sigma 1.5, data_range 2)."""
    check_image_pair(x, y, "ssim", min_size=SSIM_WINDOW)
    return ssim_and_contrast(x.float(), y.float())[0]


def ms_ssim_betas(height: int, width: int) -> tuple[float, ...]:
    """The MS-SSIM scale weights used at this image size (one per scale, finest first, sum 1)."""
    size, scales = min(height, width), 1
    while scales < len(MS_SSIM_BETAS) and size // 2 ** scales >= MS_SSIM_MIN_COARSEST:
        scales += 1
    kept = MS_SSIM_BETAS[:scales]
    return tuple(float(beta / sum(kept)) for beta in kept)


@torch.no_grad()
def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image [N]; the number of scales follows the image size (module docstring).

    The contrast term of each scale but the coarsest, and the SSIM of the coarsest, each clipped at 0
    (torchmetrics' normalize='relu': a negative term to a fractional power has no real value), raised
    to the scale's weight and multiplied; each next scale is the previous one 2x2 average-pooled."""
    check_image_pair(x, y, "ms_ssim", min_size=MS_SSIM_MIN_COARSEST)
    betas = ms_ssim_betas(*x.shape[2:])
    x, y = x.float(), y.float()
    terms = []
    for scale in range(len(betas)):
        if scale:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        similarity, contrast = ssim_and_contrast(x, y)
        terms.append(similarity if scale == len(betas) - 1 else contrast)
    weights = torch.tensor(betas, device=x.device).view(-1, 1)
    return (torch.stack(terms).relu() ** weights).prod(dim=0)


@functools.lru_cache(maxsize=None)
def lpips_model(net: str) -> LPIPS:
    """One LPIPS network per backbone per process (weights found as LPIPS documents)."""
    return LPIPS(net)


@torch.no_grad()
def lpips(x: torch.Tensor, y: torch.Tensor, net: str = "alex") -> torch.Tensor:
    """LPIPS v0.1 per image [N]; net 'alex' (the PTI metric) or 'vgg'."""
    model = lpips_model(net).to(x.device)
    return model(x, y).flatten()


def reconstruction_metrics(x: torch.Tensor, y: torch.Tensor, lpips_net: str = "alex") -> dict[str, torch.Tensor]:
    """All metrics above as {'mse', 'psnr', 'ssim', 'ms_ssim', 'lpips'}: per-image tensors [N]."""
    return {
        "mse": mse(x, y),
        "psnr": psnr(x, y),
        "ssim": ssim(x, y),
        "ms_ssim": ms_ssim(x, y),
        "lpips": lpips(x, y, lpips_net),
    }


def reconstruction_row(target: torch.Tensor, reconstruction: torch.Tensor, identity=None,
                       eval_size: Optional[int] = None) -> dict:
    """The results-row metrics of one image [1, 3, R, R] in [-1, 1]: the metrics above on both images
    resized to `eval_size` (None: as they are), that size as `eval_size`, and `id_sim` (cosine
    similarity under `identity`, an IdentityNetwork, at the network's own input size). A metric that
    cannot be computed is None, with the reason under `reasons`; never a made-up number."""
    row, reasons = {}, {}
    x, y = resize_square(target, eval_size), resize_square(reconstruction, eval_size)
    for key, values in reconstruction_metrics(x, y).items():
        value = values.item()
        row[key] = value if value == value and abs(value) != float("inf") else None
        if row[key] is None:
            reasons[key] = f"{key} is {value} (identical images give infinite PSNR)"
    row["eval_size"] = x.shape[-1]
    if identity is None:
        row["id_sim"], reasons["id_sim"] = None, IDENTITY_OFF
    else:
        (similarity,), (reason,) = identity.compare(target, reconstruction)
        row["id_sim"] = similarity
        if reason:
            reasons["id_sim"] = reason
    if reasons:
        row["reasons"] = reasons
    return row

"""Checks on image batches shared by the losses and the metrics, and how image files become RGB.

Every image tensor pti-lab compares is float `[N, 3, H, W]` in [-1, 1]. Images in [0, 255] or with
the wrong layout give numbers that look plausible and mean nothing, so they are refused here with
a one-line BadInputError that names the caller and the argument. Images in [0, 1] passed where
[-1, 1] is expected cannot be told apart from dark images and are not caught.
"""

from typing import Optional

import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F

from pti_lab.errors import BadInputError

# Generators overshoot [-1, 1] (PTI feeds unclamped G outputs to LPIPS, and the locality
# regulariser renders latents far from the data), by up to about 2 at latents far from the data;
# [0, 255] images exceed the range by far more unless almost black.
RANGE_TOLERANCE = 2.0


# Transparent pixels are shown over white, as image viewers do; their colour values are arbitrary.
BACKGROUND = (255, 255, 255)


def to_rgb(img: PIL.Image.Image) -> PIL.Image.Image:
    """Apply EXIF orientation and convert any mode (RGBA, LA, P with transparency, L, CMYK, 16-bit
    grey, ...) to RGB; transparency is flattened onto BACKGROUND."""
    img = PIL.ImageOps.exif_transpose(img)
    if img.mode.startswith("I;16") or (img.mode == "I" and img.getextrema()[1] > 255):
        # 16-bit grey: PIL's convert clips at 255 (everything above 1/256 of full scale turns white)
        img = img.convert("I").point(lambda value: value / 257, "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = PIL.Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return PIL.Image.alpha_composite(flat, rgba).convert("RGB")
    return img.convert("RGB")


def describe(tensor: torch.Tensor) -> str:
    """Short description of a tensor for error messages, e.g. 'float32 [3, 64, 64]'."""
    return f"{str(tensor.dtype).removeprefix('torch.')} {list(tensor.shape)}"


def check_images(
    images: torch.Tensor,
    name: str,                                       # argument name used in messages, e.g. "x"
    where: str,                                      # caller used in messages, e.g. "LPIPS(alex)"
    value_range: tuple[float, float] = (-1.0, 1.0),  # expected [low, high] of the pixel values
    tolerance: Optional[float] = RANGE_TOLERANCE,    # allowed overshoot of the range; None: no range check
    min_size: int = 1,                               # smallest allowed height and width in pixels
) -> None:
    """Raise BadInputError unless `images` is a float [N, 3, H, W] batch within `value_range`."""
    if not isinstance(images, torch.Tensor):
        raise BadInputError(f"{where}: {name} is a {type(images).__name__}; expected a torch.Tensor [N, 3, H, W]")
    if images.ndim != 4 or images.shape[1] != 3:
        raise BadInputError(f"{where}: {name} is {describe(images)}; expected RGB images [N, 3, H, W]")
    if not images.is_floating_point():
        raise BadInputError(
            f"{where}: {name} is {describe(images)}; expected float images in "
            f"[{value_range[0]:g}, {value_range[1]:g}] (convert uint8 with x / 127.5 - 1)"
        )
    if images.shape[0] == 0:
        raise BadInputError(f"{where}: {name} is {describe(images)}; the batch is empty")
    if min(images.shape[2:]) < min_size:
        raise BadInputError(f"{where}: {name} is {describe(images)}; needs images of at least {min_size} px")
    if tolerance is not None:
        low, high = torch.aminmax(images.detach())
        low, high = low.item(), high.item()
        # Written so that NaN fails the test too.
        if not (low >= value_range[0] - tolerance and high <= value_range[1] + tolerance):
            raise BadInputError(
                f"{where}: {name} has values in [{low:.4g}, {high:.4g}]; expected images in "
                f"[{value_range[0]:g}, {value_range[1]:g}] (e.g. [0, 255] images must be mapped first)"
            )


def check_image_pair(
    x: torch.Tensor,
    y: torch.Tensor,
    where: str,                                      # caller used in messages, e.g. "psnr"
    value_range: tuple[float, float] = (-1.0, 1.0),  # expected [low, high] of the pixel values
    tolerance: Optional[float] = RANGE_TOLERANCE,    # allowed overshoot of the range; None: no range check
    min_size: int = 1,                               # smallest allowed height and width in pixels
) -> None:
    """Check `x` and `y` with `check_images` and that they have the same shape."""
    check_images(x, "x", where, value_range, tolerance, min_size)
    check_images(y, "y", where, value_range, tolerance, min_size)
    if x.shape != y.shape:
        raise BadInputError(f"{where}: x is {describe(x)} but y is {describe(y)}; shapes must match")


def resize_square(images: torch.Tensor, size: Optional[int]) -> torch.Tensor:
    """`images` [N, C, H, W] resized to [N, C, size, size] (unchanged when None or already that size).

    Bilinear with antialiasing, the resampling of the field's evaluation scripts: pSp/e4e's
    `calc_losses_on_images.py` applies torchvision's `Resize((256, 256))` to PIL images, which is PIL's
    bilinear filter, widened when downsampling (antialiased) and plain bilinear when upsampling.
    torch's `antialias=True` is that filter on tensors; it is differentiable, so losses use it too."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

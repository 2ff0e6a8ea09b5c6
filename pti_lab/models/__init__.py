"""Networks: the StyleGAN2 generator, its checkpoint loaders, LPIPS."""

from pti_lab.models.checkpoints import load_generator, save_generator
from pti_lab.models.lpips import LPIPS
from pti_lab.models.stylegan2 import Generator

__all__ = ["Generator", "LPIPS", "load_generator", "save_generator"]

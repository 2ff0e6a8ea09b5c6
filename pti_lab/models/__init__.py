"""Networks: the StyleGAN2 generator and its checkpoint loaders."""

from pti_lab.models.checkpoints import load_generator, make_generator, save_generator
from pti_lab.models.stylegan2 import Generator

__all__ = ["Generator", "load_generator", "make_generator", "save_generator"]

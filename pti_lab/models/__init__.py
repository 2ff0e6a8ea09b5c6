"""Networks: the StyleGAN2 and StyleGAN3 generators, their checkpoint loaders, the e4e / pSp encoders, LPIPS."""

from pti_lab.models.checkpoints import load_generator, save_generator
from pti_lab.models.encoders import (EncoderNet, Encoder4Editing, GradualStyleEncoder, load_encoder,
                                     save_encoder)
from pti_lab.models.lpips import LPIPS
from pti_lab.models.stylegan2 import Generator
from pti_lab.models.stylegan3 import Generator as StyleGAN3Generator

__all__ = ["EncoderNet", "Encoder4Editing", "Generator", "GradualStyleEncoder", "LPIPS", "load_encoder",
           "load_generator", "save_encoder", "save_generator", "StyleGAN3Generator"]

"""Inverters: image -> pivot latent [1, num_ws, w_dim]. Each is built from conf/inverter/ and fulfils
the Inverter contract of pti_lab/stages.py (`invert_batch`; `invert` for one image)."""

from pti_lab.errors import NonFiniteLossError
from pti_lab.inversion.encoder import EncoderInverter
from pti_lab.inversion.inverter import Inversion, Inverter
from pti_lab.inversion.projector import WInverter, WPlusInverter
from pti_lab.inversion.simple import MeanInverter, RandomInverter
from pti_lab.inversion.w_stats import WStats, cached_w_stats

__all__ = ["EncoderInverter", "Inversion", "Inverter", "MeanInverter", "NonFiniteLossError", "RandomInverter", "WInverter",
           "WPlusInverter", "WStats", "cached_w_stats"]

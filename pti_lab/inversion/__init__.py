"""Inverters: image -> pivot latent [1, num_ws, w_dim]. Each is built from conf/inverter/ and has
`invert(G, target, seed=0) -> Inversion`."""

from pti_lab.errors import NonFiniteLossError
from pti_lab.inversion.encoder import EncoderInverter
from pti_lab.inversion.projector import Inversion, WInverter, WPlusInverter
from pti_lab.inversion.simple import MeanInverter, RandomInverter
from pti_lab.inversion.w_stats import WStats, cached_w_stats

__all__ = ["EncoderInverter", "Inversion", "MeanInverter", "NonFiniteLossError", "RandomInverter", "WInverter",
           "WPlusInverter", "WStats", "cached_w_stats"]

"""Fingerprints of weights: a hash of tensor names, shapes and float32 bytes, the same whichever
file format or dtype the weights were loaded from. They name the base generator of a stored delta,
the generator that boundaries were fitted on, and cache entries computed from a mapping network."""

import hashlib
from typing import Mapping

import torch

from pti_lab.models.stylegan2 import Generator


def tensors_fingerprint(tensors: Mapping[str, torch.Tensor], header: str = "", algorithm: str = "sha256") -> str:
    """Hex digest of `header`, then each tensor's name, shape and float32 bytes in name order."""
    digest = hashlib.new(algorithm, header.encode())
    for name, tensor in sorted(tensors.items()):
        tensor = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{list(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def generator_fingerprint(G: Generator) -> str:
    """sha256 of G's whole state dict (parameters and buffers)."""
    return tensors_fingerprint(G.state_dict())

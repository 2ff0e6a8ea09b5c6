"""Write network pickles with the structure of official stylegan2-ada-pytorch / stylegan3 pickles.

The official code pickles each network through `torch_utils.persistence._reconstruct_persistent_obj
(meta)`, where meta holds the class name, the full source of the defining module and the object's
__dict__ (tensors, child networks, `_init_kwargs` as dnnlib EasyDicts). This writer produces the
same opcodes from one of our modules, with a stand-in module source, so tests need no official code.
"""

import collections
import pickle
import sys
import types
from contextlib import contextmanager

import numpy as np
import torch

BENIGN_SOURCE = '''"""Network architectures from the paper "Analyzing and Improving the Image Quality of StyleGAN"."""

import numpy as np
import torch
from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import conv2d_resample
from torch_utils.ops import upfirdn2d

@misc.profiled_function
def normalize_2nd_moment(x, dim=1, eps=1e-8):
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, synthesis_kwargs={}):
        super().__init__()
        self.z_dim = z_dim

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, **synthesis_kwargs):
        return None
'''


STYLEGAN3_SOURCE = '''"""Generator architecture from the paper "Alias-Free Generative Adversarial Networks"."""

import numpy as np
import scipy.signal
import torch
from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import filtered_lrelu

@persistence.persistent_class
class SynthesisInput(torch.nn.Module):
    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth):
        super().__init__()
        self.w_dim = w_dim

@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **synthesis_kwargs):
        super().__init__()
        self.z_dim = z_dim
'''

# Plain attribute types an official module's __dict__ holds besides tensors and children.
_PLAIN = (bool, int, float, str, list, tuple, np.ndarray, np.generic, type(None))


def _reconstruct_persistent_obj(meta):  # stands in for the official function while writing
    raise AssertionError("only used to write pickles")


class EasyDict(dict):
    pass


@contextmanager
def _official_module_names():
    """Make the official global names resolvable while pickling, then remove them again."""
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util.EasyDict = EasyDict
    added = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
             "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    sys.modules.update(added)
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


class PersistentObject:
    """Pickles as the official persistent_class instances do."""

    def __init__(self, class_name: str, state: dict, module_src: str = BENIGN_SOURCE):
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self):
        return _reconstruct_persistent_obj, (self.meta,)


def persistent_tree(module: torch.nn.Module, init_kwargs: dict | None = None,
                    module_src: str = BENIGN_SOURCE, attributes: bool = False) -> PersistentObject:
    """module as an official persistent object; attributes: also its plain attributes (sizes,
    padding, ...), as official objects store their whole __dict__."""
    state = {
        "training": module.training,
        "_parameters": collections.OrderedDict((k, v) for k, v in module._parameters.items()),
        "_buffers": collections.OrderedDict((k, v) for k, v in module._buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_modules": collections.OrderedDict(
            (name, persistent_tree(child, module_src=module_src, attributes=attributes))
            for name, child in module._modules.items()),
        "_init_args": (),
        "_init_kwargs": EasyDict(init_kwargs or {}),
    }
    if attributes:
        state.update({name: value for name, value in vars(module).items()
                      if not name.startswith("_") and name != "training" and isinstance(value, _PLAIN)})
    return PersistentObject(type(module).__name__, state, module_src)  # bare names, as the official code


def official_init_kwargs(G) -> dict:
    """Init kwargs as the official training loop records them (EasyDicts, fp16 options)."""
    kwargs = G.init_kwargs
    synthesis = EasyDict(kwargs["synthesis_kwargs"], num_fp16_res=4)
    return EasyDict(z_dim=kwargs["z_dim"], w_dim=kwargs["w_dim"], mapping_kwargs=EasyDict(kwargs["mapping_kwargs"]),
                    synthesis_kwargs=synthesis, c_dim=kwargs["c_dim"], img_resolution=kwargs["img_resolution"],
                    img_channels=kwargs["img_channels"])


def stylegan3_init_kwargs(G) -> dict:
    """A StyleGAN3 generator's init kwargs as the official training loop records them (flat
    synthesis options, EasyDicts)."""
    kwargs = G.init_kwargs
    return EasyDict(z_dim=kwargs["z_dim"], w_dim=kwargs["w_dim"], mapping_kwargs=EasyDict(kwargs["mapping_kwargs"]),
                    **kwargs["synthesis_kwargs"], c_dim=kwargs["c_dim"], img_resolution=kwargs["img_resolution"],
                    img_channels=kwargs["img_channels"])


def dumps_network_pickle(G, module_src: str = BENIGN_SOURCE, extra: dict | None = None,
                         extra_synthesis_child: str | None = None) -> bytes:
    """Bytes of a network pickle {G, D, G_ema, training_set_kwargs, augment_pipe} holding G.

    A StyleGAN3 G is written as networks_stylegan3 objects are (flat options, plain attributes,
    STYLEGAN3_SOURCE unless module_src is given). extra_synthesis_child: class name of an extra
    record under G.synthesis.
    """
    stylegan3 = G.init_kwargs.get("network") == "stylegan3"
    if stylegan3 and module_src is BENIGN_SOURCE:
        module_src = STYLEGAN3_SOURCE
    with _official_module_names():
        init_kwargs = stylegan3_init_kwargs(G) if stylegan3 else official_init_kwargs(G)
        g_ema = persistent_tree(G, init_kwargs, module_src, attributes=stylegan3)
        if extra_synthesis_child:
            synthesis = g_ema.meta["state"]["_modules"]["synthesis"]
            synthesis.meta["state"]["_modules"]["input"] = PersistentObject(extra_synthesis_child, {}, module_src)
        discriminator = PersistentObject("Discriminator", {"_parameters": collections.OrderedDict(
            b1=torch.nn.Parameter(torch.randn(4))), "_modules": collections.OrderedDict()}, module_src)
        data = dict(G=g_ema, D=discriminator, G_ema=g_ema,
                    training_set_kwargs=EasyDict(path="ffhq.zip", resolution=G.img_resolution, xflip=False),
                    augment_pipe=None, **(extra or {}))
        return pickle.dumps(data, protocol=4)

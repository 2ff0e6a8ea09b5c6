"""StyleGAN2 generator in pure PyTorch with the semantics of the official stylegan2-ada-pytorch code.

Module tree, attribute names, state-dict names and the calling convention follow the official
`training/networks.py`, so official weights load by name and reproduce official images:

    G.mapping(z, c, truncation_psi=1, truncation_cutoff=None) -> ws   # [N, num_ws, w_dim]
    G.synthesis(ws, noise_mode='const')                         -> img  # [N, C, R, R] in ~[-1, 1]
    G(z, c, ...)                                                 -> img

No custom C++/CUDA ops: the official fused kernels (bias_act, upfirdn2d) are replaced by the
equivalent PyTorch ops, so the same code runs on CPU and GPU. Computation is fp32; wrap calls in
`torch.autocast` for mixed precision on GPU. The official `force_fp32` argument is accepted and has
nothing to force.
"""

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Activation functions with the gains the official bias_act table uses: gain keeps the
# second moment of the activations at about 1 for unit-variance inputs.
ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2)),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
    "elu": (F.elu, 1.0),
    "selu": (F.selu, 1.0),
    "softplus": (F.softplus, 1.0),
    "swish": (lambda x: torch.sigmoid(x) * x, math.sqrt(2)),
}

NOISE_MODES = ("random", "const", "none")


def bias_act(x: torch.Tensor, bias: Optional[torch.Tensor], activation: str = "linear") -> torch.Tensor:
    """x + bias (broadcast over dim 1), then the activation times its gain."""
    act, gain = ACTIVATIONS[activation]
    if bias is not None:
        x = x + bias.reshape([1, -1] + [1] * (x.ndim - 2))
    x = act(x)
    return x * gain if gain != 1 else x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def conv_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution of x computes in: autocast's where autocast is on, x's elsewhere. The
    convolutions cast to it themselves because autocast does not reach inside torch.func.vmap (the
    batched tuning renders K generators under vmap, which would otherwise stay float32)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def setup_filter(taps: Sequence[float]) -> torch.Tensor:
    """1-D taps -> normalised 2-D FIR filter (outer product, sum 1), as the official setup_filter."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    assert f.ndim == 1 and f.numel() > 0
    f = f.outer(f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, padding: Sequence[int] = (0, 0, 0, 0),
              gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative pads crop), convolve with the 2-D filter f.

    padding = (x0, x1, y0, y1). The filter is convolved (not correlated), as in the official op.
    """
    N, C, H, W = x.shape  # [NCHW]
    if up > 1:
        x = x.reshape(N, C, H, 1, W, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(N, C, H * up, W * up)
    dtype = conv_dtype(x)
    x = F.pad(x.to(dtype), list(padding))
    kernel = (f * gain).flip([0, 1]).to(dtype)
    kernel = kernel[None, None].expand(C, 1, *f.shape)
    return F.conv2d(x, kernel, groups=C)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample by `up` with FIR filter f, keeping the image centred (official padding)."""
    fh, fw = f.shape
    padding = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=padding, gain=up * up)


def modulated_conv2d(
    x: torch.Tensor,                     # input activations [N, I, H, W]
    weight: torch.Tensor,                # shared conv weight [O, I, k, k]
    styles: torch.Tensor,                # per-sample input-channel scales [N, I]
    demodulate: bool = True,             # normalise each output channel to unit expected norm
    up: int = 1,                         # 1 or 2; 2 = transposed conv followed by the FIR filter
    resample_filter: Optional[torch.Tensor] = None,  # 2-D FIR filter used when up > 1
    fused: Optional[bool] = None,        # one conv with per-sample weights (default: when cheaper, batch 1)
    gain: float | torch.Tensor = 1.0,    # output multiplier (a number or a 0-d tensor), folded into the weights
    bias: Optional[torch.Tensor] = None,  # per-output-channel bias [O], added after the gain
    padding: Optional[int] = None,       # zero padding of a stride-1 conv; None = k // 2 (same size)
) -> torch.Tensor:
    """gain * (demodulated) conv(x, weight modulated by styles) + bias: [N, O, H*up, W*up]
    (StyleGAN3 pads by k - 1 instead, which grows the image by k - 1 pixels).

    Folding the gain and the bias into the convolution saves full passes over the activations,
    which dominate the cost of a small generator on a CPU.
    """
    N, I, H, W = x.shape  # [NCHW]
    O, _, kh, kw = weight.shape
    assert weight.shape[1] == I and styles.shape == (N, I), (x.shape, weight.shape, styles.shape)

    # Output scale per sample and channel. ||w_o * s||^2 = sum_i s_i^2 sum_k w_oik^2, so the
    # demodulation coefficients need no per-sample weight tensor.
    padding = kh // 2 if padding is None else padding
    out_scale = None
    if demodulate:
        out_scale = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt() * gain  # [N, O]
    elif gain != 1:
        out_scale = styles.new_full([N, O], gain)
    dtype = conv_dtype(x)
    if fused is None:
        # At batch 1 the grouped conv is a plain conv, and the choice is which tensor to scale:
        # the weight (fused) or the input and output activations. On the 64 px synthfaces generator
        # this is 2 ms of 23 per forward+backward. Above batch 1 one shared conv wins.
        fused = N == 1 and O * I * kh * kw < I * H * W + O * H * W * up * up

    if fused:
        scales = styles.reshape(N, 1, I, 1, 1)
        if out_scale is not None:
            scales = scales * out_scale.reshape(N, O, 1, 1, 1)
        w = (weight.unsqueeze(0) * scales).to(dtype)  # [N, O, I, k, k]
        x = x.to(dtype).reshape(1, N * I, H, W)
        if up == 1:
            conv_bias = bias.repeat(N).to(dtype) if bias is not None else None
            x = F.conv2d(x, w.reshape(N * O, I, kh, kw), conv_bias, padding=padding, groups=N)
            bias = None
        else:  # transposed conv takes [in, out/groups, k, k] per group
            x = F.conv_transpose2d(x, w.transpose(1, 2).reshape(N * I, O, kh, kw), stride=up, groups=N)
        x = x.reshape(N, O, *x.shape[2:])
    else:
        x = (x * styles.reshape(N, I, 1, 1)).to(dtype)
        conv_bias = bias.to(dtype) if out_scale is None and bias is not None else None  # a bias goes after the output scale
        if up == 1:
            x = F.conv2d(x, weight.to(dtype), conv_bias, padding=padding)
        else:
            x = F.conv_transpose2d(x, weight.transpose(0, 1).to(dtype), conv_bias, stride=up)
        if conv_bias is not None:
            bias = None
        elif out_scale is not None:
            x = x.mul_(out_scale.reshape(N, O, 1, 1))

    if up > 1:
        # The transposed conv gives (H-1)*up + k pixels; the FIR filter with this padding crops
        # it to H*up and places samples as the official conv2d_resample does.
        fh, fw = resample_filter.shape
        p = kw // 2
        px0 = p + (fw + up - 1) // 2 - (kw - 1)
        px1 = p + (fw - up) // 2 - (kw - up)
        py0 = p + (fh + up - 1) // 2 - (kh - 1)
        py1 = p + (fh - up) // 2 - (kh - up)
        x = upfirdn2d(x, resample_filter, padding=[px0, px1, py0, py1], gain=up * up)
    if bias is not None:
        x = x.add_(bias.reshape(1, O, 1, 1))
    return x


class FullyConnectedLayer(nn.Module):
    def __init__(
        self,
        in_features: int,            # number of input features
        out_features: int,           # number of output features
        bias: bool = True,           # apply additive bias before the activation
        activation: str = "linear",  # activation function name (see ACTIVATIONS)
        lr_multiplier: float = 1.0,  # equalised learning rate multiplier
        bias_init: float = 0.0,      # initial value of the bias
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        # Equalised learning rate: parameters are stored at unit scale and multiplied by a
        # constant gain at run time, so Adam's per-parameter steps are balanced across layers.
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias
        if b is not None and self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class MappingNetwork(nn.Module):
    def __init__(
        self,
        z_dim: int,                            # input latent (Z) dimensionality, 0 = no latent
        c_dim: int,                            # conditioning label (C) dimensionality, 0 = none
        w_dim: int,                            # intermediate latent (W) dimensionality
        num_ws: Optional[int],                 # number of ws to broadcast to, None = do not broadcast
        num_layers: int = 8,                   # number of mapping layers
        embed_features: Optional[int] = None,  # label embedding size, None = same as w_dim
        layer_features: Optional[int] = None,  # hidden layer size, None = same as w_dim
        activation: str = "lrelu",             # activation of the hidden layers
        lr_multiplier: float = 0.01,           # learning rate multiplier of the mapping layers
        w_avg_beta: Optional[float] = 0.995,   # decay of the tracked W average, None = do not track
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.num_ws, self.num_layers, self.w_avg_beta = num_ws, num_layers, w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor] = None,
                truncation_psi: float = 1, truncation_cutoff: Optional[int] = None,
                skip_w_avg_update: bool = False) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            assert z is not None and z.shape[1:] == (self.z_dim,), f"z must be [N, {self.z_dim}]"
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            assert c is not None and c.shape[1:] == (self.c_dim,), f"c must be [N, {self.c_dim}]"
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]

        if truncation_psi != 1:
            assert self.w_avg_beta is not None, "truncation needs the tracked W average"
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    def __init__(
        self,
        in_channels: int,                  # number of input channels
        out_channels: int,                 # number of output channels
        w_dim: int,                        # intermediate latent (W) dimensionality
        resolution: int,                   # output resolution of this layer
        kernel_size: int = 3,              # convolution kernel size
        up: int = 1,                       # integer upsampling factor (1 or 2)
        use_noise: bool = True,            # add per-pixel noise
        activation: str = "lrelu",         # activation function name
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # low-pass taps used when upsampling
        conv_clamp: Optional[float] = None,  # clamp the output to +-X, None = no clamping
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        # act(g * x) = g * act(x) for these, which lets the gain go into the convolution.
        assert activation in ("lrelu", "relu", "linear"), f"unsupported synthesis activation {activation!r}"
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.act_gain = ACTIVATIONS[activation][1]

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                fused_modconv: Optional[bool] = None, gain: float = 1) -> torch.Tensor:
        assert noise_mode in NOISE_MODES, f"noise_mode must be one of {NOISE_MODES}"
        in_resolution = self.resolution // self.up
        assert x.shape[1:] == (self.in_channels, in_resolution, in_resolution), x.shape  # [NCHW]
        styles = self.affine(w)  # [N, I]

        # Official order: act(demod_conv + noise + bias) * gain, with gain > 0 moved inside.
        act_gain = self.act_gain * gain
        x = modulated_conv2d(x, self.weight, styles, up=self.up, resample_filter=self.resample_filter,
                             fused=fused_modconv, gain=act_gain, bias=self.bias.to(x.dtype) * act_gain)
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            x = x.add_(noise * (self.noise_strength * act_gain))
        elif self.use_noise and noise_mode == "const":
            x = x.add_(self.noise_const * (self.noise_strength * act_gain))
        if self.activation == "lrelu":
            x = F.leaky_relu_(x, 0.2)
        elif self.activation == "relu":
            x = F.relu_(x)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp * gain, self.conv_clamp * gain)  # not in place: lrelu_ keeps x for backward
        return x

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, resolution={self.resolution}, "
                f"up={self.up}, activation={self.activation}")


class ToRGBLayer(nn.Module):
    def __init__(
        self,
        in_channels: int,                    # number of input channels
        out_channels: int,                   # number of image channels
        w_dim: int,                          # intermediate latent (W) dimensionality
        kernel_size: int = 1,                # convolution kernel size
        conv_clamp: Optional[float] = None,  # clamp the output to +-X, None = no clamping
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        # No demodulation here, so the style carries the equalised-lr gain of the conv instead.
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: Optional[bool] = None) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv,
                             bias=self.bias.to(x.dtype))
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,                  # number of input channels, 0 = first block
        out_channels: int,                 # number of output channels
        w_dim: int,                        # intermediate latent (W) dimensionality
        resolution: int,                   # resolution of this block
        img_channels: int,                 # number of output image channels
        is_last: bool,                     # is this the last block?
        architecture: str = "skip",        # 'orig' or 'skip'
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # low-pass taps used when upsampling
        conv_clamp: Optional[float] = None,  # clamp the output of convolution layers to +-X
        **layer_kwargs,                    # arguments for SynthesisLayer
    ):
        super().__init__()
        assert architecture in ("orig", "skip"), f"unsupported synthesis architecture {architecture!r}"
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.img_channels = resolution, img_channels
        self.is_last, self.architecture = is_last, architecture
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution,
                                    resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise_mode: str = "random", fused_modconv: Optional[bool] = None,
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        assert ws.shape[1] == self.num_conv + self.num_torgb, ws.shape  # [N, layers, w_dim]
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = img + y if img is not None else y
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}"


class SynthesisNetwork(nn.Module):
    def __init__(
        self,
        w_dim: int,                  # intermediate latent (W) dimensionality
        img_resolution: int,         # output image resolution (a power of two, >= 4)
        img_channels: int,           # number of colour channels
        channel_base: int = 32768,   # overall multiplier for the number of channels
        channel_max: int = 512,      # maximum number of channels in any layer
        **block_kwargs,              # arguments for SynthesisBlock
    ):
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0, \
            f"img_resolution must be a power of two >= 4, got {img_resolution}"
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.channel_base, self.channel_max = channel_base, channel_max
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        assert channels[img_resolution] > 0, f"channel_base={channel_base} leaves no channels at {img_resolution} px"

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(in_channels, channels[res], w_dim, res, img_channels, is_last,
                                   **block_kwargs)
            # Consecutive blocks share one w: the ToRGB of block k uses the same w as conv0 of k+1.
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", fused_modconv: Optional[bool] = None,
                force_fp32: bool = True) -> torch.Tensor:
        # force_fp32 is the official mixed-precision switch; callers such as PTI always pass it.
        # This implementation computes in fp32 (or under the caller's autocast) either way.
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        return img  # [N, img_channels, R, R]


class Generator(nn.Module):
    def __init__(
        self,
        z_dim: int,                               # input latent (Z) dimensionality
        c_dim: int,                               # conditioning label (C) dimensionality
        w_dim: int,                               # intermediate latent (W) dimensionality
        img_resolution: int,                      # output resolution
        img_channels: int,                        # number of output colour channels
        mapping_kwargs: Optional[dict] = None,    # arguments for MappingNetwork
        synthesis_kwargs: Optional[dict] = None,  # arguments for SynthesisNetwork
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mapping_kwargs = dict(mapping_kwargs or {})
        self.synthesis_kwargs = dict(synthesis_kwargs or {})
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **self.synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **self.mapping_kwargs)

    @property
    def init_kwargs(self) -> dict:
        """Constructor arguments: `Generator(**G.init_kwargs)` builds the same architecture."""
        return dict(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim,
                    img_resolution=self.img_resolution, img_channels=self.img_channels,
                    mapping_kwargs=dict(self.mapping_kwargs), synthesis_kwargs=dict(self.synthesis_kwargs))

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)

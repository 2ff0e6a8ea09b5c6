"""StyleGAN3 (alias-free) generator in pure PyTorch with the semantics of the official NVlabs/stylegan3
`training/networks_stylegan3.py`, configs T and R.

Module tree, attribute names, state-dict names and the calling convention follow the official code,
so official weights load by name and reproduce official images:

    G.mapping(z, c, truncation_psi=1, truncation_cutoff=None) -> ws   # [N, num_ws, w_dim], num_ws = layers + 2
    G.synthesis(ws, noise_mode='const', transform=None)         -> img  # [N, C, R, R] in ~[-1, 1]
    G(z, c, ...)                                                 -> img

`ws[:, 0]` drives the Fourier-feature input (a learned rotation and translation), `ws[:, 1:]` the
layers `L{i}_{size}_{channels}`, the last of which is the ToRGB layer. The input's `transform` buffer
is the user's inverse transform of the output (rotation/translation); `synthesis(ws, transform=T)`
renders with T for one call without changing the buffer. noise_mode is accepted and has no effect:
StyleGAN3 has no noise inputs.

No custom C++/CUDA op: the official fused filtered leaky ReLU is computed with ordinary convolutions
(`filtered_lrelu` below), separable filters as two 1-D passes, upsampling as a transposed convolution
and downsampling as a strided one, so no zero is multiplied and no discarded pixel is computed. For
the backward pass it keeps one byte per upsampled sample (which branch of the activation it took),
as the official CUDA op keeps its sign bits, rather than the float intermediates.
"""

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pti_lab.models.stylegan2 import NOISE_MODES, FullyConnectedLayer, MappingNetwork, modulated_conv2d

NETWORK = "stylegan3"  # the `network` entry of a StyleGAN3 generator's init_kwargs


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> Optional[torch.Tensor]:
    """Kaiser-windowed low-pass FIR filter: 1-D taps (used separably), or with radial=True a 2-D
    radially symmetric jinc filter with the same Kaiser window in x and y. None for a single tap
    (the identity)."""
    # Imported here, not at the top: scipy.signal costs about 1 s of every run's start-up (it imports
    # scipy.stats), and only a StyleGAN3 network ever designs a filter.
    import scipy.signal
    import scipy.special

    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs),
                               dtype=torch.float32)
    offsets = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    radius = np.hypot(offsets[None, :], offsets[:, None])
    safe = np.where(radius > 0, radius, 1.0)
    # 2-D ideal low-pass of cutoff c: J1(2 pi c r) / (pi r), whose limit at r = 0 is c.
    jinc = np.where(radius > 0, scipy.special.j1(2 * np.pi * cutoff * safe) / (np.pi * safe), cutoff)
    attenuation = scipy.signal.kaiser_atten(numtaps, width / (fs / 2))
    window = np.kaiser(numtaps, scipy.signal.kaiser_beta(attenuation))
    taps = jinc * np.outer(window, window)
    return torch.as_tensor(taps / taps.sum(), dtype=torch.float32)


def _fir_weight(taps: torch.Tensor, C: int, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Depthwise conv weight [C, 1, k, 1] (dim 2, rows) or [C, 1, 1, k] (dim 3, columns) of 1-D taps."""
    shape = (1, taps.numel()) if dim == 3 else (taps.numel(), 1)
    return taps.to(dtype).reshape(1, 1, *shape).expand(C, 1, *shape)


def _axis(dim: int, value: int, other: int = 1) -> tuple[int, int]:
    """A (rows, columns) pair with `value` on dim (2 = rows, 3 = columns), e.g. a stride along one axis."""
    return (other, value) if dim == 3 else (value, other)


def _up_crop(k: int, up: int, pad: tuple[int, int]) -> tuple[int, int]:
    """The transposed conv is the full convolution of the zero-inserted signal, (L - 1) * up + k
    samples; the padded valid convolution keeps [k - 1 - pad0, ...): F.pad amounts that cut it so."""
    return pad[0] - k + 1, up + pad[1] - k


def _fir_up_1d(x: torch.Tensor, taps: torch.Tensor, up: int, pad: tuple[int, int], dim: int) -> torch.Tensor:
    """Along dim (2 = rows, 3 = columns): insert up - 1 zeros after each sample, pad (negative crops)
    and convolve with taps, keeping the samples whose filter footprint lies in the padded signal."""
    x = F.conv_transpose2d(x, _fir_weight(taps, x.shape[1], dim, x.dtype), stride=_axis(dim, up), groups=x.shape[1])
    lo, hi = _up_crop(taps.numel(), up, pad)
    return F.pad(x, [lo, hi, 0, 0] if dim == 3 else [0, 0, lo, hi])


def _fir_up_1d_adjoint(g: torch.Tensor, taps: torch.Tensor, up: int, pad: tuple[int, int], dim: int) -> torch.Tensor:
    """The transpose of _fir_up_1d (a linear map): the gradient of its input from that of its output."""
    lo, hi = _up_crop(taps.numel(), up, pad)
    g = F.pad(g, [-lo, -hi, 0, 0] if dim == 3 else [0, 0, -lo, -hi])
    return F.conv2d(g, _fir_weight(taps, g.shape[1], dim, g.dtype), stride=_axis(dim, up), groups=g.shape[1])


def _fir_down(x: torch.Tensor, taps: torch.Tensor, down: int) -> torch.Tensor:
    """Convolve with taps (1-D: separably; 2-D: as is) without padding, keep every down-th sample."""
    C = x.shape[1]
    if taps.ndim == 2:
        kernel = taps.flip([0, 1]).to(x.dtype)[None, None].expand(C, 1, *taps.shape)
        return F.conv2d(x, kernel, stride=down, groups=C)
    flipped = taps.flip([0])
    x = F.conv2d(x, _fir_weight(flipped, C, 3, x.dtype), stride=(1, down), groups=C)
    return F.conv2d(x, _fir_weight(flipped, C, 2, x.dtype), stride=(down, 1), groups=C)


def _fir_down_adjoint(g: torch.Tensor, taps: torch.Tensor, down: int, size: Sequence[int]) -> torch.Tensor:
    """The transpose of _fir_down for an input of `size` (H, W): strided transposed convolutions."""
    C, H, W = g.shape[1], int(size[0]), int(size[1])

    def extra(length: int, taps_count: int, out: int) -> int:  # samples the strided conv never reached
        return length - ((out - 1) * down + taps_count)
    if taps.ndim == 2:
        kernel = taps.flip([0, 1]).to(g.dtype)[None, None].expand(C, 1, *taps.shape)
        return F.conv_transpose2d(g, kernel, stride=down, groups=C, output_padding=(
            extra(H, taps.shape[0], g.shape[2]), extra(W, taps.shape[1], g.shape[3])))
    k, flipped = taps.numel(), taps.flip([0])
    g = F.conv_transpose2d(g, _fir_weight(flipped, C, 2, g.dtype), stride=(down, 1), groups=C,
                           output_padding=(extra(H, k, g.shape[2]), 0))
    return F.conv_transpose2d(g, _fir_weight(flipped, C, 3, g.dtype), stride=(1, down), groups=C,
                              output_padding=(0, extra(W, k, g.shape[3])))


def _up_separable(x: torch.Tensor, taps: torch.Tensor, up: int, padding: Sequence[int]) -> torch.Tensor:
    # Rows first: the slower of the two passes then runs on the smaller image.
    x = _fir_up_1d(x, taps, up, (padding[2], padding[3]), dim=2)
    return _fir_up_1d(x, taps, up, (padding[0], padding[1]), dim=3)


class _SeparableFilteredLReLU(torch.autograd.Function):
    """filtered_lrelu with a separable upsampling filter, keeping for the backward pass one byte per
    upsampled sample (which branch of the activation it took) instead of the float intermediates that
    autograd would keep (about five per layer, each up * up times the layer's input): both filters
    are linear, so their gradients are their transposes and need no saved input."""

    @staticmethod
    def forward(ctx, x, taps, down_filter, up, down, padding, slope, clamp):  # noqa: D102
        y = _up_separable(x, taps, up, padding)
        branch = (y > 0).to(torch.uint8) + 1  # 1: slope (leaky ReLU's gradient at 0 too), 2: identity
        y = F.leaky_relu_(y, slope)
        if clamp is not None:
            branch.masked_fill_(y.abs() > clamp, 0)  # 0: clamped, no gradient
            y = y.clamp_(-clamp, clamp)
        ctx.save_for_backward(branch, taps, down_filter)
        ctx.options, ctx.size = (up, down, tuple(padding), slope), y.shape[2:]
        return _fir_down(y, down_filter, down)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        branch, taps, down_filter = ctx.saved_tensors
        up, down, padding, slope = ctx.options
        g = _fir_down_adjoint(grad.contiguous(memory_format=torch.channels_last), down_filter, down, ctx.size)
        g = g * torch.tensor([0.0, slope, 1.0], dtype=g.dtype, device=g.device)[branch.int()]  # by branch
        g = _fir_up_1d_adjoint(g, taps, up, (padding[0], padding[1]), dim=3)
        g = _fir_up_1d_adjoint(g, taps, up, (padding[2], padding[3]), dim=2)
        return g, None, None, None, None, None, None, None


def filtered_lrelu(
    x: torch.Tensor,                      # [N, C, H, W], bias already added
    up_filter: Optional[torch.Tensor],    # 1-D taps (separable) or None (identity)
    down_filter: Optional[torch.Tensor],  # 1-D taps (separable), 2-D taps (radial) or None (identity)
    up: int = 1,                          # upsampling factor before the activation
    down: int = 1,                        # downsampling factor after it
    padding: Sequence[int] = (0, 0, 0, 0),  # (x0, x1, y0, y1) on the upsampled image; negative crops
    gain: float = math.sqrt(2),           # activation gain (> 0)
    slope: float = 0.2,                   # leaky ReLU slope; 1 = linear
    clamp: Optional[float] = None,        # clamp the activations to +-clamp (before downsampling)
) -> torch.Tensor:
    """Upsample (zero insertion, FIR with gain up**2), leaky ReLU times gain, clamp, FIR downsample.

    The activation gain is moved into the upsampling filter: lrelu(g * y) = g * lrelu(y) for g > 0,
    and both are linear up to the activation."""
    assert gain > 0 and slope >= 0
    px0, px1, py0, py1 = padding = [int(p) for p in padding]
    scale = up * up * gain
    # Depthwise FIR convolutions are several times faster on channels-last tensors on a CPU (measured:
    # 57 ms -> 6 ms for a 1-D x2 upsampling of 128 x 150 x 150); their outputs stay channels-last.
    # Inside torch.func.vmap (batched tuning) memory formats cannot be chosen, in-place clamping has
    # no batching rule and autograd Functions need one: there the plain ops below run as they are.
    batched = torch._C._functorch.is_batchedtensor(x)
    if not batched:
        x = x.contiguous(memory_format=torch.channels_last)
    separable = up_filter is not None and up_filter.ndim == 1 and down_filter is not None
    if separable and not batched and slope != 1 and torch.is_grad_enabled() and x.requires_grad:
        return _SeparableFilteredLReLU.apply(x, up_filter * math.sqrt(scale), down_filter, up, down, padding,
                                             slope, clamp)
    if up_filter is None:
        if up > 1:
            N, C, H, W = x.shape
            x = F.pad(x.reshape(N, C, H, 1, W, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(N, C, H * up, W * up)
        x = F.pad(x, [px0, px1, py0, py1])
        x = x * scale if scale != 1 else x
    elif up_filter.ndim == 1:
        x = _up_separable(x, up_filter * math.sqrt(scale), up, padding)  # half of the gain per pass
    else:
        C, (kh, kw) = x.shape[1], up_filter.shape
        weight = (up_filter * scale).to(x.dtype)[None, None].expand(C, 1, kh, kw)
        x = F.pad(F.conv_transpose2d(x, weight, stride=up, groups=C),
                  [px0 - kw + 1, up + px1 - kw, py0 - kh + 1, up + py1 - kh])
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if clamp is not None:  # in place: leaky_relu keeps its input for the backward pass, not its output
        x = x.clamp_(-clamp, clamp) if slope != 1 and not batched else x.clamp(-clamp, clamp)
    if down_filter is not None:
        x = _fir_down(x, down_filter, down)
    elif down > 1:
        x = x[:, :, ::down, ::down]
    return x


class SynthesisInput(nn.Module):
    """Fourier features of a learned rotation/translation (from w) and the user's inverse `transform`."""

    def __init__(
        self,
        w_dim: int,             # intermediate latent (W) dimensionality
        channels: int,          # number of Fourier features (output channels)
        size: int,              # output size in pixels (square)
        sampling_rate: float,   # output sampling rate
        bandwidth: float,       # frequency of the features (cutoff of the first layer)
    ):
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.size = np.broadcast_to(np.asarray(size), [2])  # [width, height], as the official attribute
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth

        # Frequencies uniform-ish on a disc of radius `bandwidth`; random phases.
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():  # the identity transform (cos 1, sin 0, no translation) at init
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))  # inverse transform of the output image
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: torch.Tensor, transform: Optional[torch.Tensor] = None) -> torch.Tensor:
        """w [N, w_dim] -> features [N, channels, size, size]; transform [3, 3] or [N, 3, 3] replaces the buffer."""
        user = self.transform if transform is None else transform.to(w.device, torch.float32)
        t = self.affine(w)                            # (cos, sin, tx, ty), unnormalised
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(dim=1)
        # The top two rows of rotation @ translation (both inverse, wrt. the image), then the user's.
        learned = torch.stack([torch.stack([cos, -sin, -cos * tx + sin * ty], dim=1),
                               torch.stack([sin, cos, -sin * tx - cos * ty], dim=1)], dim=1)  # [N, 2, 3]
        rows = learned @ user  # [N, 2, 3]
        phases = self.phases + (self.freqs @ rows[:, :, 2:]).squeeze(2)  # [N, C]
        freqs = self.freqs @ rows[:, :, :2]                              # [N, C, 2]
        # Frequencies the user transform pushes out of band fade out instead of aliasing.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        # Pixel centres in units of the sampling period, centred on the image.
        width, height = int(self.size[0]), int(self.size[1])
        gx = (torch.arange(width, device=w.device, dtype=torch.float32) + 0.5 - width / 2) / self.sampling_rate
        gy = (torch.arange(height, device=w.device, dtype=torch.float32) + 0.5 - height / 2) / self.sampling_rate
        arg = (gx[None, None, :, None] * freqs[:, None, None, :, 0] + gy[None, :, None, None] * freqs[:, None, None, :, 1]
               + phases[:, None, None, :])  # [N, H, W, C]
        x = torch.sin(arg * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)  # [N, C, H, W]

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={int(self.size[0])}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


class SynthesisLayer(nn.Module):
    def __init__(
        self,
        w_dim: int,                     # intermediate latent (W) dimensionality
        is_torgb: bool,                 # the final ToRGB layer (1x1 conv, linear, no filters)
        is_critically_sampled: bool,    # critically sampled: never a radial filter
        use_fp16: bool,                 # official mixed-precision flag; kept as an attribute only
        in_channels: int, out_channels: int,
        in_size: int, out_size: int,    # spatial sizes in pixels, margins included
        in_sampling_rate: float, out_sampling_rate: float,
        in_cutoff: float, out_cutoff: float,
        in_half_width: float, out_half_width: float,  # half-widths of the transition bands
        conv_kernel: int = 3,           # convolution kernel size (ignored by ToRGB: 1)
        filter_size: int = 6,           # low-pass filter taps per unit of the lower resolution
        lrelu_upsampling: int = 2,      # oversampling of the activation relative to the larger rate
        use_radial_filters: bool = False,  # radial downsampling filter (config R), except critically sampled
        conv_clamp: Optional[float] = 256,  # clamp the activations to +-X (applies in fp32 too); None = off
        magnitude_ema_beta: float = 0.999,  # decay of the input magnitude average (training only)
    ):
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled, self.use_fp16 = w_dim, is_torgb, is_critically_sampled, use_fp16
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = in_cutoff, out_cutoff
        self.in_half_width, self.out_half_width = in_half_width, out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(round(self.tmp_sampling_rate / in_sampling_rate))
        self.down_factor = int(round(self.tmp_sampling_rate / out_sampling_rate))
        assert in_sampling_rate * self.up_factor == self.tmp_sampling_rate == out_sampling_rate * self.down_factor
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("up_filter", design_lowpass_filter(
            self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial))

        # Padding of the upsampled image so that the output has out_size pixels, with the samples
        # placed symmetrically (the paper's appendix C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                fused_modconv: Optional[bool] = None) -> torch.Tensor:
        assert noise_mode in NOISE_MODES, f"noise_mode must be one of {NOISE_MODES}"
        in_w, in_h = int(self.in_size[0]), int(self.in_size[1])
        assert x.shape[1:] == (self.in_channels, in_h, in_w), x.shape  # [NCHW]
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)  # [N, I]
        bias = self.bias.to(x.dtype)
        if self.is_torgb:
            # No demodulation: the equalised-lr gain and the input gain scale the styles.
            styles = styles * (input_gain / math.sqrt(self.in_channels * self.conv_kernel ** 2))
            x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv, bias=bias,
                                 padding=self.conv_kernel - 1)
        else:
            # Weights and styles are normalised before modulation for numerical range; demodulation
            # makes the result independent of both scales. Styles are normalised per image, so that
            # an image renders the same alone and in a batch. The input gain follows demodulation.
            weight = self.weight * self.weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
            styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
            x = modulated_conv2d(x, weight, styles, demodulate=True, fused=fused_modconv, gain=input_gain,
                                 bias=bias, padding=self.conv_kernel - 1)
        x = filtered_lrelu(x, self.up_filter, self.down_filter, up=self.up_factor, down=self.down_factor,
                           padding=self.padding, gain=1 if self.is_torgb else math.sqrt(2),
                           slope=1 if self.is_torgb else 0.2, clamp=self.conv_clamp)
        return x

    def extra_repr(self) -> str:
        return (f"torgb={self.is_torgb}, critical={self.is_critically_sampled}, in={self.in_channels}x{int(self.in_size[0])}, "
                f"out={self.out_channels}x{int(self.out_size[0])}, up={self.up_factor}, down={self.down_factor}, "
                f"radial={self.down_radial}")


class SynthesisNetwork(nn.Module):
    def __init__(
        self,
        w_dim: int,                      # intermediate latent (W) dimensionality
        img_resolution: int,             # output image resolution
        img_channels: int,               # number of colour channels
        channel_base: int = 32768,       # overall multiplier for the number of channels
        channel_max: int = 512,          # maximum number of channels in any layer
        num_layers: int = 14,            # layers besides the Fourier input and ToRGB
        num_critical: int = 2,           # critically sampled layers at the end
        first_cutoff: float = 2,         # cutoff frequency of the first layer
        first_stopband: float = 2 ** 2.1,  # minimum stopband of the first layer
        last_stopband_rel: float = 2 ** 0.3,  # minimum stopband of the last layer, relative to its cutoff
        margin_size: int = 10,           # extra pixels outside the image on each side
        output_scale: float = 0.25,      # scale of the output image
        num_fp16_res: int = 4,           # official mixed-precision setting; kept as the layers' use_fp16 flag
        **layer_kwargs,                  # arguments for SynthesisLayer
    ):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.num_layers, self.num_critical = num_layers, num_critical
        self.margin_size, self.output_scale, self.num_fp16_res = margin_size, output_scale, num_fp16_res

        # Cutoffs and stopbands grow geometrically from the first layer to the last non-critical
        # one; each layer samples at the smallest power of two above twice its stopband.
        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels

        self.input = SynthesisInput(w_dim, int(channels[0]), int(sizes[0]), sampling_rates[0], cutoffs[0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=bool(sampling_rates[idx] * 2 ** num_fp16_res > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f"L{idx}_{int(layer.out_size[0])}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", fused_modconv: Optional[bool] = None,
                transform: Optional[torch.Tensor] = None, force_fp32: bool = True,
                update_emas: bool = False) -> torch.Tensor:
        # force_fp32 and update_emas are the official call's: this network computes in fp32 (or under
        # the caller's autocast) either way, and never trains, so it tracks no magnitudes.
        assert not update_emas, "this StyleGAN3 does not train: update_emas is not supported"
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        assert noise_mode in NOISE_MODES, f"noise_mode must be one of {NOISE_MODES}"
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0], transform)
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, fused_modconv=fused_modconv)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32).contiguous()  # [N, img_channels, R, R]

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"num_layers={self.num_layers}, num_critical={self.num_critical}, margin_size={self.margin_size}")


class Generator(nn.Module):
    def __init__(
        self,
        z_dim: int,                               # input latent (Z) dimensionality
        c_dim: int,                               # conditioning label (C) dimensionality
        w_dim: int,                               # intermediate latent (W) dimensionality
        img_resolution: int,                      # output resolution
        img_channels: int,                        # number of output colour channels
        mapping_kwargs: Optional[dict] = None,    # MappingNetwork options (num_layers 2, w_avg_beta 0.998 by default)
        synthesis_kwargs: Optional[dict] = None,  # SynthesisNetwork and SynthesisLayer options
        network: str = NETWORK,                   # marks StyleGAN3 in init_kwargs (see checkpoints.build_generator)
    ):
        super().__init__()
        assert network == NETWORK, f"network must be {NETWORK!r}"
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mapping_kwargs = dict(mapping_kwargs or {})
        self.synthesis_kwargs = dict(synthesis_kwargs or {})
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **self.synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws,
                                      **{"num_layers": 2, "w_avg_beta": 0.998, **self.mapping_kwargs})

    @property
    def init_kwargs(self) -> dict:
        """Constructor arguments: `Generator(**G.init_kwargs)` builds the same architecture."""
        return dict(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim, img_resolution=self.img_resolution,
                    img_channels=self.img_channels, mapping_kwargs=dict(self.mapping_kwargs),
                    synthesis_kwargs=dict(self.synthesis_kwargs), network=NETWORK)

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)

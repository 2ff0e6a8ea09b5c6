"""The e4e / pSp encoders: official layout and outputs, file handling, bad input.

Golden outputs come from the official code (omertov/encoder4editing, eladrich/pixel2style2pixel)
run on seeded weights; tests/golden/encoders/README.md has the command that made them.
"""

import argparse
import pickle

import pytest
import torch
import torch.nn.functional as F

from pti_lab.errors import BadInputError, CheckpointError
from pti_lab.models import EncoderNet, Encoder4Editing, GradualStyleEncoder, load_encoder, load_generator, save_encoder
from pti_lab.models.checkpoints import url_cache_path
from pti_lab.models.encoders import encoder_class_and_kwargs, num_ws_of, resize_to_input
from pti_lab.synthfaces import shipped
from tests.golden.encoders.make_golden import (CONFIGS, GOLDEN_DIR, official_checkpoint, seeded_images,
                                               seeded_latent_avg, seeded_tensors)

CLASSES = {"e4e": Encoder4Editing, "psp": GradualStyleEncoder}


def golden(kind: str, size: int) -> dict:
    return torch.load(GOLDEN_DIR / f"{kind}_{size}.pt", weights_only=True)


@pytest.mark.parametrize("kind,size", CONFIGS, ids=[f"{k}-{s}px" for k, s in CONFIGS])
def test_official_checkpoint_reproduces_official_outputs(kind, size, tmp_path):
    expected = golden(kind, size)
    decoder = seeded_tensors(expected["decoder_shapes"], decoder=True) if size == 64 else {}
    path = tmp_path / f"{kind}_{size}.pt"
    torch.save(official_checkpoint(kind, size, seeded_tensors(expected["encoder_shapes"]), decoder), path)

    encoder = load_encoder(path)
    # Same tensor names and shapes as the official module: its state dict loads with strict=True.
    assert {k: list(v.shape) for k, v in encoder.encoder.state_dict().items()} == expected["encoder_shapes"]
    assert (encoder.kind, encoder.num_ws, encoder.w_dim, encoder.input_size) == (kind, num_ws_of(size), 512, (256, 256))
    with torch.no_grad():
        ws = encoder(seeded_images())
    assert (ws - expected["ws"]).abs().max() < 1e-4
    # Not a trivial match: the encoder's part varies with the image and the W+ index.
    codes = expected["ws"] - seeded_latent_avg(num_ws_of(size))
    assert codes.std() > 0.2 and (codes[0] - codes[1]).abs().mean() > 0.05

    if size == 64:  # the checkpoint's decoder serves as the generator
        G = load_generator(path)
        assert torch.equal(G.mapping.w_avg, seeded_latent_avg(G.num_ws)[0])
        with torch.no_grad():
            images = G.synthesis(expected["ws"], noise_mode="const")
        scale = expected["images"].abs().max()
        assert scale > 1 and (images - expected["images"]).abs().max() < 1e-4 * scale


def test_resize_matches_pil_bilinear():
    """The input resize is PIL's bilinear (torchvision's Resize on PIL images) up to PIL's 8-bit rounding."""
    Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to compare with PIL's resize")
    import numpy as np

    generator = torch.Generator().manual_seed(0)
    for size in (512, 300, 100, 64):  # shrink 2x, shrink by a non-integer factor, enlarge
        pixels = torch.randint(0, 256, [1, 3, size, size], generator=generator, dtype=torch.uint8)
        pil = Image.fromarray(pixels[0].permute(1, 2, 0).numpy()).resize((256, 256), Image.BILINEAR)
        pil = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float()
        with torch.no_grad():
            ours = resize_to_input(pixels.float(), (256, 256))[0]
        assert (ours - pil).abs().max() <= 1.01  # one 8-bit level: PIL rounds after each pass
        if size > 256:  # noise images: shrinking without PIL's antialiasing would be far off
            plain = F.interpolate(pixels.float(), size=(256, 256), mode="bilinear", align_corners=False)[0]
            assert (plain - pil).abs().max() > 20


# ----------------------------------------------------------------------------------------------
# Small encoders (our size knobs) for the file and bad-input tests.

SMALL = dict(w_dim=64, widths=(16, 16, 32, 32), units=(1, 1, 1, 1), style_channels=32, input_size=64)


def small_net(kind: str = "e4e", num_ws: int = 10, seed: int = 0) -> EncoderNet:
    torch.manual_seed(seed)
    encoder = CLASSES[kind](num_ws=num_ws, **SMALL)
    for module in encoder.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return EncoderNet(encoder, torch.randn(SMALL["w_dim"]) * 0.5).eval()


def images(count: int = 2, size: int = 64) -> torch.Tensor:
    return torch.rand([count, 3, size, size], generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("kind", ["e4e", "psp"])
def test_own_encoder_round_trip_and_fp16(kind, tmp_path):
    net = small_net(kind)
    save_encoder(net, tmp_path / "fp32.pt", extra_opts={"seed": 3})
    loaded = load_encoder(tmp_path / "fp32.pt")
    assert (loaded.kind, loaded.num_ws, loaded.w_dim, loaded.input_size) == (kind, 10, 64, (64, 64))
    assert loaded.opts["stylegan_size"] == 64 and loaded.opts["seed"] == 3
    with torch.no_grad():
        assert torch.equal(loaded(images()), net(images()))
        # A 128 px image is resized to the encoder's 64 px.
        assert torch.allclose(loaded(F.interpolate(images(), size=(128, 128), mode="bilinear", antialias=True)),
                              net(images()), atol=0.5)

    save_encoder(net, tmp_path / "fp16.pt", half=True)
    half = load_encoder(tmp_path / "fp16.pt")
    assert half.latent_avg.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in half.encoder.state_dict().values() if t.is_floating_point())
    rounded = {k: v.half().float() if v.is_floating_point() else v for k, v in net.encoder.state_dict().items()}
    net.encoder.load_state_dict(rounded)
    net.latent_avg.copy_(net.latent_avg.half().float())
    with torch.no_grad():
        assert torch.equal(half(images()), net(images()))
    assert (tmp_path / "fp16.pt").stat().st_size < 0.6 * (tmp_path / "fp32.pt").stat().st_size


def test_latent_avg_forms_and_namespace_opts(tmp_path):
    """latent_avg [num_ws, w_dim] (e4e), [w_dim] (some pSp files) or absent without
    start_from_latent_avg; opts saved as an argparse.Namespace read as data."""
    net = small_net("psp")
    path = tmp_path / "psp.pt"
    save_encoder(net, path)
    ckpt = torch.load(path, weights_only=True)
    with torch.no_grad():
        expected = net(images())
        codes = expected - net.latent_avg
    variants = [({"latent_avg": net.latent_avg[0].clone()}, expected),
                ({"opts": argparse.Namespace(**ckpt["opts"])}, expected),
                ({"opts": {**ckpt["opts"], "start_from_latent_avg": False}}, codes)]
    for change, want in variants:
        torch.save({**ckpt, **change}, path)
        with torch.no_grad():
            assert torch.allclose(load_encoder(path)(images()), want, atol=1e-6)
    del ckpt["latent_avg"], ckpt["opts"]["start_from_latent_avg"]  # older files: add it iff present
    torch.save(ckpt, path)
    with torch.no_grad():
        assert torch.allclose(load_encoder(path)(images()), codes, atol=1e-6)


def test_official_input_sizes():
    assert encoder_class_and_kwargs({"encoder_type": "Encoder4Editing", "stylegan_size": 512,
                            "dataset_type": "cars_encode"}, "f")[1] == {"num_ws": 16, "input_size": (192, 256)}
    assert encoder_class_and_kwargs({"encoder_type": "GradualStyleEncoder"}, "f")[1] == {"num_ws": 18}  # 1024 by default
    with pytest.raises(CheckpointError, match="disagree"):
        encoder_class_and_kwargs({"encoder_type": "GradualStyleEncoder", "stylegan_size": 256, "output_size": 1024}, "f")


def test_e4e_progressive_stages():
    net = small_net("e4e")
    with torch.no_grad():
        full = net(images())
        net.encoder.progressive_stage = 0  # official WTraining stage: one w for every layer
        single = net(images()) - net.latent_avg
        net.encoder.progressive_stage = 4
        partial = net(images())
    assert torch.allclose(single, single[:, :1].expand_as(single))
    assert torch.equal(partial[:, :5], full[:, :5]) and not torch.allclose(partial[:, 5:], full[:, 5:])


@pytest.mark.parametrize("num_layers,taps", [(50, [6, 20, 23]), (100, [15, 45, 48]), (152, [10, 46, 49])])
def test_official_depths(num_layers, taps):
    encoder = GradualStyleEncoder(num_ws=4, num_layers=num_layers, **{**SMALL, "units": None})
    assert len(encoder.body) == taps[-1] + 1 and encoder.taps == taps
    assert encoder(images(1)).shape == (1, 4, SMALL["w_dim"])


# ----------------------------------------------------------------------------------------------
# Bad input: one line naming the file; nothing from the file runs.

class OpensFile:
    """Unpickling this calls open(path, 'w'): a file appearing means the loader ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def one_line(excinfo, path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("where", ["opts", "state_dict", "top", "plain_pickle"])
def test_code_carrying_file_is_refused_and_nothing_runs(where, tmp_path):
    marker = tmp_path / "ran"
    net = small_net()
    path = tmp_path / "evil.pt"
    save_encoder(net, path)
    ckpt = torch.load(path, weights_only=True)
    hostile = OpensFile(marker)
    if where == "opts":
        ckpt["opts"]["hook"] = hostile
    elif where == "state_dict":
        ckpt["state_dict"]["encoder.extra"] = hostile
    else:
        ckpt["hook"] = hostile
    if where == "plain_pickle":
        path.write_bytes(pickle.dumps(ckpt))
    else:
        torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as excinfo:
        load_encoder(path)
    assert "hostile" in one_line(excinfo, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        load_generator(path)
    assert not marker.exists()
    # The payload is live: an unrestricted load would have run it.
    torch.load(path, weights_only=False) if where != "plain_pickle" else pickle.loads(path.read_bytes())
    assert marker.exists()


def test_missing_and_misshaped_tensors_are_listed(tmp_path):
    path = tmp_path / "e4e.pt"
    save_encoder(small_net(), path)
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["state_dict"]
    del state["encoder.styles.3.linear.weight"], state["encoder.body.2.res_layer.0.running_var"]
    state["encoder.latlayer1.weight"] = state["encoder.latlayer1.weight"][:5]
    state["encoder.body.9.bogus"] = torch.zeros(2)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as excinfo:
        load_encoder(path)
    message = one_line(excinfo, path)
    for name in ("styles.3.linear.weight", "body.2.res_layer.0.running_var", "latlayer1.weight [5, 32, 1, 1]",
                 "body.9.bogus", "2 missing", "1 mis-shaped", "1 unexpected"):
        assert name in message


def test_misshaped_latent_avg_and_bad_opts(tmp_path):
    path = tmp_path / "e4e.pt"
    save_encoder(small_net(), path)
    original = torch.load(path, weights_only=True)
    cases = [
        (lambda c: c.update(latent_avg=torch.zeros(3, 64)), r"latent_avg is \[3, 64\]"),
        (lambda c: c.pop("latent_avg"), "no latent_avg"),
        (lambda c: c["opts"].update(encoder_type="BackboneEncoderUsingLastLayerIntoW"), "not supported"),
        (lambda c: c["opts"].update(encoder_type="ResNetEncoder"), "encoder_type"),
        (lambda c: c["opts"].update(input_nc=1), "not an image encoder"),
        (lambda c: c["opts"].update(stylegan_size=100), "not a power of two"),
        (lambda c: c["opts"].update(stylegan_size=128), "20 missing: styles.10"),  # 2 more styles than the file has
        (lambda c: c.pop("opts"), "not an e4e/pSp checkpoint"),
    ]
    for mutate, pattern in cases:
        ckpt = {**original, "opts": dict(original["opts"]), "state_dict": dict(original["state_dict"])}
        mutate(ckpt)
        torch.save(ckpt, path)
        with pytest.raises(CheckpointError, match=pattern) as excinfo:
            load_encoder(path)
        one_line(excinfo, path)


def test_corrupt_truncated_and_missing_files(tmp_path):
    path = tmp_path / "e4e.pt"
    save_encoder(small_net(), path)
    data = path.read_bytes()
    for name, content in (("truncated.pt", data[: len(data) // 2]), ("garbage.pt", bytes(range(256)) * 40),
                          ("empty.pt", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as excinfo:
            load_encoder(tmp_path / name)
        one_line(excinfo, tmp_path / name)
    with pytest.raises(CheckpointError, match="no such file"):
        load_encoder(tmp_path / "absent.pt")


def test_generator_mismatch_names_both(tmp_path):
    path = tmp_path / "e4e_128.pt"
    net = small_net(num_ws=num_ws_of(128))
    save_encoder(net, path)
    encoder = load_encoder(path)
    G = load_generator(shipped.path_of(shipped.GENERATOR_FILE))
    with pytest.raises(BadInputError) as excinfo:
        encoder.check_generator(G, "generator.pt")
    message = one_line(excinfo, path)
    assert "num_ws=12" in message and "num_ws=10" in message and "generator.pt" in message
    matching = EncoderNet(Encoder4Editing(num_ws=G.num_ws, **{**SMALL, "w_dim": G.w_dim}))
    matching.check_generator(G)
    with pytest.raises(BadInputError, match=r"expected images \[N, 3, H, W\]"):
        encoder(torch.zeros(1, 1, 64, 64))


def test_url_uses_cache_then_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("PTI_LAB_CACHE", str(tmp_path / "cache"))
    url = "http://127.0.0.1:9/encoders/e4e_synth.pt"  # discard port: nothing listens
    with pytest.raises(CheckpointError, match=r"download failed .* place it at .*e4e_synth\.pt"):
        load_encoder(url)
    cached = url_cache_path(url)
    cached.parent.mkdir(parents=True, exist_ok=True)
    net = small_net()
    save_encoder(net, cached)
    with torch.no_grad():
        assert torch.equal(load_encoder(url)(images()), net(images()))


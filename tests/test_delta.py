import copy

import pytest
import torch

from pti_lab.errors import CheckpointError
from pti_lab.models import Generator, load_generator, save_generator
from pti_lab.models.delta import load_tuned, render_probes, save_tuned
from pti_lab.models.fingerprint import generator_fingerprint


def small_generator(seed: int) -> Generator:
    torch.manual_seed(seed)
    G = Generator(32, 0, 32, 32, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=512, channel_max=32))
    with torch.no_grad():
        for res in G.synthesis.block_resolutions:  # keep fresh images near [-1, 1], as trained ones are
            getattr(G.synthesis, f"b{res}").torgb.weight.mul_(0.12)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def base():
    return small_generator(0)


def tuned_from(base: Generator, names: tuple[str, ...], scale: float = 0.05) -> Generator:
    """A copy of base with the named tensors moved as a short fine-tuning would move them."""
    tuned = copy.deepcopy(base)
    state = dict(tuned.named_parameters())
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in names:
            state[name].add_(torch.randn(state[name].shape, generator=gen) * scale)
    return tuned


SYNTHESIS_WEIGHTS = ("synthesis.b4.conv1.weight", "synthesis.b8.conv0.weight", "synthesis.b16.conv1.weight",
                     "synthesis.b32.torgb.weight", "synthesis.b32.conv1.affine.bias")


def test_round_trip_reproduces_the_tuned_images(base, tmp_path):
    tuned = tuned_from(base, SYNTHESIS_WEIGHTS)
    pivot = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(7))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    manifest = save_tuned(tuned, base, tmp_path / "delta.pt", latents=pivot)
    assert manifest["dtype"] == "float16" and manifest["tensors"] == len(SYNTHESIS_WEIGHTS)
    assert manifest["base_sha256"] == generator_fingerprint(base) and manifest["max_image_error"] <= 2e-3
    restored = load_tuned(tmp_path / "delta.pt", base)
    assert restored is not base and not restored.training
    assert not any(p.requires_grad for p in restored.parameters())
    assert (render_probes(restored, 3, 11, pivot) - render_probes(tuned, 3, 11, pivot)).abs().max() <= 2e-3
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # base untouched


def test_only_changed_tensors_are_stored_and_the_file_is_small(base, tmp_path):
    tuned = tuned_from(base, ("synthesis.b32.torgb.bias", "synthesis.b16.conv1.bias"))
    manifest = save_tuned(tuned, base, tmp_path / "delta.pt")
    payload = torch.load(tmp_path / "delta.pt", weights_only=True)
    assert sorted(payload["delta"]) == ["synthesis.b16.conv1.bias", "synthesis.b32.torgb.bias"]
    full = save_generator(tuned, tmp_path / "full.pt").stat().st_size
    assert manifest["bytes"] == (tmp_path / "delta.pt").stat().st_size < full / 20


def test_fp32_when_fp16_would_change_the_images(base, tmp_path):
    tuned = tuned_from(base, SYNTHESIS_WEIGHTS)
    assert save_tuned(tuned, base, tmp_path / "a.pt", tolerance=1e-9)["dtype"] == "float32"
    huge = tuned_from(base, ("synthesis.b32.torgb.bias",), scale=1e6)  # beyond fp16's range
    manifest = save_tuned(huge, base, tmp_path / "b.pt")
    assert manifest["dtype"] == "float32"
    restored = load_tuned(tmp_path / "b.pt", base)
    assert torch.equal(restored.synthesis.b32.torgb.bias, huge.synthesis.b32.torgb.bias)


def test_wrong_base_is_refused_naming_both(base, tmp_path):
    save_tuned(tuned_from(base, SYNTHESIS_WEIGHTS), base, tmp_path / "delta.pt")
    other = small_generator(1)
    expected = f"tuned against base {generator_fingerprint(base)[:12]}, given {generator_fingerprint(other)[:12]}"
    with pytest.raises(CheckpointError, match=expected):
        load_tuned(tmp_path / "delta.pt", other)


def test_fingerprint_depends_on_the_weights_not_the_file_or_dtype(base, tmp_path):
    save_generator(base, tmp_path / "base.pt")
    assert generator_fingerprint(load_generator(tmp_path / "base.pt")) == generator_fingerprint(base)
    assert generator_fingerprint(copy.deepcopy(base).double()) == generator_fingerprint(base)
    assert generator_fingerprint(tuned_from(base, ("mapping.fc0.bias",), 1e-3)) != generator_fingerprint(base)


def test_corrupt_or_misfitting_files_are_refused(base, tmp_path):
    path = tmp_path / "delta.pt"
    save_tuned(tuned_from(base, SYNTHESIS_WEIGHTS), base, path)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: truncated or corrupt"):
        load_tuned(tmp_path / "cut.pt", base)
    with pytest.raises(CheckpointError, match="missing.pt: no such file"):
        load_tuned(tmp_path / "missing.pt", base)

    payload = torch.load(path, weights_only=True)
    payload["delta"] = {"synthesis.b32.torgb.bias": torch.zeros(5)}
    torch.save(payload, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"shape.pt: delta for 'synthesis.b32.torgb.bias' has shape \[5\]"):
        load_tuned(tmp_path / "shape.pt", base)
    payload["delta"] = {"synthesis.b64.torgb.bias": torch.zeros(3)}
    torch.save(payload, tmp_path / "name.pt")
    with pytest.raises(CheckpointError, match="name.pt: delta for 'synthesis.b64.torgb.bias'"):
        load_tuned(tmp_path / "name.pt", base)
    save_generator(base, tmp_path / "full.pt")
    with pytest.raises(CheckpointError, match="full.pt: not a pti-lab generator delta"):
        load_tuned(tmp_path / "full.pt", base)

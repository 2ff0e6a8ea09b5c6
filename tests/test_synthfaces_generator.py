"""The shipped synthfaces generator, the weights manifest, and the generator's training loop."""

import json
import shutil
import warnings

import pytest
import torch

from pti_lab.errors import BadInputError, CheckpointError, WeightsNotFoundError
from pti_lab.models.checkpoints import load_generator
from pti_lab.synthfaces import shipped
from pti_lab.synthfaces.testsets import make_testset
from pti_lab.train.synthfaces_generator import GENERATOR_FILE, decode, make_lpips, train
from tests.conftest import TINY_GENERATOR

# Measured on the shipped generator: 0.046 on these 4 images (0.030 on all 32). The margin absorbs
# retraining noise, not a broken model: an untrained generator scores about 0.8, and one that draws
# blurred faces without eyes about 0.16.
RECON_LPIPS_LIMIT = 0.10

@pytest.fixture(scope="module")
def shipped_generator():
    return load_generator(shipped.path_of(GENERATOR_FILE))


@pytest.fixture
def weights_copy(tmp_path):
    """A copy of the shipped weights folder, safe to damage."""
    folder = tmp_path / "weights"
    shutil.copytree(shipped.WEIGHTS_DIR, folder)
    return folder


def test_shipped_generator_renders_64px_images(shipped_generator):
    G = shipped_generator
    assert (G.z_dim, G.img_resolution, G.img_channels) == (40, 64, 3)
    z = torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = G(z, noise_mode="const")
    assert images.shape == (4, 3, 64, 64)
    assert torch.isfinite(images).all()
    assert images.abs().max() < 2.0 and images.std() > 0.1  # ~[-1, 1] (measured overshoot 1.6), not flat


def test_shipped_generator_reconstructs_held_out_faces(shipped_generator):
    pixels, params = make_testset("indomain", 4)
    target = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        distance = make_lpips()(decode(shipped_generator, params, torch.device("cpu")), target).mean().item()
    assert distance < RECON_LPIPS_LIMIT


def test_manifest_lists_every_shipped_file():
    manifest = shipped.read_manifest()
    on_disk = {p.name for p in shipped.WEIGHTS_DIR.iterdir() if p.name != shipped.MANIFEST and not p.name.startswith(".")}
    assert on_disk == set(manifest["files"])
    for name, entry in manifest["files"].items():
        assert {"sha256", "bytes", "command", "seed", "minutes", "device", "metrics"} <= set(entry), name
        assert shipped.path_of(name) == shipped.WEIGHTS_DIR / name
    assert sum(entry["bytes"] for entry in manifest["files"].values()) <= 30 * 2**20


def test_corrupted_file_names_the_rebuild_command(weights_copy):
    command = shipped.read_manifest(weights_copy)["files"][GENERATOR_FILE]["command"]
    path = weights_copy / GENERATOR_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256") as error:
        shipped.path_of(GENERATOR_FILE, weights_copy)
    assert str(path) in str(error.value) and command in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_names_the_rebuild_command(weights_copy):
    command = shipped.read_manifest(weights_copy)["files"][GENERATOR_FILE]["command"]
    (weights_copy / GENERATOR_FILE).unlink()
    with pytest.raises(WeightsNotFoundError, match="missing") as error:
        shipped.path_of(GENERATOR_FILE, weights_copy)
    assert command in str(error.value)


def test_unlisted_file_is_refused(weights_copy):
    with pytest.raises(WeightsNotFoundError, match="not listed"):
        shipped.path_of("other.pt", weights_copy)


def test_record_merges_metrics_of_the_same_bytes_and_replaces_new_bytes(tmp_path):
    folder, source = tmp_path / "shipped", tmp_path / "net.pt"
    source.write_bytes(b"first")
    shipped.record("net.pt", source, command="python -m train --seed 1", seed=1, metrics={"a": 1.0}, folder=folder)
    entry = shipped.record("net.pt", folder / "net.pt", metrics={"b": 2.0}, folder=folder)
    assert entry["metrics"] == {"a": 1.0, "b": 2.0} and entry["command"] == "python -m train --seed 1"
    assert shipped.path_of("net.pt", folder).read_bytes() == b"first"

    source.write_bytes(b"second")
    with pytest.raises(BadInputError, match="command"):
        shipped.record("net.pt", source, metrics={"c": 3.0}, folder=folder)
    assert shipped.path_of("net.pt", folder).read_bytes() == b"first"  # a refused record changes nothing
    entry = shipped.record("net.pt", source, command="python -m train --seed 2", seed=2, folder=folder)
    assert entry["metrics"] == {} and entry["seed"] == 2
    manifest = json.loads((folder / shipped.MANIFEST).read_text())
    assert list(manifest["files"]) == ["net.pt"]
    assert shipped.path_of("net.pt", folder).read_bytes() == b"second"


def test_file_built_from_a_replaced_file_warns(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / shipped.MANIFEST).write_text(json.dumps({"format": shipped.FORMAT, "version": shipped.FORMAT_VERSION,
                                                       "files": {}}))
    source, built = tmp_path / "source.pt", tmp_path / "built.pt"
    source.write_bytes(b"first")
    built.write_bytes(b"built")
    first = shipped.record("source.pt", source, command="python -m train_source", folder=folder)
    shipped.record("built.pt", built, command="python -m train_built", built_from={"source.pt": first["sha256"]},
                   folder=folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shipped.path_of("built.pt", folder)  # still the source it was built from: no warning
    source.write_bytes(b"second")
    shipped.record("source.pt", source, command="python -m train_source", folder=folder)
    with pytest.warns(UserWarning, match=r"built\.pt were built from another source\.pt .*python -m train_built"):
        shipped.path_of("built.pt", folder)


def test_shipped_files_were_built_from_the_shipped_ones():
    files = shipped.read_manifest()["files"]
    assert files["clip.pt"]["built_from"] == {"predictor.pt": files["predictor.pt"]["sha256"]}
    assert files["boundaries.pt"]["built_from"] == {name: files[name]["sha256"]
                                                   for name in ("generator.pt", "predictor.pt")}


def test_training_loop_reduces_the_loss(tmp_path):
    # The step count decides, not the clock: a loaded machine must not cut the run short.
    summary = train(tmp_path, seed=0, minutes=60, max_steps=40, device="cpu", batch=4, lr=0.05,
                    architecture=TINY_GENERATOR, log_every=10)
    assert summary["steps"] == 40
    assert summary["final_l1"] < 0.8 * summary["first_l1"]
    G = load_generator(tmp_path / GENERATOR_FILE)
    assert G.init_kwargs["synthesis_kwargs"] == TINY_GENERATOR["synthesis_kwargs"]
    assert summary["fp16_max_abs_diff"] < 0.05

"""Identity networks: dlib on a real photo, ArcFace IR-SE50 on a random checkpoint, the none option."""

import inspect
from pathlib import Path

import hydra.utils
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from pti_lab.errors import BadInputError, CheckpointError, WeightsNotFoundError
from pti_lab.metrics.image import reconstruction_row
from pti_lab.models.arcface import IRSE50, load_ir_se50
from pti_lab.models.identity import ArcFaceIdentity, DlibIdentity

skimage_data = pytest.importorskip("skimage.data")

CONF = Path(__file__).resolve().parents[1] / "conf" / "identity"


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 -> [1, 3, H, W] float in [-1, 1]."""
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.fixture(scope="module")
def dlib_identity() -> DlibIdentity:
    return DlibIdentity()


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return to_tensor(skimage_data.astronaut())  # [1, 3, 512, 512], a real face photo


# ----------------------------------------------------------------------------
# dlib


def test_dlib_embeds_real_face(dlib_identity, astronaut):
    embeddings, valid, reasons = dlib_identity.embed(astronaut)
    assert embeddings.shape == (1, 128) and embeddings.dtype == torch.float32
    assert valid.tolist() == [True] and reasons == [None]
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(1), atol=1e-5)
    raw, _, _ = dlib_identity.descriptors(astronaut)
    assert torch.allclose(F.normalize(raw, dim=1), embeddings)


def test_dlib_similarity_of_same_face(dlib_identity, astronaut):
    mirrored = astronaut.flip(-1)
    shifted = torch.roll(astronaut, shifts=(6, -9), dims=(2, 3))
    batch_a = torch.cat([astronaut, astronaut, astronaut])
    similarities = dlib_identity.similarity(batch_a, torch.cat([astronaut, mirrored, shifted]))
    assert similarities[0] == pytest.approx(1.0, abs=1e-5)
    assert similarities[1] > 0.9 and similarities[2] > 0.9


def test_dlib_no_face_gives_none_with_reason(dlib_identity, astronaut):
    coffee = to_tensor(skimage_data.coffee()[:, :400])  # a real photo without a face
    similarities, reasons = dlib_identity.compare(astronaut, coffee)
    assert similarities == [None] and reasons == ["second image: no face detected"]


def test_dlib_batch_mixing_face_and_blank(dlib_identity, astronaut):
    blank = torch.zeros_like(astronaut)
    embeddings, valid, reasons = dlib_identity.embed(torch.cat([astronaut, blank]))
    assert valid.tolist() == [True, False] and reasons == [None, "no face detected"]
    assert embeddings[1].abs().sum() == 0
    similarities, reasons = dlib_identity.compare(torch.cat([astronaut, blank]), torch.cat([astronaut, astronaut]))
    assert similarities[0] == pytest.approx(1.0, abs=1e-5) and similarities[1] is None
    assert reasons == [None, "first image: no face detected"]


def test_dlib_small_face_is_upscaled_and_found(dlib_identity, astronaut):
    face_crop = astronaut[:, :, 60:190, 155:285]  # [1, 3, 130, 130] around the face
    small = F.interpolate(face_crop, size=(64, 64), mode="area")
    similarities, reasons = dlib_identity.compare(small, astronaut)
    assert reasons == [None] and similarities[0] > 0.9


def test_identity_rejects_bad_images(dlib_identity, astronaut):
    with pytest.raises(BadInputError, match="DlibIdentity"):
        dlib_identity.embed(astronaut * 127.5 + 127.5)  # [0, 255]
    with pytest.raises(BadInputError, match="batch sizes"):
        dlib_identity.compare(astronaut, torch.cat([astronaut, astronaut]))


# ----------------------------------------------------------------------------
# ArcFace IR-SE50 (random weights in the model_ir_se50.pth layout)


@pytest.fixture(scope="module")
def arcface_state() -> dict:
    torch.manual_seed(0)
    net = IRSE50()
    for module in net.modules():  # non-trivial BatchNorm statistics so eval mode matters
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return net.state_dict()


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory, arcface_state) -> Path:
    path = tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth"
    torch.save(arcface_state, path)
    return path


def test_arcface_state_dict_names_match_checkpoint(arcface_state):
    shapes = {key: tuple(value.shape) for key, value in arcface_state.items()}
    assert shapes["input_layer.0.weight"] == (64, 3, 3, 3)
    assert shapes["input_layer.2.weight"] == (64,)  # PReLU
    assert shapes["body.0.res_layer.5.fc1.weight"] == (4, 64, 1, 1)
    assert shapes["body.3.shortcut_layer.0.weight"] == (128, 64, 1, 1)
    assert "body.0.shortcut_layer.0.weight" not in shapes  # max-pool shortcut, no weights
    assert shapes["body.23.res_layer.3.weight"] == (512, 512, 3, 3)
    assert "body.24.res_layer.0.weight" not in shapes
    assert shapes["output_layer.3.weight"] == (512, 512 * 7 * 7)
    assert shapes["output_layer.4.running_var"] == (512,)
    assert sum(p.numel() for p in IRSE50().parameters()) == 43_797_696


def test_arcface_embedding_convention(arcface_file):
    identity = ArcFaceIdentity(weights=str(arcface_file))
    torch.manual_seed(1)
    images = torch.rand(2, 3, 256, 256) * 2 - 1
    embeddings, valid, reasons = identity.embed(images)
    assert embeddings.shape == (2, 512) and valid.tolist() == [True, True] and reasons == [None, None]
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(2), atol=1e-5)
    # pSp IDLoss: crop [35:223, 32:220] of the 256 px image, adaptive-average-pool to 112; the same
    # numbers from a second, independently loaded copy (deterministic load and forward).
    pixels = F.adaptive_avg_pool2d(images[:, :, 35:223, 32:220], (112, 112))
    assert torch.equal(ArcFaceIdentity.preprocess(images), pixels)
    assert torch.equal(ArcFaceIdentity(weights=str(arcface_file)).net(pixels), embeddings)
    assert torch.equal(identity.embed(images)[0], embeddings)
    # 1024 px inputs are area-pooled to 256 first (e4e).
    large = images.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    assert torch.allclose(ArcFaceIdentity.preprocess(large), pixels, atol=1e-6)
    # Differentiable, for use as an ID loss.
    probe = images[:1].clone().requires_grad_(True)
    identity.embed(probe)[0].sum().backward()
    assert probe.grad is not None and probe.grad.abs().sum() > 0
    with pytest.raises(BadInputError, match="square"):
        identity.embed(images[:, :, :200])


def test_arcface_missing_weights_names_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PTI_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotFoundError, match=r"model_ir_se50\.pth not found; place it at .*cache") as info:
        ArcFaceIdentity()
    assert "\n" not in str(info.value)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        ArcFaceIdentity(weights=str(tmp_path / "nowhere.pth"))


def test_arcface_checkpoint_errors(tmp_path, arcface_state):
    def saved(state, name):
        path = tmp_path / name
        torch.save(state, path)
        return path

    without_key = {k: v for k, v in arcface_state.items() if k != "body.5.res_layer.1.weight"}
    with pytest.raises(CheckpointError, match=r"missing\.pth: .*missing key body\.5\.res_layer\.1\.weight"):
        load_ir_se50(saved(without_key, "missing.pth"))

    wrong_shape = {**arcface_state, "output_layer.3.weight": torch.zeros(512, 100)}
    expected_message = r"shape\.pth: IR-SE50 key output_layer\.3\.weight has shape \[512, 100\]"
    with pytest.raises(CheckpointError, match=expected_message):
        load_ir_se50(saved(wrong_shape, "shape.pth"))

    extra = {**arcface_state, "fc.weight": torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"unexpected key fc\.weight"):
        load_ir_se50(saved(extra, "extra.pth"))

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth: cannot read IR-SE50 weights"):
        load_ir_se50(tmp_path / "garbage.pth")

    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_ir_se50(saved([1, 2, 3], "list.pth"))


def test_arcface_accepts_checkpoint_without_batch_counters(tmp_path, arcface_state):
    old_style = {k: v for k, v in arcface_state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old_style, tmp_path / "old.pth")
    net = load_ir_se50(tmp_path / "old.pth")
    assert not net.training and torch.equal(net.output_layer[3].weight, arcface_state["output_layer.3.weight"])


# ----------------------------------------------------------------------------
# identity=none and the Hydra configs


def test_no_identity(astronaut):
    row = reconstruction_row(astronaut, astronaut, identity=None)  # identity=none
    assert row["id_sim"] is None and row["reasons"]["id_sim"] == "identity network disabled"


def test_identity_configs_instantiate(arcface_file):
    assert OmegaConf.load(CONF / "none.yaml") == {"identity": None}  # @package _global_: the node is null
    arcface_cfg = OmegaConf.load(CONF / "arcface.yaml")
    arcface_cfg.weights = str(arcface_file)
    assert isinstance(hydra.utils.instantiate(arcface_cfg), ArcFaceIdentity)
    dlib_cfg = OmegaConf.load(CONF / "dlib.yaml")
    assert dlib_cfg._target_ == "pti_lab.models.identity.DlibIdentity"
    assert set(dlib_cfg) - {"_target_"} <= set(inspect.signature(DlibIdentity).parameters)

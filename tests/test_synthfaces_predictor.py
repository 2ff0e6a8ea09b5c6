"""The synthfaces predictor: shipped weights, identity invariance, attribute tracking, training smoke test.

Margins below were measured on these exact renders with the shipped weights (seed 0, 5.5 min on an
H100): same-identity cosines >= 0.94, different identities <= 0.67 (<= 0.27 when only the identity
differs), predicted smile and yaw increasing in every face of the sweeps.
"""

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pti_lab.errors import BadInputError, CheckpointError, WeightsNotFoundError
from pti_lab.train import synthfaces_predictor
from pti_lab.synthfaces.params import ATTRIBUTES, IDENTITY, INDEX, sample_params
from pti_lab.synthfaces.predictor import (
    AttributePredictor, PredictorNetwork, SynthfacesIdentity, load_predictor,
)
from pti_lab.synthfaces.render import render_torch

CONF = Path(__file__).resolve().parents[1] / "conf" / "identity"
IDENTITY_COLUMNS = [INDEX[name] for name in IDENTITY]


@pytest.fixture(scope="module")
def identity() -> SynthfacesIdentity:
    return SynthfacesIdentity()


@pytest.fixture(scope="module")
def predictor() -> AttributePredictor:
    return AttributePredictor()


@pytest.fixture(scope="module")
def faces():
    """32 faces; the same identities with every other field re-drawn and random extras on; and the
    first faces' non-identity fields with the identities shifted by one (different people)."""
    first = sample_params(32, 4242)
    same = sample_params(32, 4243, extras="random")
    same[:, IDENTITY_COLUMNS] = first[:, IDENTITY_COLUMNS]
    other = first.copy()
    other[:, IDENTITY_COLUMNS] = np.roll(first[:, IDENTITY_COLUMNS], 1, axis=0)
    return first, same, other


def sweep(name: str, values, count: int = 16) -> torch.Tensor:
    """`count` faces rendered with only `name` changing over `values`: [len(values) * count, 3, 64, 64]."""
    base = sample_params(count, 4244)
    rows = []
    for value in values:
        rows.append(base.copy())
        rows[-1][:, INDEX[name]] = value
    return render_torch(np.concatenate(rows))


@torch.no_grad()
def test_identity_ignores_pose_expression_and_extras(identity, faces):
    first, same, other = (identity.embed(render_torch(params))[0] for params in faces)
    assert first.shape == (32, 128)
    assert torch.allclose(first.norm(dim=1), torch.ones(32), atol=1e-5)
    positive = (first * same).sum(dim=1)
    different = (first @ same.T)[~torch.eye(32, dtype=torch.bool)]
    only_identity_differs = (first * other).sum(dim=1)
    assert positive.min() > 0.85
    assert different.max() < 0.8 and only_identity_differs.max() < 0.5
    assert positive.min() > different.max() + 0.1


@torch.no_grad()
def test_identity_compare_and_resolution(identity, faces):
    first, same, _ = faces
    similarities, reasons = identity.compare(render_torch(first[:4], 128), render_torch(first[:4]))
    assert reasons == [None] * 4 and min(similarities) > 0.98  # 128 px input is pooled to 64 px
    similarities = identity.similarity(render_torch(first[:4]), render_torch(same[:4]))
    assert min(similarities) > 0.85


def test_identity_rejects_bad_images(identity):
    images = render_torch(sample_params(2, 1))
    with pytest.raises(BadInputError, match=r"\[-1, 1\]"):
        identity.embed(images * 127.5 + 127.5)
    with pytest.raises(BadInputError, match="square"):
        identity.embed(images[:, :, :48])


@torch.no_grad()
def test_attribute_predictions_track_smile_and_yaw(predictor):
    values = np.linspace(-1, 1, 5)
    for name in ("smile", "yaw"):
        predicted = predictor.predict(sweep(name, values))[name].view(5, 16)   # [value, face]
        assert (predicted[1:] > predicted[:-1]).all(), name  # increasing in every face
        assert (predicted - torch.tensor(values, dtype=torch.float32)[:, None]).abs().mean() < 0.3, name


@torch.no_grad()
def test_predict_returns_every_attribute_in_range(predictor):
    scores = predictor.predict(render_torch(sample_params(8, 7, extras="random")))
    assert set(scores) == set(ATTRIBUTES)
    for name, values in scores.items():
        low, high = (-1.0, 1.0) if name in ("smile", "yaw") else (0.0, 1.0)
        assert values.shape == (8,) and values.min() >= low and values.max() <= high, name


def test_missing_and_corrupted_weights(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="synthfaces_predictor"):
        load_predictor(str(tmp_path / "absent.pt"))
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="synthfaces_predictor"):
        load_predictor(str(broken))


def test_identity_config_instantiates():
    identity = hydra.utils.instantiate(OmegaConf.load(CONF / "synthfaces.yaml"))
    assert isinstance(identity, SynthfacesIdentity) and identity.embedding_dim == 128


def test_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    net = PredictorNetwork()
    pixels, params, labels = synthfaces_predictor.make_training_batch(groups=4, views=2)(0, 0)
    images = synthfaces_predictor.to_network_images(pixels, torch.device("cpu"))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    totals = []
    for _ in range(4):
        losses = synthfaces_predictor.predictor_losses(net, images, params, labels, temperature=0.1)
        total = losses["identity"] + losses["attributes"] + 0.5 * losses["traits"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.8 * totals[0]


def test_training_script_writes_loadable_weights(tmp_path):
    report = synthfaces_predictor.train(tmp_path, minutes=60.0, device="cpu", workers=0, groups=4, views=2,
                                   eval_count=40, max_steps=2)
    assert report["steps"] == 2 and 0.0 <= report["metrics"]["indomain_verify_auc"] <= 1.0
    assert (tmp_path / "predictor.json").is_file()
    identity = SynthfacesIdentity(weights=str(tmp_path / "predictor.pt"))
    assert identity.embed(render_torch(sample_params(2, 3)))[0].shape == (2, 128)

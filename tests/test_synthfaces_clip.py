"""The tiny synthfaces CLIP: shipped weights, prompts that StyleCLIP edits use, tokenizer, training smoke test."""

import numpy as np
import pytest
import torch

from pti_lab.errors import BadInputError
from pti_lab.synthfaces import captions, shipped
from pti_lab.train import synthfaces_clip
from pti_lab.synthfaces.tiny_clip import TinyCLIP, Tokenizer, load_clip
from pti_lab.synthfaces.params import INDEX, sample_params
from pti_lab.synthfaces.predictor import PREDICTOR_FILE, load_predictor
from pti_lab.synthfaces.render import render_torch


@pytest.fixture(scope="module")
def clip() -> TinyCLIP:
    return load_clip()


@torch.no_grad()
def test_embeddings_are_unit_vectors(clip):
    images = render_torch(sample_params(3, 11))
    image_e, text_e = clip.encode_image(images), clip.encode_text(["a face", "a smiling face"])
    assert image_e.shape == (3, 128) and text_e.shape == (2, 128)
    assert torch.allclose(image_e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(text_e.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(clip.similarity(images, ["a face", "a smiling face"]), image_e @ text_e.T, atol=1e-5)


def smile_margins(clip: TinyCLIP) -> torch.Tensor:
    """sim("a smiling face") - sim("a face that is not smiling") for 16 faces with smile 0.8, then the
    same 16 faces with smile -0.3."""
    base = sample_params(16, 5150)
    smiling, neutral = base.copy(), base.copy()
    smiling[:, INDEX["smile"]], neutral[:, INDEX["smile"]] = 0.8, -0.3
    with torch.no_grad():
        cosines = clip.similarity(render_torch(np.concatenate([smiling, neutral])),
                                  ["a smiling face", "a face that is not smiling"])
    return cosines[:, 0] - cosines[:, 1]


def test_smile_prompts_move_with_the_smile(clip):
    margin = smile_margins(clip)
    assert (margin[:16] > margin[16:]).all()  # each face moves toward "smiling" when it smiles (an edit direction)
    assert (margin[16:] < 0).float().mean() >= 0.75  # measured 16/16 (margins -0.09 to -0.17)


def test_smile_prompt_ranks_smiling_faces_first(clip):
    # 0.58 held out when the image tower started from random weights; 1.0 from the predictor's encoder.
    assert (smile_margins(clip)[:16] > 0).float().mean() >= 0.75


@torch.no_grad()
def test_glasses_prompt_picks_the_faces_with_glasses(clip):
    plain = sample_params(16, 5151)
    glasses = sample_params(16, 5151, extras={"glasses": 1.0})  # the same faces, random frames and tints
    prompts = ["a face with glasses", "a face without glasses"]
    cosines = clip.similarity(render_torch(np.concatenate([glasses, plain])), prompts)
    margin = cosines[:, 0] - cosines[:, 1]
    assert (margin.topk(16).indices < 16).all()
    assert (margin[16:] < 0).all()
    # Dark lenses are "sunglasses" in the captions, so only clear ones are always "with glasses" first.
    clear = sample_params(16, 5151, extras={"glasses": 1.0, "glasses_tint": 0.2})
    cosines = clip.similarity(render_torch(clear), prompts)
    assert (cosines[:, 0] > cosines[:, 1]).all()


def test_tokenizer_rules(clip):
    tokenizer = clip.tokenizer
    assert torch.equal(tokenizer.encode(["A Smiling, face."]), tokenizer.encode(["a smiling face"]))
    with pytest.raises(BadInputError, match=r"unknown word 'happy'.*knows only: a an and"):
        clip.encode_text(["a happy face"])
    with pytest.raises(BadInputError, match="at most 64"):
        tokenizer.encode([" ".join(["face"] * 65)])
    with pytest.raises(BadInputError, match="non-empty list"):
        tokenizer.encode("a face")
    with pytest.raises(BadInputError, match="no words"):
        tokenizer.encode([" , "])


def test_every_caption_and_prompt_is_in_the_shipped_vocabulary(clip):
    params, _ = synthfaces_clip.identity_groups(300, 1, 77)
    texts = captions.captions_of(params, 0) + captions.captions_of(params, 0, full=True)
    texts += [prompt for pair in captions.PROMPT_PAIRS for prompt in pair[:2]]
    ids = clip.tokenizer.encode(texts)
    assert (ids > 0).sum(dim=1).min() >= 2
    assert clip.tokenizer.vocabulary == captions.vocabulary()


def test_contrast_pairs_differ_in_one_property():
    params, _ = synthfaces_clip.identity_groups(8, 1, 5)
    topics = synthfaces_clip.contrast_pairs(params, 4, np.random.default_rng(1))
    assert topics[8:] == [] and topics[0] == topics[1]
    for i in range(4):
        differs = np.nonzero(params[2 * i] != params[2 * i + 1])[0]
        assert INDEX[topics[2 * i]] in differs
        assert all(name_index == INDEX[topics[2 * i]] or topics[2 * i] in synthfaces_clip.EXTRA_FLAGS
                   for name_index in differs)


def test_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    words = captions.vocabulary()
    model = TinyCLIP(words)
    params_head = torch.nn.Linear(256, len(synthfaces_clip.PARAMS_COLUMNS))
    pixels, ids, params = synthfaces_clip.make_training_batch(8, 0.5, words, 64)(0, 0)
    images = synthfaces_clip.to_network_images(pixels, torch.device("cpu"))
    optimizer = torch.optim.Adam([*model.parameters(), *params_head.parameters()], lr=1e-3)
    totals = []
    for _ in range(4):
        losses = synthfaces_clip.clip_losses(model, params_head, images, ids, params)
        total = losses["contrastive"] + losses["params"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.8 * totals[0]


def test_image_tower_starts_from_the_predictor_encoder():
    model = TinyCLIP(captions.vocabulary())
    digest = synthfaces_clip.start_image_tower(model, "predictor")
    assert digest == shipped.read_manifest()["files"][PREDICTOR_FILE]["sha256"]
    encoder = load_predictor().encoder.state_dict()
    assert all(torch.equal(value, encoder[key]) for key, value in model.image_encoder.state_dict().items())


def test_image_tower_that_does_not_fit_the_predictor_is_refused():
    model = TinyCLIP(captions.vocabulary(), feature_dim=128)
    with pytest.raises(BadInputError, match=r"predictor\.pt: the predictor's encoder does not fit the image tower"):
        synthfaces_clip.start_image_tower(model, "predictor")


def test_training_script_writes_loadable_weights(tmp_path):
    report = synthfaces_clip.train(tmp_path, minutes=60.0, device="cpu", workers=0, batch=8, eval_sets=1,
                              eval_faces=4, max_steps=2)
    assert report["steps"] == 2 and 0.0 <= report["metrics"]["retrieval_top5"] <= 1.0
    assert report["image_init"] == "predictor" and len(report["image_init_sha256"]) == 64
    model = load_clip(str(tmp_path / "clip.pt"))
    assert model.encode_text(["a face with glasses"]).shape == (1, 128)
    assert isinstance(model.tokenizer, Tokenizer)

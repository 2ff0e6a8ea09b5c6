"""HuggingFaceCLIP on a tiny random transformers CLIPModel saved to disk with a real CLIP BPE tokenizer."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from pti_lab.errors import BadInputError, CheckpointError, WeightsNotFoundError  # noqa: E402
from pti_lab.models.hf_clip import HuggingFaceCLIP  # noqa: E402

IMAGE_SIZE = 32
MEAN = (0.5, 0.4, 0.3)   # not OpenAI's, so that the test sees they are read from preprocessor_config.json
STD = (0.2, 0.25, 0.3)
WORDS = ["a", "photo", "of", "smiling", "face", "with", "glasses", "hat"]
START, END = "<|startoftext|>", "<|endoftext|>"


def byte_characters() -> list:
    """The 256 printable characters GPT-2 / CLIP byte-level BPE uses for the bytes 0..255, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    characters, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            characters[byte] = chr(byte)
        else:
            characters[byte] = chr(256 + extra)
            extra += 1
    return [characters[byte] for byte in range(256)]


def write_tokenizer_files(folder) -> None:
    """vocab.json + merges.txt in CLIP's format: bytes, bytes + '</w>', one merge chain per word, specials."""
    characters = byte_characters()
    vocab = characters + [c + "</w>" for c in characters]
    merges = []
    for word in WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        merged = pieces[0]
        for piece in pieces[1:]:
            merge = f"{merged} {piece}"
            merged += piece
            if merge not in merges:
                merges.append(merge)
                vocab.append(merged)
    vocab += [START, END]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def output_tensor(output) -> torch.Tensor:
    """get_*_features: a tensor (transformers 4) or an output whose pooler_output is projected (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(directory, the in-memory CLIPModel that was saved there)."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    files = tmp_path_factory.mktemp("bpe")
    write_tokenizer_files(files)
    tokenizer = CLIPTokenizer.from_pretrained(str(files))
    end_id = tokenizer.convert_tokens_to_ids(END)
    start_id = tokenizer.convert_tokens_to_ids(START)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, bos_token_id=start_id,
                         eos_token_id=end_id, pad_token_id=end_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=IMAGE_SIZE, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    folder = tmp_path_factory.mktemp("tiny_clip")
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "CLIPImageProcessor", "image_mean": list(MEAN), "image_std": list(STD),
         "size": {"shortest_edge": IMAGE_SIZE}, "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}}))
    return folder, model


@pytest.fixture(scope="module")
def clip(saved):
    return HuggingFaceCLIP(str(saved[0]))


def normalise(images01: torch.Tensor) -> torch.Tensor:
    return (images01 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def reference_image(model, pixel_values: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.normalize(output_tensor(model.get_image_features(pixel_values=pixel_values)), dim=1)


def test_loads_safetensors_frozen_eval(saved, clip):
    folder, _ = saved
    assert (folder / "model.safetensors").is_file()
    assert clip.device == torch.device("cpu")
    assert not clip.training and not clip.clip.training
    assert not any(p.requires_grad for p in clip.parameters())
    clip.train()
    assert not clip.clip.training
    assert torch.allclose(clip.mean.flatten(), torch.tensor(MEAN))
    assert torch.allclose(clip.std.flatten(), torch.tensor(STD))


def test_shapes_and_unit_norm(clip):
    torch.manual_seed(1)
    images = torch.rand(3, 3, 48, 40) * 2 - 1
    image_e = clip.encode_image(images)
    text_e = clip.encode_text(["a smiling face", "a photo of a face with glasses"])
    assert image_e.shape == (3, 16) and text_e.shape == (2, 16)
    assert torch.allclose(image_e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(text_e.norm(dim=1), torch.ones(2), atol=1e-5)
    cosines = clip.similarity(images, ["a smiling face", "a photo of a face with glasses"])
    assert cosines.shape == (3, 2)
    assert torch.allclose(cosines, image_e @ text_e.T, atol=1e-6)


def test_encode_image_gradients_reach_the_images(clip):
    torch.manual_seed(2)
    images = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    (-clip.similarity(images, ["a smiling face"]).sum()).backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.parameters())


def test_encode_image_equals_get_image_features(saved, clip):
    _, model = saved
    torch.manual_seed(3)
    images = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    expected = reference_image(model, normalise((images + 1) / 2))
    assert torch.allclose(clip.encode_image(images), expected, atol=1e-5)


def test_larger_and_non_square_images_are_resized_then_cropped(saved, clip):
    _, model = saved
    torch.manual_seed(4)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    resized = F.interpolate((images + 1) / 2, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=False,
                            antialias=True)
    ours = clip.encode_image(images)
    assert torch.allclose(ours, reference_image(model, normalise(resized)), atol=1e-5)
    cropped = reference_image(model, normalise((images[:, :, 16:48, 16:48] + 1) / 2))
    assert not torch.allclose(ours, cropped, atol=1e-3)

    wide = torch.rand(1, 3, 48, 64) * 2 - 1   # shorter side 48 -> 32, longer 64 -> 42, centre crop 32 of 42
    resized = F.interpolate((wide + 1) / 2, size=(32, 42), mode="bicubic", align_corners=False, antialias=True)
    assert torch.allclose(clip.encode_image(wide), reference_image(model, normalise(resized[:, :, :, 5:37])),
                          atol=1e-5)


def test_encode_text_equals_get_text_features(saved, clip):
    from transformers import CLIPTokenizer

    folder, model = saved
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    texts = ["a smiling face", "a photo of a face with glasses and a hat"]
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    unknown = tokenizer.convert_tokens_to_ids(END)
    assert tokens["input_ids"][0].tolist()[:5] == tokenizer.convert_tokens_to_ids(
        [START, "a</w>", "smiling</w>", "face</w>", END])
    assert unknown in tokens["input_ids"][1].tolist()  # 'and' is not in the tiny vocabulary: unk = <|endoftext|>
    with torch.no_grad():
        expected = F.normalize(output_tensor(model.get_text_features(**tokens)), dim=1)
    assert torch.allclose(clip.encode_text(texts), expected, atol=1e-5)


def test_long_text_is_truncated(clip):
    embedding = clip.encode_text([" ".join(["a smiling face"] * 20)])
    assert embedding.shape == (1, 16) and torch.isfinite(embedding).all()


@pytest.mark.parametrize("texts", [[], "a smiling face", [""], ["  "], [3], ["a face", None], None])
def test_bad_texts_raise(clip, texts):
    with pytest.raises(BadInputError) as info:
        clip.encode_text(texts)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("images", [torch.zeros(2, 1, 32, 32), torch.zeros(3, 32, 32),
                                    torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "image"])
def test_bad_images_raise(clip, images):
    with pytest.raises(BadInputError):
        clip.encode_image(images)


def test_missing_hub_model_offline_raises_weights_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "pti-lab-tests/no-such-clip"
    with pytest.raises(WeightsNotFoundError) as info:
        HuggingFaceCLIP(name)
    message = str(info.value)
    assert name in message and str(tmp_path / "hf_home" / "hub") in message
    assert f"hf download {name}" in message and f"huggingface-cli download {name}" in message
    assert "save_pretrained" in message and "\n" not in message


def test_missing_directory_and_broken_directory(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        HuggingFaceCLIP(str(tmp_path / "nowhere" / "clip"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError) as info:
        HuggingFaceCLIP(str(tmp_path / "broken"))
    assert "\n" not in str(info.value)


def test_hydra_instantiate(saved):
    from hydra.utils import instantiate

    clip = instantiate({"_target_": "pti_lab.models.hf_clip.HuggingFaceCLIP", "model": str(saved[0]), "device": "cpu"})
    assert isinstance(clip, HuggingFaceCLIP) and clip.encode_text(["a face"]).shape == (1, 16)


def test_torchvision_not_imported(clip):
    clip.encode_image(torch.zeros(1, 3, 32, 32))
    clip.encode_text(["a face"])
    assert "torchvision" not in sys.modules

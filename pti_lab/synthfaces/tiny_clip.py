"""A tiny CLIP for synthfaces: image and text embeddings in one space, for StyleCLIP-style edits.

    model = load_clip()                                   # the shipped weights, checked against the manifest
    images_e = model.encode_image(images)                 # [N, 128], L2-normalised
    texts_e = model.encode_text(["a smiling face", "a face with glasses"])   # [M, 128]
    cosines = model.similarity(images, ["a smiling face"])                   # [N, M]

Image tower: the predictor's ConvEncoder (64 px; larger or smaller square images are resized as
for the predictor) and a linear projection. Text tower: word embeddings + learned positions, a
2-layer pre-norm transformer, a masked mean over the words, a linear projection. Trained with the
symmetric InfoNCE loss and a learned temperature on renders captioned from their parameters
(`python -m pti_lab.train.synthfaces_clip`; the caption grammar is there).

Tokenizer: lower case, split on white space and , . ; : ! ? — every remaining word must be in the
vocabulary shipped with the weights (the words of the caption grammar, `model.tokenizer.vocabulary`).
An unknown word is a BadInputError that lists the vocabulary, not a silent unknown token: a prompt
the model has never seen a word of would give an arbitrary edit direction.
"""

import math
import re
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pti_lab.errors import BadInputError
from pti_lab.synthfaces.predictor import ConvEncoder, load_state, network_input, read_weights

CLIP_FILE = "clip.pt"  # the shipped file's name in pti_lab/synthfaces/weights
SEPARATORS = re.compile(r"[\s,.;:!?]+")


class Tokenizer:
    """Words -> ids 1..len(vocabulary) (0 pads), at most `max_tokens` words a text."""

    def __init__(self, vocabulary: list, max_tokens: int):
        self.vocabulary = list(vocabulary)
        self.max_tokens = max_tokens
        self.ids = {word: i + 1 for i, word in enumerate(self.vocabulary)}

    def words(self, text: str) -> list:
        return [word for word in SEPARATORS.split(text.lower()) if word]

    def encode(self, texts: list) -> torch.Tensor:
        """list of M strings -> int64 [M, max_tokens], zero-padded."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts) or not texts:
            raise BadInputError(f"encode_text: expected a non-empty list of strings, got {texts!r}")
        ids = torch.zeros(len(texts), self.max_tokens, dtype=torch.int64)
        for row, text in enumerate(texts):
            words = self.words(text)
            if not words:
                raise BadInputError(f"encode_text: text {row} ({text!r}) has no words")
            if len(words) > self.max_tokens:
                raise BadInputError(f"encode_text: {text!r} has {len(words)} words; at most {self.max_tokens}")
            unknown = [word for word in words if word not in self.ids]
            if unknown:
                raise BadInputError(
                    f"encode_text: unknown word{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                    f"in {text!r}; the synthfaces CLIP knows only: {' '.join(self.vocabulary)}")
            ids[row, :len(words)] = torch.tensor([self.ids[word] for word in words])
        return ids


class TextEncoder(nn.Module):
    """int64 [M, T] token ids (0 = padding) -> [M, width] features."""

    def __init__(self, vocabulary_size: int, max_tokens: int, width: int, layers: int, heads: int):
        super().__init__()
        self.tokens = nn.Embedding(vocabulary_size + 1, width, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(max_tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        padding = ids == 0
        x = self.transformer(self.tokens(ids) + self.positions[:ids.shape[1]], src_key_padding_mask=padding)
        x = self.norm(x).masked_fill(padding[..., None], 0.0)
        return x.sum(dim=1) / (~padding).sum(dim=1, keepdim=True).clamp(min=1)   # mean over the words


class TinyCLIP(nn.Module):
    """The image and text towers, the shared embedding space and the learned temperature."""

    def __init__(
        self,
        vocabulary: list,                       # the tokenizer's words, in id order
        embed_dim: int = 128,                   # shared embedding length
        channels: tuple = (32, 64, 128, 256),   # image tower ConvEncoder widths
        feature_dim: int = 256,                 # image tower feature length
        width: int = 128,                       # text transformer width
        layers: int = 2,                        # text transformer layers
        heads: int = 4,                         # text transformer attention heads
        max_tokens: int = 64,                   # longest text in words
    ):
        super().__init__()
        self.config = dict(vocabulary=list(vocabulary), embed_dim=embed_dim, channels=list(channels),
                           feature_dim=feature_dim, width=width, layers=layers, heads=heads, max_tokens=max_tokens)
        self.tokenizer = Tokenizer(vocabulary, max_tokens)
        self.image_encoder = ConvEncoder(tuple(channels), feature_dim)
        self.image_projection = nn.Linear(feature_dim, embed_dim)
        self.text_encoder = TextEncoder(len(vocabulary), max_tokens, width, layers, heads)
        self.text_projection = nn.Linear(width, embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # logits = exp(log_scale) * cosine

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised embeddings of [N, 3, 64, 64] images already prepared by `network_input`."""
        return self.image_projection(self.image_encoder(images))

    def text_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        """Unnormalised embeddings of token ids from `tokenizer.encode`."""
        return self.text_projection(self.text_encoder(ids))

    @property
    def device(self) -> torch.device:
        return self.log_scale.device

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] in [-1, 1] -> [N, embed_dim], L2-normalised (differentiable in the images)."""
        return F.normalize(self.image_embeddings(network_input(images, "TinyCLIP", self.device)).float(), dim=1)

    def encode_text(self, texts: list) -> torch.Tensor:
        """list of M prompts -> [M, embed_dim], L2-normalised. Unknown words raise BadInputError."""
        return F.normalize(self.text_embeddings(self.tokenizer.encode(texts).to(self.device)).float(), dim=1)

    def similarity(self, images: torch.Tensor, texts: list) -> torch.Tensor:
        """Cosine similarity of every image with every text: [N, M]."""
        return self.encode_image(images) @ self.encode_text(texts).T


def load_clip(weights: Optional[str] = None) -> TinyCLIP:
    """The tiny CLIP from `weights` (None: the shipped clip.pt), frozen, in eval mode, on the CPU."""
    data = read_weights(weights, CLIP_FILE, "clip", "pti_lab.train.synthfaces_clip")
    return load_state(TinyCLIP(**data["config"]), data, weights or CLIP_FILE)

"""Identity networks: face embeddings for the `id_sim` metric (and, for ArcFace, an ID loss).

Every network takes images in [-1, 1], float [N, 3, H, W] RGB, and returns
`(embeddings [N, D], valid [N] bool, reasons list[str | None])`. An image whose embedding could not
be computed (no face found) is invalid, its row is zeros and its reason says why; the run goes on
and the metric is null for that image.

    DlibIdentity     dlib HOG detector + 68 landmarks + 128-d ResNet face descriptor (offline).
    ArcFaceIdentity  IR-SE50 ArcFace as in pSp / e4e / PTI (weights: model_ir_se50.pth).

`identity=none` builds no network: the metrics then report id_sim null, "identity network disabled".
"""

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from pti_lab.errors import BadInputError, WeightsNotFoundError
from pti_lab.extras import require
from pti_lab.imaging import check_images
from pti_lab.weights import cache_dir, resolve_weights, torch_hub_checkpoints_dir

NO_FACE = "no face detected"


class IdentityNetwork(torch.nn.Module):
    """Base class: subclasses implement `embed`; `compare` / `similarity` are cosine similarities."""

    embedding_dim: int = 0
    differentiable: bool = True  # embed() passes gradients to the images (usable as an ID loss)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[Optional[str]]]:
        """Embed [N, 3, H, W] images in [-1, 1]: (embeddings [N, D], valid [N] bool, reasons)."""
        raise NotImplementedError

    @torch.no_grad()
    def compare(
        self, images_a: torch.Tensor, images_b: torch.Tensor
    ) -> tuple[list[Optional[float]], list[Optional[str]]]:
        """Cosine similarity of each pair (images_a[i], images_b[i]); None with a reason where either
        embedding is invalid. Resolutions may differ, batch sizes must match."""
        if len(images_a) != len(images_b):
            raise BadInputError(
                f"{type(self).__name__}.compare: {len(images_a)} images vs {len(images_b)}; batch sizes must match"
            )
        embeddings_a, valid_a, reasons_a = self.embed(images_a)
        embeddings_b, valid_b, reasons_b = self.embed(images_b)
        cosines = F.cosine_similarity(embeddings_a.float(), embeddings_b.float(), dim=1).tolist()
        similarities, reasons = [], []
        pairs = zip(cosines, valid_a.tolist(), valid_b.tolist(), reasons_a, reasons_b)
        for cosine, ok_a, ok_b, reason_a, reason_b in pairs:
            if ok_a and ok_b:
                similarities.append(cosine)
                reasons.append(None)
            else:
                similarities.append(None)
                reasons.append(pair_reason(None if ok_a else reason_a, None if ok_b else reason_b))
        return similarities, reasons

    def similarity(self, images_a: torch.Tensor, images_b: torch.Tensor) -> list[Optional[float]]:
        """Cosine similarities only; use `compare` to also get the reasons for None."""
        return self.compare(images_a, images_b)[0]


def pair_reason(reason_a: Optional[str], reason_b: Optional[str]) -> str:
    """One line saying which image(s) of a pair failed and why."""
    if reason_a and reason_b and reason_a == reason_b:
        return f"both images: {reason_a}"
    if reason_a and reason_b:
        return f"first image: {reason_a}; second image: {reason_b}"
    return f"first image: {reason_a}" if reason_a else f"second image: {reason_b}"


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> [N, H, W, 3] uint8 RGB (values outside [-1, 1] are clipped)."""
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()  # [NHWC]


# ----------------------------------------------------------------------------


class DlibIdentity(IdentityNetwork):
    """dlib's 128-d face descriptor (a 29-layer ResNet metric network; dlib reports 99.38% on LFW).

    Pipeline per image: HOG frontal face detector (the most confident face) -> 68-point landmarks ->
    `face_recognition_model_v1.compute_face_descriptor(image, shape)` on a 150 px aligned chip.
    Images whose shorter side is below `min_detect_side` are upscaled (Lanczos) before detection,
    since HOG needs faces of about 80 px: with the defaults a face in an FFHQ-aligned crop is found
    at 64, 128 and 256 px (and down to 32 px on the astronaut test photo).

    Distances: dlib's own convention is the Euclidean distance of the raw descriptors, "same person"
    when below 0.6. `embed` L2-normalises them and `similarity` is their cosine (1 for identical
    faces). Raw descriptors are not unit length (norm about 1.4 on the test photo), so with norm r
    a Euclidean distance d corresponds to cosine ~ 1 - d^2 / (2 r^2): the 0.6 threshold is a cosine
    of roughly 0.9. `descriptors` gives the raw vectors for Euclidean comparisons.
    """

    differentiable = False  # dlib works on uint8 numpy arrays
    embedding_dim = 128

    def __init__(
        self,
        predictor_path: Optional[str] = None,  # shape_predictor_68_face_landmarks.dat; None = packaged copy
        recognition_path: Optional[str] = None,  # dlib_face_recognition_resnet_model_v1.dat; None = packaged copy
        upsample: int = 1,  # HOG pyramid doublings (the FFHQ / PTI scripts use 1)
        min_detect_side: int = 256,  # upscale images with a smaller shorter side to this
        max_detect_side: int = 1024,  # search larger images downscaled to this longer side
    ):
        super().__init__()
        dlib = require("dlib", "identity=dlib")  # the faces extra; only this class needs it
        from pti_lab.models.dlib_faces import FaceLandmarker, dlib_model_file

        self.landmarker = FaceLandmarker(predictor_path, upsample, min_detect_side, max_detect_side)
        recognition_file = dlib_model_file("dlib_face_recognition_resnet_model_v1.dat", recognition_path)
        self.recognizer = dlib.face_recognition_model_v1(str(recognition_file))

    def descriptors(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[Optional[str]]]:
        """Raw dlib descriptors [N, 128] (compare with Euclidean distance < 0.6), valid [N], reasons."""
        check_images(images, "images", "DlibIdentity")
        rows, valid, reasons = [], [], []
        for rgb in to_uint8_hwc(images):
            face = self.landmarker.detect(rgb)
            if face is None:
                rows.append(np.zeros(self.embedding_dim))
                valid.append(False)
                reasons.append(NO_FACE)
                continue
            rows.append(np.array(self.recognizer.compute_face_descriptor(face.image, face.shape)))
            valid.append(True)
            reasons.append(None)
        descriptors = torch.tensor(np.stack(rows), dtype=torch.float32, device=images.device)  # [N, 128]
        return descriptors, torch.tensor(valid, device=images.device), reasons

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[Optional[str]]]:
        descriptors, valid, reasons = self.descriptors(images)
        return F.normalize(descriptors, dim=1), valid, reasons  # zero rows stay zero


class ArcFaceIdentity(IdentityNetwork):
    """ArcFace IR-SE50 with pSp's IDLoss preprocessing (differentiable: usable as an ID loss).

    Images are expected FFHQ-aligned and square. Exactly as pSp / e4e: resize to 256 px (adaptive
    average pooling, as e4e does for larger inputs; smaller inputs are upsampled bilinearly), crop
    rows 35:223 and columns 32:220, adaptive-average-pool to 112 px, run IR-SE50 -> unit 512-d.
    Every image is valid (there is no face detector).
    """

    embedding_dim = 512

    def __init__(
        self,
        weights: Optional[str] = None,  # model_ir_se50.pth; None = look in pti-lab's and torch.hub's caches
    ):
        super().__init__()
        from pti_lab.models.arcface import load_ir_se50

        try:
            path = resolve_weights(
                "ArcFace IR-SE50", "model_ir_se50.pth", path=weights,
                search_dirs=[cache_dir(), torch_hub_checkpoints_dir()],
            )
        except WeightsNotFoundError as exc:
            raise WeightsNotFoundError(
                f"{exc} (download model_ir_se50.pth from the pSp / pixel2style2pixel pretrained models, "
                f"or use identity=dlib)"
            ) from None
        self.net = load_ir_se50(path)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] in [-1, 1] -> the [N, 3, 112, 112] face crop IR-SE50 sees (pSp convention)."""
        if images.shape[-1] > 256:
            images = F.adaptive_avg_pool2d(images, (256, 256))
        elif images.shape[-1] < 256:
            images = F.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False)
        crop = images[:, :, 35:223, 32:220]  # [N, 3, 188, 188]: the inner face of an FFHQ crop
        return F.adaptive_avg_pool2d(crop, (112, 112))

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[Optional[str]]]:
        check_images(images, "images", "ArcFaceIdentity")
        if images.shape[2] != images.shape[3]:
            raise BadInputError(
                f"ArcFaceIdentity: images are {list(images.shape)}; expected square FFHQ-aligned images"
            )
        param = next(self.net.parameters())
        embeddings = self.net(self.preprocess(images.to(param.device, param.dtype)))  # [N, 512]
        valid = torch.ones(len(images), dtype=torch.bool, device=embeddings.device)
        return embeddings, valid, [None] * len(images)

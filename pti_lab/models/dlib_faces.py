"""dlib face detection and 68-point landmarks, the models of FFHQ alignment and of identity=dlib.

The model files come with the PyPI package face-recognition-models (found without importing it);
dlib itself is imported only when a FaceLandmarker is built, so the rest of pti-lab runs without it.
"""

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import PIL.Image

from pti_lab.errors import WeightsNotFoundError
from pti_lab.extras import require
from pti_lab.weights import cache_dir, resolve_weights

LANDMARKS_68_FILE = "shape_predictor_68_face_landmarks.dat"



def dlib_model_file(filename: str, path: Optional[str] = None) -> Path:
    """Find a dlib model file: explicit path, then the face-recognition-models package, then the cache.

    filename: e.g. "shape_predictor_68_face_landmarks.dat".
    path:     explicit file from config; must exist when given.
    """
    spec = importlib.util.find_spec("face_recognition_models")  # finds it without importing it
    package_dirs = [Path(folder) / "models" for folder in spec.submodule_search_locations] if spec else []
    try:
        return resolve_weights("dlib model", filename, path=path, search_dirs=[*package_dirs, cache_dir()])
    except WeightsNotFoundError as exc:
        raise WeightsNotFoundError(f'{exc} (`pip install "pti-lab[faces]"` ships it)') from None


@dataclass
class DetectedFace:
    """One face found by `FaceLandmarker.detect`."""

    image: np.ndarray  # [H, W, 3] uint8 RGB the detector ran on (the input, possibly upscaled)
    scale: float  # image pixels per input pixel (1.0 when not upscaled)
    shape: object  # dlib.full_object_detection: 68 landmarks in `image` pixels
    score: float  # HOG detection score (higher = more confident)
    box: tuple  # detection box (left, top, right, bottom) in input-image pixels

    @property
    def landmarks(self) -> np.ndarray:
        """[68, 2] float64 (x, y) landmarks in input-image pixels."""
        points = np.array([[p.x, p.y] for p in self.shape.parts()], dtype=np.float64)
        return points / self.scale


class FaceLandmarker:
    """dlib frontal (HOG) face detector + 68-point shape predictor on RGB uint8 images.

    HOG finds faces of about 80 px and larger (40 px with upsample=1). Images whose shorter side is
    below `min_detect_side` are upscaled (Lanczos) first; the landmarks are then placed on the
    upscaled image. With the defaults a face in an FFHQ-aligned crop is found at 64, 128 and 256 px
    (down to 32 px on the astronaut test photo). Images whose longer side exceeds
    `max_detect_side` are searched at that size (HOG on a 4000 px photo takes about 10 s) and the
    landmarks are predicted at full resolution inside the rescaled box.
    """

    def __init__(
        self,
        predictor_path: Optional[str] = None,  # 68-point .dat file; None = face-recognition-models' copy
        upsample: int = 1,  # dlib pyramid doublings before HOG (the reference scripts use 1)
        min_detect_side: int = 256,  # upscale images with a smaller shorter side to this
        max_detect_side: int = 1024,  # search larger images downscaled to this longer side
    ):
        self.dlib = require("dlib", "dlib face detection (pti_lab.align, identity=dlib)")  # imported here: the rest of pti-lab runs without it
        self.detector = self.dlib.get_frontal_face_detector()
        self.predictor = self.dlib.shape_predictor(str(dlib_model_file(LANDMARKS_68_FILE, predictor_path)))
        self.upsample = upsample
        self.min_detect_side = min_detect_side
        self.max_detect_side = max_detect_side

    def detect(self, rgb: np.ndarray) -> Optional[DetectedFace]:
        """Return the highest-scoring face in an [H, W, 3] uint8 RGB array, or None."""
        faces = self.detect_all(rgb)
        return faces[0] if faces else None

    def detect_all(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Every face in an [H, W, 3] uint8 RGB array (detections scoring above 0, dlib's
        threshold) with its landmarks, the highest-scoring first."""
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8, rgb.shape  # [HWC]
        scale = max(1.0, self.min_detect_side / min(rgb.shape[:2]))
        if scale > 1.0:
            rgb = resize_rgb(rgb, scale)
        rgb = np.ascontiguousarray(rgb)
        search_scale = min(1.0, self.max_detect_side / max(rgb.shape[:2]))
        search_rgb = resize_rgb(rgb, search_scale) if search_scale < 1.0 else rgb
        rects, scores, _ = self.detector.run(search_rgb, self.upsample, 0.0)
        faces = []
        for index in np.argsort(scores)[::-1]:
            rect = rects[int(index)]
            bounds = tuple(round(v / search_scale) for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
            shape = self.predictor(rgb, self.dlib.rectangle(*bounds))
            faces.append(DetectedFace(rgb, scale, shape, float(scores[index]), tuple(v / scale for v in bounds)))
        return faces


def resize_rgb(rgb: np.ndarray, scale: float) -> np.ndarray:
    """Lanczos-resize an [H, W, 3] uint8 array by `scale`."""
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    return np.asarray(PIL.Image.fromarray(rgb).resize(size, PIL.Image.Resampling.LANCZOS))


@functools.lru_cache(maxsize=1)
def default_landmarker() -> FaceLandmarker:
    """A shared FaceLandmarker with default settings (loading the predictor takes about a second)."""
    return FaceLandmarker()

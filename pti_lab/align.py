"""FFHQ face alignment: dlib 68-point landmarks -> oriented square crop, as in the FFHQ dataset tool.

PTI, e4e and pSp expect faces aligned exactly like FFHQ: the crop square is placed from the eye
centres and the mouth corners, the image is shrunk, cropped, padded (reflect + blur blend) and
resampled by a quad transform. This module reproduces that recipe (`align_face` in PTI's
utils/alignment.py, `recreate_aligned_images` in ffhq-dataset) with PIL, numpy and scipy.

    python -m pti_lab.align IN_DIR OUT_DIR --size 1024 [--all-faces] [--min-score 0.3] [--max-upscale 4]

aligns every image in IN_DIR, writes OUT_DIR/<stem>.png (atomically) and OUT_DIR/align_report.json,
and prints one line per photo (per face with --all-faces) saying what happened, then a summary.
The exit status is 0 when at least one face was aligned, 1 when none was, 2 for a missing folder
or a missing dlib. What happens to each kind of photo:
  - one face: aligned; the line gives the face's size, detection score and crop size in the photo;
  - several faces: the largest one is aligned and the line says how many there were;
    --all-faces writes each as <stem>_face<k>.png, k counting from the left;
  - no face, or only detections scoring below --min-score: skipped, reason "no face detected".
    dlib's HOG detector finds roughly frontal faces from about 30-40 px; photos larger than 1024 px
    are searched on a 1024 px copy, so there a face needs about 3 % of the longer side;
  - a face whose crop square would be enlarged more than --max-upscale times to reach --size:
    skipped, reason "face too small" (the aligned image would be a blur);
  - unreadable files: skipped, reason "cannot read image";
  - grey, palette, CMYK, 16-bit and transparent images, and EXIF-rotated photos, are read as RGB
    (pti_lab.imaging.to_rgb, as run.py reads them) and written as RGB PNGs.

Differences from the reference scripts, all deliberate:
  - detections scoring below MIN_SCORE are not faces, and of several faces the largest is used
    (the reference takes the last detection, which on real photos is sometimes a false positive);
  - images whose shorter side is below `min_detect_side` are upscaled before detection (the HOG
    detector needs faces of about 80 px), landmarks are mapped back to the original pixels;
  - EXIF orientation is applied and every image is converted to RGB before anything else.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import PIL.Image
import scipy.ndimage

from pti_lab.atomic import atomic_path, write_text
from pti_lab.errors import BadInputError, PTILabError
from pti_lab.imaging import to_rgb
from pti_lab.models.dlib_faces import FaceLandmarker, default_landmarker

REPORT_NAME = "align_report.json"
# dlib HOG detections scoring below this are taken for false positives: the mission patch on the
# astronaut photo's suit scores 0.12 (0.03 in grey), while 89 of the 92 faces found among the first
# 100 faces of skimage's LFW subset (25 px crops, upscaled and padded) score 0.3 or more.
MIN_SCORE = 0.3
# A face whose crop square must be enlarged more than this to the output size is skipped: the
# aligned image would be a blur that the inversion reproduces faithfully.
MAX_UPSCALE = 4.0

# ----------------------------------------------------------------------------
# The FFHQ recipe.


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """Oriented crop square from 68-point landmarks: [4, 2] corners (top-left, bottom-left,
    bottom-right, top-right) in image pixels, as in the FFHQ dataset tool."""
    assert landmarks.shape == (68, 2), landmarks.shape
    eye_left = landmarks[36:42].mean(axis=0)
    eye_right = landmarks[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_left, mouth_right = landmarks[48], landmarks[54]  # outer mouth corners
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # horizontal axis, tilted with the face
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)  # half side length
    y = np.flipud(x) * [-1, 1]
    center = eye_avg + eye_to_mouth * 0.1
    return np.stack([center - x - y, center - x + y, center + x + y, center + x - y])


def quad_bounds(quad: np.ndarray) -> tuple:
    """Integer box (left, top, right, bottom) enclosing a [4, 2] quad."""
    return (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))


def crop_quad(
    img: PIL.Image.Image,  # RGB source image
    quad: np.ndarray,  # [4, 2] crop corners from `ffhq_quad`
    size: int = 1024,  # output side in pixels
    transform_size: int = 4096,  # side of the quad transform before the final resize (FFHQ: 4096)
    enable_padding: bool = True,  # reflect-pad + blur where the square leaves the image
) -> PIL.Image.Image:
    """Shrink, crop, pad and resample `img` so that `quad` becomes a `size` x `size` square."""
    quad = quad.astype(np.float64)
    quad_side = np.hypot(*(quad[3] - quad[0]))
    transform_size = max(transform_size, size)

    # Shrink: downscale big sources by an integer factor so the bilinear transform does not alias.
    shrink = int(np.floor(quad_side / size * 0.5))
    if shrink > 1:
        shrunk_size = tuple(int(np.rint(float(side) / shrink)) for side in img.size)
        img = img.resize(shrunk_size, PIL.Image.Resampling.LANCZOS)
        quad /= shrink
        quad_side /= shrink

    # Crop to the quad's bounding box plus a border (clamped to the image).
    border = max(int(np.rint(quad_side * 0.1)), 3)
    left, top, right, bottom = quad_bounds(quad)
    crop = (max(left - border, 0), max(top - border, 0),
            min(right + border, img.size[0]), min(bottom + border, img.size[1]))
    if crop != (0, 0, *img.size):
        img = img.crop(crop)
        quad -= crop[0:2]

    # Pad where the quad (plus border) leaves the image: reflect the image outwards, then blend the
    # padding towards a blurred copy and towards the median colour, the more the farther out.
    left, top, right, bottom = quad_bounds(quad)
    pad = np.array([max(border - left, 0), max(border - top, 0),
                    max(right - img.size[0] + border, 0), max(bottom - img.size[1] + border, 0)])
    if enable_padding and pad.max() > border - 4:
        pad_left, pad_top, pad_right, pad_bottom = np.maximum(pad, int(np.rint(quad_side * 0.3)))
        pixels = np.pad(np.float32(img), ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), "reflect")
        height, width, _ = pixels.shape  # [HWC]
        ys, xs = np.ogrid[:height, :width]
        outside_x = 1.0 - np.minimum(xs / pad_left, (width - 1 - xs) / pad_right)  # 1 at the edge, 0 a pad inside
        outside_y = 1.0 - np.minimum(ys / pad_top, (height - 1 - ys) / pad_bottom)
        outside = np.maximum(outside_x, outside_y)[:, :, None]
        blur_sigma = quad_side * 0.02
        blurred = scipy.ndimage.gaussian_filter(pixels, [blur_sigma, blur_sigma, 0])
        pixels += (blurred - pixels) * np.clip(outside * 3.0 + 1.0, 0.0, 1.0)
        pixels += (np.median(pixels, axis=(0, 1)) - pixels) * np.clip(outside, 0.0, 1.0)
        img = PIL.Image.fromarray(np.uint8(np.clip(np.rint(pixels), 0, 255)), "RGB")
        quad += (pad_left, pad_top)

    # Map the quad onto an axis-aligned square (corner order TL, BL, BR, TR), then resize.
    img = img.transform((transform_size, transform_size), PIL.Image.Transform.QUAD,
                        (quad + 0.5).flatten(), PIL.Image.Resampling.BILINEAR)
    if size < transform_size:
        img = img.resize((size, size), PIL.Image.Resampling.LANCZOS)
    return img


def crop_side(quad: np.ndarray) -> float:
    """Side length in source pixels of a [4, 2] crop square from `ffhq_quad`."""
    return float(np.hypot(*(quad[3] - quad[0])))


def find_faces(
    img: PIL.Image.Image,  # RGB image
    predictor: FaceLandmarker,
    min_score: float = MIN_SCORE,  # detections scoring lower are not faces
) -> tuple[list, list]:
    """(faces, rejected): the detections scoring at least `min_score`, largest first, and those below."""
    detections = predictor.detect_all(np.asarray(img))
    faces = [face for face in detections if face.score >= min_score]
    return (sorted(faces, key=lambda face: face.box[0] - face.box[2]),
            [face for face in detections if face.score < min_score])


def align_image(
    img: PIL.Image.Image,  # any PIL image; converted to RGB
    size: int = 1024,  # output side in pixels
    predictor: Optional[FaceLandmarker] = None,  # None = default_landmarker()
    transform_size: int = 4096,  # quad transform resolution before the final resize
    enable_padding: bool = True,  # reflect-pad + blur outside the source image
    min_score: float = MIN_SCORE,  # detections scoring lower are not faces
) -> Optional[PIL.Image.Image]:
    """FFHQ-align the largest face in `img`; None when no face is detected."""
    if size < 1:
        raise BadInputError(f"align_image: size must be positive, got {size}")
    img = to_rgb(img)
    faces, _ = find_faces(img, predictor or default_landmarker(), min_score)
    if not faces:
        return None
    return crop_quad(img, ffhq_quad(faces[0].landmarks), size, transform_size, enable_padding)


# ----------------------------------------------------------------------------
# Command line: align a folder.


def no_face_reason(rejected: list, min_score: float) -> str:
    if not rejected:
        return "no face detected"
    scores = ", ".join(f"{face.score:.2f}" for face in rejected)
    return f"no face detected (detection scores {scores} are below --min-score {min_score:g})"


def describe_entry(entry: dict, size: int) -> str:
    """One line saying what happened to one photo (or one of its faces) aligned to `size` px."""
    face = f" face {entry['face']}" if "face" in entry else ""
    if "output" not in entry:
        return f"skipped {entry['image']}{face}: {entry['reason']}"
    line = (f"aligned {entry['image']}{face} -> {entry['output']}: face {entry['face_px']} px "
            f"(score {entry['score']:.2f}), crop {entry['crop_px']:.0f} px -> {size} px")
    if entry["upscale"] > 1.0:
        line += f" ({entry['upscale']:.1f}x upscaled)"
    if entry["faces"] > 1 and "face" not in entry:
        line += f"; the largest of {entry['faces']} faces (--all-faces writes each)"
    return line


def align_folder(
    in_dir: Path,  # folder of images (not recursive; hidden files ignored)
    out_dir: Path,  # created if missing; receives <stem>.png and align_report.json
    size: int = 1024,  # output side in pixels
    transform_size: int = 4096,  # quad transform resolution before the final resize
    enable_padding: bool = True,  # reflect-pad + blur outside the source image
    predictor: Optional[FaceLandmarker] = None,  # None = default_landmarker()
    all_faces: bool = False,  # write every face as <stem>_face<k>.png (k from left to right)
    min_score: float = MIN_SCORE,  # detections scoring lower are not faces
    max_upscale: float = MAX_UPSCALE,  # skip faces whose crop would be enlarged more than this
    on_entry: Callable[[dict], None] = lambda entry: None,  # called with each report entry as it is made
) -> dict:
    """Align every file in `in_dir`; return (and write) the report {size, ..., aligned, skipped}."""
    if not in_dir.is_dir():
        raise BadInputError(f"align: input folder {in_dir} does not exist")
    if out_dir.resolve() == in_dir.resolve():
        raise BadInputError(f"align: output folder {out_dir} must differ from the input folder")
    if size < 1:
        raise BadInputError(f"align: size must be positive, got {size}")
    if not max_upscale > 0:
        raise BadInputError(f"align: max_upscale must be positive, got {max_upscale}")
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor = predictor or default_landmarker()
    aligned, skipped, outputs = [], [], {}

    def add(entry: dict) -> None:
        (aligned if "output" in entry else skipped).append(entry)
        on_entry(entry)

    for path in sorted(p for p in in_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            with PIL.Image.open(path) as opened:
                opened.load()
                img = to_rgb(opened)
        except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
            add({"image": path.name, "reason": f"cannot read image: {exc}"})
            continue
        faces, rejected = find_faces(img, predictor, min_score)
        if not faces:
            add({"image": path.name, "reason": no_face_reason(rejected, min_score)})
            continue
        chosen = sorted(faces, key=lambda face: face.box[0] + face.box[2]) if all_faces else faces[:1]
        for number, face in enumerate(chosen, start=1):
            quad = ffhq_quad(face.landmarks)
            side = crop_side(quad)
            entry = {"image": path.name, **({"face": number} if all_faces else {}), "faces": len(faces),
                     "score": round(face.score, 3), "box": [round(v, 1) for v in face.box],
                     "face_px": round(face.box[2] - face.box[0]), "crop_px": round(side, 1),
                     "upscale": round(size / side, 2)}
            out_name = f"{path.stem}_face{number}.png" if all_faces else f"{path.stem}.png"
            if size / side > max_upscale:
                entry["reason"] = (f"face too small: its {side:.0f} px crop would be upscaled {size / side:.1f}x "
                                   f"to {size} px (--max-upscale {max_upscale:g})")
            elif out_name in outputs:
                entry["reason"] = f"output {out_name} already written for {outputs[out_name]}"
            else:
                with atomic_path(out_dir / out_name) as tmp:
                    crop_quad(img, quad, size, transform_size, enable_padding).save(tmp, format="PNG")
                outputs[out_name] = path.name
                entry["output"] = out_name
            add(entry)
    report = {"size": size, "all_faces": all_faces, "min_score": min_score, "max_upscale": max_upscale,
              "aligned": aligned, "skipped": skipped}
    write_text(out_dir / REPORT_NAME, json.dumps(report, indent=2))
    return report


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.align", description=__doc__.split("\n")[0])
    parser.add_argument("in_dir", type=Path, help="folder of input images")
    parser.add_argument("out_dir", type=Path, help="folder for aligned PNGs and align_report.json")
    parser.add_argument("--size", type=int, default=1024, help="output side in pixels")
    parser.add_argument("--all-faces", action="store_true",
                        help="write every face of a photo as <stem>_face<k>.png, k from left to right "
                             "(default: only the largest face, as <stem>.png)")
    parser.add_argument("--min-score", type=float, default=MIN_SCORE,
                        help=f"dlib HOG detections scoring lower are not faces (default {MIN_SCORE})")
    parser.add_argument("--max-upscale", type=float, default=MAX_UPSCALE,
                        help=f"skip faces whose crop would be enlarged more than this "
                             f"(default {MAX_UPSCALE:g}; inf: never)")
    parser.add_argument("--transform-size", type=int, default=4096, help="quad transform resolution (FFHQ: 4096)")
    parser.add_argument("--no-padding", action="store_true", help="disable reflect padding outside the image")
    args = parser.parse_args(argv)
    try:
        report = align_folder(args.in_dir, args.out_dir, args.size, args.transform_size, not args.no_padding,
                              all_faces=args.all_faces, min_score=args.min_score, max_upscale=args.max_upscale,
                              on_entry=lambda entry: print(describe_entry(entry, args.size), flush=True))
    except PTILabError as exc:  # a bad folder, missing model files or a missing dlib
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(report['aligned'])} aligned, {len(report['skipped'])} skipped -> {args.out_dir} "
          f"(report: {args.out_dir / REPORT_NAME})")
    if not report["aligned"]:  # a script chaining align -> run.py must not go on with an empty folder
        print(f"error: {args.in_dir}: no image was aligned", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

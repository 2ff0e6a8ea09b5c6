"""FFHQ alignment on a real photo, and the folder command with faceless and corrupt files."""

import json

import numpy as np
import PIL.Image
import pytest

from pti_lab.align import align_folder, align_image, ffhq_quad, main
from pti_lab.models.dlib_faces import default_landmarker

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut() -> PIL.Image.Image:
    return PIL.Image.fromarray(skimage_data.astronaut())  # 512 x 512 RGB photo with one face


def eye_centres(img: PIL.Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) eye centres in units of the image side, from a fresh detection."""
    face = default_landmarker().detect(np.asarray(img))
    assert face is not None, "no face detected in the aligned image"
    landmarks = face.landmarks / img.size[0]
    return landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)


def test_ffhq_quad_geometry():
    # Synthetic upright face: eyes 40 px apart at y=100, mouth 50 px below their midpoint.
    landmarks = np.zeros((68, 2))
    landmarks[36:42] = [80, 100]
    landmarks[42:48] = [120, 100]
    landmarks[48], landmarks[54] = [85, 150], [115, 150]
    quad = ffhq_quad(landmarks)
    # Half side = max(2 * 40, 1.8 * 50) = 90; centre = eye midpoint + 0.1 * eye_to_mouth = (100, 105).
    np.testing.assert_allclose(quad, [[10, 15], [10, 195], [190, 195], [190, 15]])


def test_align_image_puts_eyes_at_ffhq_positions(astronaut):
    aligned = align_image(astronaut, size=256)
    assert aligned.size == (256, 256) and aligned.mode == "RGB"
    left, right = eye_centres(aligned)
    # FFHQ geometry: the eyes lie on a horizontal line slightly above the centre (y in [0.47, 0.5)),
    # symmetric about the vertical centre line, at most a quarter of the side apart.
    assert abs(left[1] - right[1]) < 0.02
    assert 0.44 < (left[1] + right[1]) / 2 < 0.50
    assert abs((left[0] + right[0]) / 2 - 0.5) < 0.02
    assert 0.2 < right[0] - left[0] < 0.27


def test_align_image_modes_and_no_face(astronaut):
    for mode in ("L", "P", "RGBA"):
        aligned = align_image(astronaut.convert(mode), size=64, transform_size=64)
        assert aligned is not None and aligned.mode == "RGB" and aligned.size == (64, 64)
    assert align_image(PIL.Image.new("RGB", (200, 200), (128, 128, 128)), size=64) is None


def test_align_folder(tmp_path, astronaut, capsys):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    astronaut.save(in_dir / "astronaut.jpg", quality=95)
    PIL.Image.new("L", (256, 256), 90).save(in_dir / "blank.png")
    (in_dir / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)

    assert main([str(in_dir), str(out_dir), "--size", "256"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().startswith("1 aligned, 2 skipped")
    assert "blank.png: no face detected" in captured.err

    assert sorted(p.name for p in out_dir.iterdir()) == ["align_report.json", "astronaut.png"]  # no temp files
    report = json.loads((out_dir / "align_report.json").read_text())
    assert report["aligned"] == [{"image": "astronaut.jpg", "output": "astronaut.png"}]
    reasons = {entry["image"]: entry["reason"] for entry in report["skipped"]}
    assert reasons["blank.png"] == "no face detected"
    assert reasons["corrupt.png"].startswith("cannot read image")
    with PIL.Image.open(out_dir / "astronaut.png") as written:
        assert written.format == "PNG" and written.size == (256, 256)
        assert default_landmarker().detect(np.asarray(written.convert("RGB"))) is not None


def test_align_folder_leaves_nothing_half_written(tmp_path, astronaut, monkeypatch):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    astronaut.save(in_dir / "astronaut.png")

    def failing_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(PIL.Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        align_folder(in_dir, out_dir, size=64, transform_size=64)
    assert list(out_dir.iterdir()) == []


def test_align_folder_with_nothing_aligned_fails(tmp_path, capsys):
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    PIL.Image.new("L", (256, 256), 90).save(in_dir / "blank.png")
    assert main([str(in_dir), str(tmp_path / "out"), "--size", "64"]) == 1
    assert f"error: {in_dir}: no image was aligned" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "out2")]) == 1


def test_align_folder_refuses_same_folder(tmp_path):
    assert main([str(tmp_path), str(tmp_path)]) == 2
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2

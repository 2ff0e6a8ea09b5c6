"""FFHQ alignment on real photographs, and the folder command on the photos users bring: one face,
several faces, no face, tiny faces, grey and CMYK files, corrupt files.

The photos come from installed packages, never from this repository: scikit-image's bundled
`astronaut` (Eileen Collins, NASA, public domain), `chelsea` (a cat) and `coffee` (a cup), and
matplotlib's sample `grace_hopper.jpg` (US Navy, public domain). The other cases are built from
them at test time.
"""

import json
import re

import numpy as np
import PIL.Image
import pytest

from pti_lab.align import MIN_SCORE, align_folder, align_image, ffhq_quad, find_faces, main
from pti_lab.data import ImageFolder
from pti_lab.models.dlib_faces import default_landmarker

skimage_data = pytest.importorskip("skimage.data")
matplotlib_cbook = pytest.importorskip("matplotlib.cbook")

SIZE = 256  # output side of the folder runs


@pytest.fixture(scope="module")
def astronaut() -> PIL.Image.Image:
    return PIL.Image.fromarray(skimage_data.astronaut())  # 512 x 512 RGB photo with one face


@pytest.fixture(scope="module")
def hopper() -> PIL.Image.Image:
    with PIL.Image.open(matplotlib_cbook.get_sample_data("grace_hopper.jpg")) as opened:
        return opened.convert("RGB")  # 512 x 600 portrait, a larger face than the astronaut's


def pasted(canvas_size: tuple, *photos: tuple) -> PIL.Image.Image:
    """A grey canvas with each (photo, (left, top)) pasted on it."""
    canvas = PIL.Image.new("RGB", canvas_size, (120, 130, 140))
    for photo, corner in photos:
        canvas.paste(photo, corner)
    return canvas


def with_face_of(astronaut: PIL.Image.Image, face_px: int) -> PIL.Image.Image:
    """The astronaut photo shrunk so that her face (a 90 px detection box) is `face_px` wide, on a 640 x 480 canvas."""
    side = round(astronaut.size[0] * face_px / 90)
    return pasted((640, 480), (astronaut.resize((side, side), PIL.Image.Resampling.LANCZOS), (100, 100)))


def eye_centres(img: PIL.Image.Image) -> np.ndarray:
    """[2, 2]: (left, right) eye centres in pixels, from a fresh detection."""
    faces, _ = find_faces(img, default_landmarker())
    assert faces, "no face detected in the aligned image"
    landmarks = faces[0].landmarks
    return np.stack([landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)])


def pixels(path) -> np.ndarray:
    with PIL.Image.open(path) as img:
        assert img.mode == "RGB" and img.size == (SIZE, SIZE), (path, img.mode, img.size)
        return np.asarray(img, dtype=np.float32)


def mean_abs_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def test_ffhq_quad_geometry():
    # Synthetic upright face: eyes 40 px apart at y=100, mouth 50 px below their midpoint.
    landmarks = np.zeros((68, 2))
    landmarks[36:42] = [80, 100]
    landmarks[42:48] = [120, 100]
    landmarks[48], landmarks[54] = [85, 150], [115, 150]
    quad = ffhq_quad(landmarks)
    # Half side = max(2 * 40, 1.8 * 50) = 90; centre = eye midpoint + 0.1 * eye_to_mouth = (100, 105).
    np.testing.assert_allclose(quad, [[10, 15], [10, 195], [190, 195], [190, 15]])


def test_align_image_puts_eyes_where_the_ffhq_crop_maps_them(astronaut):
    aligned = align_image(astronaut, size=SIZE)
    assert aligned.size == (SIZE, SIZE) and aligned.mode == "RGB"
    # Where the FFHQ square sends the photo's eye centres: output = the photo's point in the
    # square's own axes (top-left corner, right and down edges), scaled to SIZE.
    landmarks = find_faces(astronaut, default_landmarker())[0][0].landmarks
    quad = ffhq_quad(landmarks)
    right_edge, down_edge = quad[3] - quad[0], quad[1] - quad[0]
    source_eyes = np.stack([landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)])
    expected = np.stack([(source_eyes - quad[0]) @ right_edge / (right_edge @ right_edge),
                         (source_eyes - quad[0]) @ down_edge / (down_edge @ down_edge)], axis=1) * SIZE
    measured = eye_centres(aligned)
    assert np.abs(measured - expected).max() < 3.0, (measured, expected)  # px at 256
    # The FFHQ geometry itself: eyes level, symmetric about the centre line, just above the centre.
    (left_x, left_y), (right_x, right_y) = measured / SIZE
    assert abs(left_y - right_y) < 0.02 and abs((left_x + right_x) / 2 - 0.5) < 0.02
    assert 0.44 < (left_y + right_y) / 2 < 0.50 and 0.2 < right_x - left_x < 0.27


def test_align_image_modes_and_no_face(astronaut):
    for mode in ("L", "P", "RGBA", "CMYK"):
        aligned = align_image(astronaut.convert(mode), size=64, transform_size=64)
        assert aligned is not None and aligned.mode == "RGB" and aligned.size == (64, 64)
    assert align_image(PIL.Image.new("RGB", (200, 200), (128, 128, 128)), size=64) is None


def test_detections_below_min_score_are_not_faces(astronaut):
    # The photo's second HOG detection is the mission patch on her suit (score about 0.12).
    faces, rejected = find_faces(astronaut, default_landmarker())
    assert len(faces) == 1 and faces[0].score > 1.0
    assert len(rejected) == 1 and 0.0 < rejected[0].score < MIN_SCORE
    assert rejected[0].box[1] > faces[0].box[3]  # below the face: on the chest
    everything, _ = find_faces(astronaut, default_landmarker(), min_score=0.0)
    assert len(everything) == 2


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut, hopper):
    """A folder of the photos a user brings, each case once."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut.save(folder / "astronaut.jpg", quality=95)
    astronaut.convert("L").save(folder / "astronaut_grey.png")
    astronaut.convert("CMYK").save(folder / "astronaut_cmyk.jpg", quality=95)  # an Adobe CMYK JPEG
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; display rotated 90 degrees clockwise
    astronaut.transpose(PIL.Image.Transpose.ROTATE_90).save(folder / "astronaut_rotated.jpg", quality=95, exif=exif)
    hopper.save(folder / "hopper.png")
    pasted((1024, 600), (astronaut, (0, 44)), (hopper, (512, 0))).save(folder / "two_people.png")
    with_face_of(astronaut, 20).save(folder / "tiny_face_20px.png")
    with_face_of(astronaut, 40).save(folder / "small_face_40px.png")
    PIL.Image.fromarray(skimage_data.chelsea()).save(folder / "cat.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return folder


@pytest.fixture(scope="module")
def aligned_run(photos, tmp_path_factory):
    """(exit status, printed lines, output folder) of `python -m pti_lab.align photos out --size 256`."""
    out = tmp_path_factory.mktemp("aligned")
    with pytest.MonkeyPatch.context() as patch:
        lines = []
        patch.setattr("builtins.print", lambda *args, **kwargs: lines.append(" ".join(map(str, args))))
        status = main([str(photos), str(out), "--size", str(SIZE)])
    return status, lines, out


def test_align_folder_says_what_happened_to_each_photo(aligned_run, photos):
    status, lines, out = aligned_run
    assert status == 0
    by_photo = {line.split()[1].rstrip(":"): line for line in lines[:-1]}
    assert sorted(by_photo) == sorted(p.name for p in photos.iterdir())  # one line per photo
    assert by_photo["astronaut.jpg"].startswith("aligned astronaut.jpg -> astronaut.png: face 90 px (score 1.1")
    assert by_photo["astronaut.jpg"].endswith("crop 174 px -> 256 px (1.5x upscaled)")
    assert by_photo["two_people.png"].endswith("; the largest of 2 faces (--all-faces writes each)")
    assert by_photo["cat.png"] == "skipped cat.png: no face detected"
    assert by_photo["tiny_face_20px.png"] == "skipped tiny_face_20px.png: no face detected"
    assert re.fullmatch(r"aligned small_face_40px.png -> small_face_40px.png: face 3\d px \(score 0\.\d\d\), "
                        r"crop 7\d px -> 256 px \(3\.\dx upscaled\)", by_photo["small_face_40px.png"])
    assert by_photo["corrupt.png"].startswith("skipped corrupt.png: cannot read image")
    assert lines[-1] == f"7 aligned, 3 skipped -> {out} (report: {out / 'align_report.json'})"

    report = json.loads((out / "align_report.json").read_text())
    written = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert sorted(entry["output"] for entry in report["aligned"]) == written == [
        "astronaut.png", "astronaut_cmyk.png", "astronaut_grey.png", "astronaut_rotated.png", "hopper.png",
        "small_face_40px.png", "two_people.png"]
    two_people = next(entry for entry in report["aligned"] if entry["image"] == "two_people.png")
    assert two_people["faces"] == 2 and two_people["face_px"] > 200  # Grace Hopper's face, not the astronaut's
    assert sorted(entry["image"] for entry in report["skipped"]) == ["cat.png", "corrupt.png", "tiny_face_20px.png"]
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".png") == ["align_report.json"]  # no temp files


def test_grey_and_cmyk_photos_align_like_the_colour_photo(aligned_run):
    _, _, out = aligned_run
    colour = pixels(out / "astronaut.png")
    grey = pixels(out / "astronaut_grey.png")
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()  # grey, written as RGB
    luma = np.asarray(PIL.Image.fromarray(np.uint8(colour)).convert("L"), dtype=np.float32)
    assert mean_abs_diff(grey[..., 0], luma) < 4.0  # the same crop: measured 2.6 levels (the colour file is a JPEG)
    # CMYK JPEGs are stored with inverted ink values (Adobe); read wrongly, they come out as a negative.
    cmyk = pixels(out / "astronaut_cmyk.png")
    assert mean_abs_diff(cmyk, colour) < 4.0  # measured 2.0 levels (JPEG's loss, twice)
    np.testing.assert_allclose(cmyk.mean(axis=(0, 1)), colour.mean(axis=(0, 1)), atol=2.0)  # the same colours


def same_face(path, alone_path) -> bool:
    """Whether two aligned images show the same face: 8 px blocks differ by less than 16 levels on
    average (a face found in another photo gets a slightly different detection box, so its crop moves
    by a pixel or two: measured 8.4 for Hopper alone and beside the astronaut, 65.6 for the two women)."""
    with PIL.Image.open(path) as img, PIL.Image.open(alone_path) as alone:
        blocks = [im.resize((SIZE // 8, SIZE // 8), PIL.Image.Resampling.BOX) for im in (img, alone)]
    return mean_abs_diff(*blocks) < 16.0


def test_of_several_faces_the_largest_is_aligned(aligned_run):
    _, _, out = aligned_run
    assert same_face(out / "two_people.png", out / "hopper.png")
    assert not same_face(out / "two_people.png", out / "astronaut.png")


def test_exif_rotated_photo_is_turned_upright(aligned_run):
    _, _, out = aligned_run
    assert same_face(out / "astronaut_rotated.png", out / "astronaut.png")


def test_all_faces_writes_each_face_from_the_left(photos, aligned_run, tmp_path, capsys):
    _, _, out = aligned_run
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    (in_dir / "two_people.png").write_bytes((photos / "two_people.png").read_bytes())
    assert main([str(in_dir), str(tmp_path / "out"), "--size", str(SIZE), "--all-faces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("aligned two_people.png face 1 -> two_people_face1.png: face 90 px")
    assert lines[1].startswith("aligned two_people.png face 2 -> two_people_face2.png: face 22")
    assert same_face(tmp_path / "out" / "two_people_face1.png", out / "astronaut.png")
    assert same_face(tmp_path / "out" / "two_people_face2.png", out / "hopper.png")


def test_a_face_too_small_for_the_output_size_is_skipped(photos, tmp_path, capsys):
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    (in_dir / "small.png").write_bytes((photos / "small_face_40px.png").read_bytes())
    # Its crop is about 75 px in the photo: 3.4x to 256 px passes the default limit of 4, 6.8x to 512 px does not.
    assert main([str(in_dir), str(tmp_path / "out"), "--size", "512", "--transform-size", "512"]) == 1
    assert re.fullmatch(r"skipped small.png: face too small: its 7\d px crop would be upscaled 6\.\dx to 512 px "
                        r"\(--max-upscale 4\)", capsys.readouterr().out.splitlines()[0])
    assert main([str(in_dir), str(tmp_path / "out"), "--size", "512", "--transform-size", "512",
                 "--max-upscale", "8"]) == 0
    assert (tmp_path / "out" / "small.png").is_file()


def test_run_reads_what_align_writes(aligned_run):
    _, _, out = aligned_run
    folder = ImageFolder(str(out))  # data=folder data.path=OUT: the PNGs, not align_report.json
    assert folder.names == ["astronaut", "astronaut_cmyk", "astronaut_grey", "astronaut_rotated", "hopper",
                            "small_face_40px", "two_people"]
    samples = list(folder.samples(64))
    assert all(sample.error is None and sample.image.shape == (1, 3, 64, 64) for sample in samples)
    assert samples[0].info["original_size"] == [SIZE, SIZE]


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

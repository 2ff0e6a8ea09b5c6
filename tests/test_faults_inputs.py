"""Bad inputs in a folder of images: each file is either read correctly (its pixels checked) or skipped
with a one-line reason naming it, and a run over the folder completes every readable image."""

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from pti_lab.data import ImageFolder
from tests.conftest import run_py
from tests.fault_helpers import check_complete

SIZE = 16  # read at 16x16: every test image is a flat colour, so each pixel is that colour


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG written chunk by chunk: sizes and depths PIL's writer would not produce."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# name -> the colour it must read as (RGB 0..255)
READABLE = {
    "cmyk.jpg": (255, 0, 0),          # C=0 M=Y=255: red
    "grey16.png": (128, 128, 128),    # 16-bit grey at half scale (PIL alone turns it white)
    "rgb16.png": (128, 64, 32),       # 16-bit RGB
    "palette.png": (200, 100, 50),    # palette image
    "alpha.png": (255, 255, 255),     # fully transparent red: shown over white
    "half_alpha.png": (255, 128, 128),  # half-transparent red over white
    "palette_transparent.png": (255, 255, 255),  # palette colour 0 marked transparent
    "exif_rotated.jpg": None,         # checked by shape below
}
SKIPPED = {  # name -> words of its reason
    "corrupt.png": "cannot read image",
    "truncated.png": "cannot read image",
    "zero_bytes.png": "cannot identify image file",
    "not_an_image.jpg": "cannot identify image file",
    "bomb.png": "decompression bomb",
}


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    PIL.Image.new("CMYK", (24, 24), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=100)
    PIL.Image.fromarray(np.full((24, 24), 32896, np.uint16)).save(folder / "grey16.png")  # 32896 = 128 * 257
    rgb16 = b"".join(b"\x00" + struct.pack(">HHH", 128 * 257, 64 * 257, 32 * 257) * 24 for _ in range(24))
    (folder / "rgb16.png").write_bytes(png_bytes(24, 24, 16, 2, rgb16))
    palette = PIL.Image.new("P", (24, 24), 1)
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.save(folder / "palette.png")
    transparent = PIL.Image.new("P", (24, 24), 0)
    transparent.putpalette([10, 20, 30] + [0] * 765)
    transparent.save(folder / "palette_transparent.png", transparency=0)
    PIL.Image.new("RGBA", (24, 24), (255, 0, 0, 0)).save(folder / "alpha.png")
    PIL.Image.new("RGBA", (24, 24), (255, 0, 0, 128)).save(folder / "half_alpha.png")
    wide = PIL.Image.new("RGB", (48, 24), (0, 0, 255))  # stored wide; EXIF orientation 6 turns it upright
    exif = wide.getexif()
    exif[0x0112] = 6
    wide.save(folder / "exif_rotated.jpg", exif=exif, quality=100)
    good = folder / "corrupt.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), np.uint8)).save(good)
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20] = b"\xff" * 20  # inside the compressed pixels: a valid header, broken data
    good.write_bytes(bytes(data))
    PIL.Image.new("RGB", (64, 64), (9, 9, 9)).save(folder / "truncated.png")
    (folder / "truncated.png").write_bytes((folder / "truncated.png").read_bytes()[:60])
    (folder / "zero_bytes.png").write_bytes(b"")
    (folder / "not_an_image.jpg").write_text("these are not the pixels you are looking for\n")
    (folder / "bomb.png").write_bytes(png_bytes(50_000, 50_000, 8, 2, b""))  # 57 bytes declaring 2.5 Gpixel
    return folder


def test_every_bad_file_is_read_correctly_or_skipped_with_its_reason(bad_folder):
    samples = {Path(s.info["source"]).name: s for s in ImageFolder(str(bad_folder)).samples(SIZE)}
    assert set(samples) == set(READABLE) | set(SKIPPED)
    for name, colour in READABLE.items():
        sample = samples[name]
        assert sample.error is None and sample.image.shape == (1, 3, SIZE, SIZE), (name, sample.error)
        if colour is not None:
            rgb = ((sample.image[0, :, SIZE // 2, SIZE // 2] + 1) * 127.5).tolist()
            assert np.allclose(rgb, colour, atol=3), (name, rgb, colour)
    assert samples["exif_rotated.jpg"].info["original_size"] == [24, 48]  # upright: tall
    for name, words in SKIPPED.items():
        sample = samples[name]
        assert sample.image is None and str(bad_folder / name) in sample.error, (name, sample.error)
        assert words in sample.error and "\n" not in sample.error, (name, sample.error)


def test_a_run_over_the_bad_folder_completes_the_readable_images(bad_folder, tmp_path):
    out = tmp_path / "run"
    run_py(f"hydra.run.dir={out}", "data=folder", f"data.path={bad_folder}", "+method=w", "debug=smoke",
           "data.limit=null")
    names = {"cmyk", "grey16", "rgb16", "palette", "alpha", "half_alpha", "palette_transparent", "exif_rotated"}
    summary = json.loads((out / "summary.json").read_text())
    reasons = {entry["image"]: entry["reason"] for entry in summary["failed"]}
    assert set(reasons) == {"corrupt", "truncated", "zero_bytes", "not_an_image", "bomb"}
    assert all(str(bad_folder) in reason for reason in reasons.values())
    summary["failed"] = []  # check_complete wants no failures: only the readable images are checked below
    (out / "summary.json").write_text(json.dumps(summary))
    check_complete(out, sorted(names), stages=("inversion",))

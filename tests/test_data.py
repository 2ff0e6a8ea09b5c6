"""Datasets: synthfaces test sets, image folders of any size and format, single images, configs."""

import json
import logging
from pathlib import Path

import hydra.utils
import numpy as np
import PIL.Image
import pytest
import torch
from omegaconf import OmegaConf

from pti_lab.data import ImageFolder, SingleImage, SynthfacesTestSet
from pti_lab.errors import BadInputError

CONF_DATA = Path(__file__).resolve().parents[1] / "conf" / "data"


def save(path: Path, size=(40, 30), mode="RGB", color=(200, 30, 30), **kwargs) -> Path:
    PIL.Image.new(mode, size, color).save(path, **kwargs)
    return path


def check_image(image, resolution):
    assert image.shape == (1, 3, resolution, resolution) and image.dtype == torch.float32
    assert -1.0 <= image.min() <= image.max() <= 1.0


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """Good images in several modes, formats and sizes, a truncated PNG and a text file named .jpg."""
    save(tmp_path / "a.png", (64, 64))
    save(tmp_path / "b.JPG", (120, 80), format="JPEG")
    save(tmp_path / "c.png", (50, 70), "RGBA", (10, 200, 10, 128))
    save(tmp_path / "d.png", (33, 33), "L", 90)
    palette_image = PIL.Image.new("P", (90, 60), 3)  # Pillow < 13 gives it no palette and writes a truncated BMP
    palette_image.putpalette([value for index in range(256) for value in (index, 255 - index, 128)])
    palette_image.save(tmp_path / "e.bmp")
    truncated = save(tmp_path / "f.png", (64, 64)).read_bytes()
    (tmp_path / "f.png").write_bytes(truncated[: len(truncated) // 2])
    (tmp_path / "g.jpg").write_text("not an image\n")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix\n")
    return tmp_path


def test_folder_loads_every_format_and_reports_bad_files(mixed_folder, caplog):
    dataset = ImageFolder(str(mixed_folder))
    assert len(dataset) == 7
    with caplog.at_level(logging.WARNING, logger="pti_lab.data"):
        samples = list(dataset.samples(32))
    assert [s.name for s in samples] == ["a", "b", "c", "d", "e", "f", "g"]
    for sample in samples[:5]:
        check_image(sample.image, 32)
        assert sample.error is None
    for sample, file in zip(samples[5:], ["f.png", "g.jpg"]):
        assert sample.image is None and str(mixed_folder / file) in sample.error and "\n" not in sample.error
    assert "cannot identify image file" in samples[6].error
    json.dumps([s.info for s in samples])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "5 of 7" in warnings[0] and "120x80" in warnings[0] and "to 32x32" in warnings[0]


def test_centre_crop_keeps_the_middle(tmp_path):
    # 90x30: red | green | blue thirds; the centre square is the green one.
    pixels = np.zeros((30, 90, 3), np.uint8)
    pixels[:, :30, 0] = pixels[:, 30:60, 1] = pixels[:, 60:, 2] = 255
    PIL.Image.fromarray(pixels).save(tmp_path / "wide.png")
    (sample,) = SingleImage(str(tmp_path / "wide.png")).samples(30)
    rgb = sample.image[0].mean(dim=(1, 2))
    assert rgb[1] > 0.99 and rgb[0] < -0.99 and rgb[2] < -0.99
    assert sample.info["original_size"] == [90, 30]


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 60, 3), np.uint8)  # stored wide; EXIF orientation 6 rotates it upright (tall)
    image = PIL.Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.jpg", exif=exif)
    (sample,) = SingleImage(str(tmp_path / "rotated.jpg")).samples(16)
    assert sample.info["original_size"] == [20, 60]


def test_limit_order_and_unique_names(tmp_path):
    for name in ["b.png", "a.png", "a.jpg", "c.webp", "a b.png"]:
        save(tmp_path / name)
    (tmp_path / "sub").mkdir()
    save(tmp_path / "sub" / "c.png")
    names = [s.name for s in ImageFolder(str(tmp_path)).samples(8)]
    assert names == ["a_b", "a_jpg", "a_png", "b", "c"]
    assert [s.name for s in ImageFolder(str(tmp_path), limit=2).samples(8)] == names[:2]
    assert len(ImageFolder(str(tmp_path), limit=2)) == 2
    recursive = [s.name for s in ImageFolder(str(tmp_path), recursive=True).samples(8)]
    assert recursive == ["a_b", "a_jpg", "a_png", "b", "c_webp", "c_png"]


def test_empty_missing_folders_and_bad_limits_raise(tmp_path, shared_fixtures):
    with pytest.raises(BadInputError, match=str(tmp_path)):
        ImageFolder(str(tmp_path))
    with pytest.raises(BadInputError, match="no image files"):
        ImageFolder(str(shared_fixtures))
    with pytest.raises(BadInputError, match="missing"):
        ImageFolder(str(tmp_path / "missing"))
    with pytest.raises(BadInputError, match="x.png"):
        SingleImage(str(tmp_path / "x.png"))
    save(tmp_path / "a.png")
    with pytest.raises(BadInputError, match="limit"):
        ImageFolder(str(tmp_path), limit=-1)
    assert len(ImageFolder(str(tmp_path), limit=0)) == 0  # preview-only runs
    assert len(SynthfacesTestSet(limit=0)) == 0 and list(SynthfacesTestSet(limit=0).samples(64)) == []


def test_synthfaces_sets():
    ood = SynthfacesTestSet("ood", count=4, limit=3)
    samples = list(ood.samples(64))
    assert len(ood) == 3 and [s.name for s in samples] == ["ood_000", "ood_001", "ood_002"]
    for sample in samples:
        check_image(sample.image, 64)
        assert sample.info["extras"] and "glasses" in sample.info["params"]
    json.dumps([s.info for s in samples])
    again = next(SynthfacesTestSet("ood", count=4).samples(64))
    assert torch.equal(again.image, samples[0].image)
    indomain = list(SynthfacesTestSet("indomain", count=2).samples(48))
    assert all(s.info["extras"] == [] for s in indomain)
    check_image(indomain[0].image, 48)
    with pytest.raises(BadInputError, match="kind"):
        SynthfacesTestSet("faces")


@pytest.mark.parametrize("option", ["synthfaces_ood", "synthfaces_indomain", "folder", "image"])
def test_configs_instantiate(option, tmp_path):
    cfg = OmegaConf.load(CONF_DATA / f"{option}.yaml")
    if "path" in cfg.keys():
        image = save(tmp_path / "face.png")
        cfg.path = str(image if option == "image" else tmp_path)
    dataset = hydra.utils.instantiate(cfg)
    assert len(dataset) == (32 if option.startswith("synthfaces") else 1)
    check_image(next(iter(dataset.samples(16))).image, 16)


# ----------------------------------------------------------------------------
# data.split: how data.shard=I data.shards=N deals the images (tests/test_shards.py: the hash split).


def shard_names(make, shards: int) -> list:
    """The names of each shard of the data set `make(shard=..., shards=...)` builds."""
    return [make(shard=shard, shards=shards).names for shard in range(shards)]


def check_partition(parts: list, every: list) -> None:
    """The shards are disjoint, together hold every image once, and each keeps the data set's order."""
    assert sorted(name for part in parts for name in part) == sorted(every)
    assert all(part == [name for name in every if name in part] for part in parts)


def test_balanced_shards_split_8_images_4_and_4_where_the_hash_splits_them_7_and_1(tmp_path):
    ood = SynthfacesTestSet(kind="ood", limit=8).names
    hashed = shard_names(lambda **shard: SynthfacesTestSet(kind="ood", limit=8, **shard), 2)
    balanced = shard_names(lambda **shard: SynthfacesTestSet(kind="ood", limit=8, split="balanced", **shard), 2)
    assert [len(part) for part in hashed] == [7, 1]  # the name hash, unchanged: the split the issue measured
    assert balanced == [ood[0::2], ood[1::2]] and ood == [f"ood_{i:03d}" for i in range(8)]
    check_partition(balanced, ood)
    for name in [f"img{i}" for i in range(8)]:
        save(tmp_path / f"{name}.png", (8, 8))
    folder = shard_names(lambda **shard: ImageFolder(str(tmp_path), split="balanced", **shard), 2)
    assert folder == [["img0", "img2", "img4", "img6"], ["img1", "img3", "img5", "img7"]]


def test_balanced_shards_of_7_images_hold_3_2_2_and_follow_the_limit(tmp_path):
    for index in range(10):
        save(tmp_path / f"p{index}.png", (8, 8))
    every = ImageFolder(str(tmp_path), limit=7).names
    parts = shard_names(lambda **shard: ImageFolder(str(tmp_path), limit=7, split="balanced", **shard), 3)
    assert [len(part) for part in parts] == [3, 2, 2]
    check_partition(parts, every)
    faces = shard_names(lambda **shard: SynthfacesTestSet(kind="indomain", count=7, split="balanced", **shard), 3)
    assert faces == [["indomain_000", "indomain_003", "indomain_006"], ["indomain_001", "indomain_004"],
                     ["indomain_002", "indomain_005"]]
    # the same command deals the same shards (resume), and a larger limit adds images without moving any
    assert parts == shard_names(lambda **shard: ImageFolder(str(tmp_path), limit=7, split="balanced", **shard), 3)
    larger = shard_names(lambda **shard: ImageFolder(str(tmp_path), limit=10, split="balanced", **shard), 3)
    assert all(set(before) <= set(after) for before, after in zip(parts, larger))


def test_a_single_image_is_in_shard_0_when_balanced(tmp_path):
    image = str(save(tmp_path / "face.png"))
    assert shard_names(lambda **shard: SingleImage(image, split="balanced", **shard), 3) == [["face"], [], []]


def test_a_bad_split_is_refused_in_one_line_naming_the_key(tmp_path):
    assert {OmegaConf.load(path).split for path in CONF_DATA.glob("*.yaml")} == {"hash"}  # the default
    image = str(save(tmp_path / "face.png"))
    for make in (lambda: SynthfacesTestSet(split="foo"), lambda: ImageFolder(str(tmp_path), split="foo"),
                 lambda: SingleImage(image, shard=1, shards=2, split="foo")):
        with pytest.raises(BadInputError) as error:
            make()
        assert str(error.value) == "data.split='foo' is not one of hash, balanced"

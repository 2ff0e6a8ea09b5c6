"""pti_lab/bench/official_pti.py: the official PTI runner, its stand-ins and its input writers.

The run itself needs two local checkouts that pti-lab never ships:
    PTI_LAB_OFFICIAL_PTI            danielroich/PTI (the code that is run)
    PTI_LAB_OFFICIAL_STYLEGAN2_ADA  NVlabs/stylegan2-ada-pytorch (to write the generator pickle)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from pti_lab.bench.official_pti import Compose, Normalize, ToTensor, VGG16Features, main
from pti_lab.data import SynthfacesTestSet, to_tensor
from pti_lab.models.lpips import ProjectorDistance

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_PTI = os.environ.get("PTI_LAB_OFFICIAL_PTI")
OFFICIAL_STYLEGAN2_ADA = os.environ.get("PTI_LAB_OFFICIAL_STYLEGAN2_ADA")


def runner(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pti_lab.bench.official_pti", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")))


def test_refuses_a_folder_that_is_not_a_pti_checkout(tmp_path):
    result = runner("--official", str(tmp_path), "--generator", "G.pkl", "--images", str(tmp_path),
                    "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == \
        f"--official {tmp_path}: not a danielroich/PTI checkout (no scripts/run_pti.py, training/coaches)"


def test_write_images_writes_the_first_synthfaces_test_faces(tmp_path):
    main(["--write-images", str(tmp_path), "--count", "2", "--resolution", "32"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ood_000.png", "ood_001.png"]
    for sample in SynthfacesTestSet(kind="ood", limit=2).samples(32):
        written = to_tensor(np.asarray(PIL.Image.open(tmp_path / f"{sample.name}.png")))
        assert torch.equal(written, sample.image)  # 8-bit faces: the PNG round trip is exact


def test_stand_ins_compute_what_the_official_code_expects():
    faces = [to_tensor(np.random.default_rng(seed).integers(0, 256, [64, 64, 3], dtype=np.uint8)) for seed in (1, 2)]
    # torchvision's ToTensor + Normalize(0.5, 0.5), as the official dataset reads an image
    pixels = np.random.default_rng(3).integers(0, 256, [16, 16, 3], dtype=np.uint8)
    transform = Compose([ToTensor(), Normalize([0.5] * 3, [0.5] * 3)])
    assert torch.equal(transform(PIL.Image.fromarray(pixels))[None], to_tensor(pixels))
    # vgg16.pt's LPIPS features: their squared difference summed is the projector's LPIPS(vgg)
    vgg16 = VGG16Features()
    a, b = ((face + 1) * 127.5 for face in faces)
    features = [vgg16(x, resize_images=False, return_lpips=True) for x in (a, b)]
    expected = ProjectorDistance()(*faces).item()
    assert expected > 0.1
    assert (features[0] - features[1]).square().sum().item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.skipif(not (OFFICIAL_PTI and OFFICIAL_STYLEGAN2_ADA),
                    reason="set PTI_LAB_OFFICIAL_PTI to a danielroich/PTI checkout and PTI_LAB_OFFICIAL_STYLEGAN2_ADA "
                           "to a NVlabs/stylegan2-ada-pytorch checkout")
def test_official_pti_reconstructs_one_image(tmp_path):
    generator, images, out = tmp_path / "synthfaces.pkl", tmp_path / "images", tmp_path / "out"
    written = runner("--write-generator", str(generator), "--stylegan2-ada", OFFICIAL_STYLEGAN2_ADA)
    assert written.returncode == 0, written.stderr
    assert "pti-lab reads back the same weights: True" in written.stdout
    main(["--write-images", str(images), "--count", "1"])
    result = runner("--official", OFFICIAL_PTI, "--generator", str(generator), "--images", str(images),
                    "--out", str(out), "--inversion-steps", "2", "--tuning-steps", "2")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ood_000.png", "timing.json"]
    reconstruction = np.asarray(PIL.Image.open(out / "ood_000.png"))
    assert reconstruction.shape == (64, 64, 3) and reconstruction.dtype == np.uint8
    assert reconstruction.std() > 5  # a face, not a blank
    timing = json.loads((out / "timing.json").read_text())
    seconds = timing["images"]["ood_000"]
    assert seconds["inversion_s"] > 0 and seconds["tuning_s"] > 0
    assert seconds["seconds"] == pytest.approx(seconds["inversion_s"] + seconds["tuning_s"], abs=2e-3)
    assert timing["total_s"] > seconds["seconds"]

"""python -m pti_lab.animate: an edit's strength swept in an MP4, and the way between two images of a
multi-ID run in a GIF, both read back and compared with the run's own renders."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pti_lab.animate import PANEL, main as animate
from pti_lab.finished_run import open_image_dir
from pti_lab.tracking.store import to_uint8
from tests.conftest import run_py

iio = pytest.importorskip("imageio.v3", reason="imageio is in the studio extra: pip install -e '.[studio]'")


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory) -> Path:
    """Multi-ID PTI (5 + 5 steps): one generator tuned for two images."""
    root = tmp_path_factory.mktemp("animate") / "run"
    run_py("+ablation=A", "mode=multi", "data.limit=2", "inverter.steps=5", "tuner.steps=5", "logger=none",
           "metrics=reconstruction", "preview=null", f"hydra.run.dir={root}")
    return root


def panel(image: torch.Tensor) -> np.ndarray:
    """A [1, 3, R, R] render as the animation shows it: uint8, scaled to PANEL x PANEL by nearest neighbour."""
    return np.asarray(Image.fromarray(to_uint8(image.clamp(-1, 1))[0]).resize((PANEL, PANEL), Image.NEAREST)).astype(int)


def test_sweep_of_an_edit_as_mp4(multi_run, tmp_path, capsys):
    out = tmp_path / "smile.mp4"
    assert animate([str(multi_run / "images/ood_000"), "editor=interfacegan", "editor.direction=smile",
                    "editor.strengths=[-1.5,3]", "--frames", "9", "--out", str(out)]) == 0
    assert "9 frames, 512x288" in capsys.readouterr().out
    frames = iio.imread(out).astype(int)
    assert frames.shape == (9, PANEL + 32, 2 * PANEL, 3)
    image = open_image_dir(multi_run / "images/ood_000")
    with torch.no_grad():
        reconstruction, original = image.render(image.pivot), image.render(image.pivot, original=True)
    # The middle frame (strength 0) is the tuned reconstruction beside the original generator's picture,
    # up to H.264's loss; the ends are the edit at -3 and +3 (the largest strength), clearly different.
    middle = frames[4]
    assert np.abs(middle[:PANEL, :PANEL] - panel(reconstruction)).mean() < 4
    assert np.abs(middle[:PANEL, PANEL:] - panel(original)).mean() < 4
    assert np.abs(frames[0][:PANEL, :PANEL] - frames[-1][:PANEL, :PANEL]).mean() > 3 * \
        np.abs(middle[:PANEL, :PANEL] - panel(reconstruction)).mean()


def test_between_two_images_of_a_multi_id_run_as_gif(multi_run, tmp_path):
    out = tmp_path / "between.gif"
    assert animate([str(multi_run), "--between", "ood_000", "ood_001", "--frames", "5", "--out", str(out)]) == 0
    frames = iio.imread(out).astype(int)
    assert frames.shape[0] == 5
    ends = []
    for name in ("ood_000", "ood_001"):
        image = open_image_dir(multi_run / "images" / name)
        with torch.no_grad():
            ends.append(panel(image.render(image.pivot)))  # each image's tuned reconstruction
    distance = [[np.abs(frames[index][:PANEL, :PANEL, :3] - end).mean() for end in ends] for index in (0, -1)]
    # The first frame is the first image's reconstruction, the last the second's (up to the GIF's palette),
    # each nearer its own image than the other one.
    assert distance[0][0] < 1.5 and distance[1][1] < 1.5, distance
    assert distance[0][0] < distance[0][1] / 2 and distance[1][1] < distance[1][0] / 2, distance


def test_bad_requests_are_one_line(multi_run, tmp_path, capsys):
    single = tmp_path / "single"
    shutil.copytree(multi_run, single)
    (single / "tuned_G.pt").rename(single / "images/ood_000/tuned_G.pt")  # one image's own generator, as in single mode
    assert animate([str(single), "--between", "ood_000", "ood_001"]) == 1
    assert "needs a multi-ID run" in capsys.readouterr().err
    assert animate([str(multi_run / "images/ood_000"), "editor=interfacegan", "--out", str(tmp_path / "x.avi")]) == 1
    assert "is a .mp4 or a .gif" in capsys.readouterr().err
    assert animate([str(multi_run / "images/ood_000")]) == 1
    assert "give an editor" in capsys.readouterr().err
    assert animate([str(multi_run / "images/ood_000"), "editor=interfacegan", "editor.direction=grin"]) == 1
    assert "unknown direction 'grin'" in capsys.readouterr().err

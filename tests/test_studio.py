"""The editing studio: its model logic on a real run (no browser), the replay of a saved recipe, and
the page itself driven in headless Chromium (Playwright with the system's /usr/bin/chromium)."""

import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pti_lab.editing.directions import read_boundaries
from pti_lab.editing.interfacegan import InterfaceGANEditor
from pti_lab.editing.mix import MixEditor
from pti_lab.errors import BadInputError
from pti_lab.studio.session import Studio
from pti_lab.synthfaces.predictor import AttributePredictor
from pti_lab.tracking.store import RunStore
from tests.conftest import REPO, run_py

CHROMIUM = Path("/usr/bin/chromium")
PCA_SAMPLES = 5000  # GANSpace sliders fitted on fewer samples: the test needs the mechanism, not the PCA


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """PTI (10 + 10 steps) on two out-of-domain synthfaces images."""
    root = tmp_path_factory.mktemp("studio") / "run"
    run_py("+ablation=A", "data.limit=2", "inverter.steps=10", "tuner.steps=10", "logger=none", "metrics=reconstruction",
           "preview=null", f"hydra.run.dir={root}")
    return root


@pytest.fixture(scope="module")
def studio(run_dir) -> Studio:
    return Studio(run_dir, components=2, pca_samples=PCA_SAMPLES)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_the_run_is_read_back_as_it_was_written(studio, run_dir):
    assert studio.labels == ["ood_000", "ood_001"]
    shot = studio.render("ood_000", {})
    # No edit: the tuned generator gives the run's tuned.png (up to one level: the run stores the tuning as an
    # fp16 delta, checked to 1e-3 of the range), the original one its inversion.png.
    assert np.abs(shot.tuned - pixels(run_dir / "images/ood_000/tuned.png")).max() <= 1
    assert np.abs(shot.original - pixels(run_dir / "images/ood_000/inversion.png")).max() <= 1
    metrics = studio.metrics("ood_000")
    row = RunStore(run_dir).done("ood_000", "tuning")
    assert metrics["tuning"]["lpips"] == row["lpips"] and metrics["inversion"]["lpips"] < 1
    keys = [s.key for s in studio.sliders()]
    assert {"smile", "age", "pose", "pc0", "pc1"} <= set(keys)


def test_a_smile_slider_makes_the_face_smile(studio):
    predictor = AttributePredictor()
    scores = []
    for strength in (-3.0, 0.0, 3.0):
        shot = studio.render("ood_000", {"smile": strength})
        image = torch.from_numpy(shot.tuned).permute(2, 0, 1)[None].float() / 127.5 - 1
        scores.append(predictor.predict(image)["smile"].item())
    # The predictor's smile score (-1 frown .. 1 broad smile) rises with the slider (measured: -0.26, 0.55, 0.62).
    assert scores[0] < scores[1] < scores[2] and scores[2] - scores[0] > 0.5, scores
    several = studio.render("ood_000", {"smile": 3.0, "age": 2.0, "pc0": 1.0})
    assert not np.array_equal(several.tuned, shot.tuned) and not np.array_equal(several.original, shot.original)


def test_saved_recipe_replays_from_the_command_line_to_the_same_pixels(studio, run_dir):
    values = {"smile": 2.35, "age": -1.2, "pc1": 0.8}
    folder = studio.save("ood_001", values)
    assert folder.parent == run_dir / "studio" and folder.name == "ood_001-001"
    recipe = json.loads((folder / "recipe.json").read_text())
    assert [(e["slider"], e["strength"]) for e in recipe["edits"]] == [("age", -1.2), ("smile", 2.35), ("pc1", 0.8)]
    assert recipe["editor_overrides"][0] == "editor=mix"
    command = shlex.split(recipe["replay"])
    assert command[:3] == ["python", "-m", "pti_lab.studio.replay"]
    result = subprocess.run([sys.executable, *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    replayed = Path(command[command.index("--out") + 1])
    for name in ("edit.png", "original.png"):
        assert np.array_equal(pixels(folder / name), pixels(replayed / name)), name
    saved, again = (torch.load(f / "latent.pt", weights_only=True) for f in (folder, replayed))
    assert (saved - again).abs().max().item() <= 1e-6
    assert not np.array_equal(pixels(folder / "edit.png"), pixels(run_dir / "images/ood_001/tuned.png"))
    assert studio.save("ood_001", values).name == "ood_001-002"  # never overwrites an earlier save


def test_animate_button_writes_the_sweep_of_the_sliders(studio, run_dir):
    iio = pytest.importorskip("imageio.v3", reason="imageio is in the studio extra")
    out = studio.animate("ood_000", {"smile": 3.0, "age": 1.0}, frames=5)
    assert out.parent == run_dir / "animations" and out.suffix == ".mp4"
    frames = iio.imread(out).astype(int)
    assert frames.shape == (5, 288, 512, 3)
    assert np.abs(frames[0] - frames[-1]).mean() > 1  # -1x and +1x of the edit differ
    with pytest.raises(BadInputError, match="move a slider first"):
        studio.animate("ood_000", {})


def test_styleclip_prompt_adds_a_direction(studio, run_dir):
    steps = []
    slider = studio.styleclip("ood_000", "a smiling face", steps=5, on_step=lambda k, n: steps.append((k, n)))
    assert steps[-1] == (5, 5) and len(steps) == 5
    direction = torch.load(slider.source, weights_only=True)
    assert direction.shape == (1, 256) and abs(direction.norm().item() - 1) < 1e-5
    assert slider.value > 0 and slider.maximum == pytest.approx(2 * slider.value)
    assert studio.sliders()[-1] == slider
    edited = studio.render("ood_000", {slider.key: slider.value})
    assert not np.array_equal(edited.tuned, studio.render("ood_000", {}).tuned)


def test_mix_editor_is_the_sum_of_its_directions(studio):
    image = studio.image("ood_000")
    single = InterfaceGANEditor("smile", [2.0])
    single.prepare(image.base)
    mix = MixEditor(directions=["smile", "age"], strengths=[2.0, -1.5], components=[1], component_strengths=[0.5],
                    num_samples=PCA_SAMPLES)
    mix.prepare(image.base)
    smile_only = MixEditor(directions=["smile"], strengths=[2.0])
    [edit] = smile_only.edits(image.tuned, image.pivot).edits
    assert torch.equal(edit.ws, single.edits(image.tuned, image.pivot).edits[0].ws)
    [combined] = mix.edits(image.tuned, image.pivot).edits
    age, pc1 = mix.steps[1], mix.steps[2]
    assert combined.name == "smile+2,age-1.5,pc1+0.5"
    assert torch.allclose(combined.ws, edit.ws - 1.5 * age + 0.5 * pc1, atol=1e-6)
    with pytest.raises(BadInputError, match="2 directions but 1 strengths"):
        MixEditor(directions=["smile", "age"], strengths=[1.0])
    with pytest.raises(BadInputError, match="at least one direction or component"):
        MixEditor()


def test_direction_files_become_sliders(run_dir, tmp_path, shared_fixtures):
    frown = tmp_path / "frown.pt"
    torch.save(-read_boundaries()["boundaries"]["smile"][None], frown)  # PTI's [1, w_dim] layout
    studio = Studio(run_dir, directions=(frown,), components=0)
    assert studio.sliders()[-1].key == "frown" and studio.sliders()[-1].source == str(frown)
    # The file is the smile boundary negated: +t of it is -t of smile, pixel for pixel.
    assert np.array_equal(studio.render("ood_000", {"frown": 2.0}).tuned, studio.render("ood_000", {"smile": -2.0}).tuned)
    ffhq = shared_fixtures / "ffhq_directions" / "pti_interfacegan_smile.pt"
    with pytest.raises(BadInputError, match="512 dimensions but the generator's W has 256"):
        Studio(run_dir, directions=(ffhq,), components=0).sliders()


def test_bad_inputs_are_one_line(run_dir, tmp_path):
    with pytest.raises(BadInputError, match="not a pti-lab run or sweep directory"):
        Studio(tmp_path)
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    record = json.loads((moved / "run_config.json").read_text())
    record["settings"]["generator.path"] = str(tmp_path / "ffhq.pkl")
    (moved / "run_config.json").write_text(json.dumps(record))
    with pytest.raises(BadInputError, match=r"base generator .*ffhq.pkl is missing; give its path with --generator"):
        Studio(moved).render("ood_000", {})
    failed = tmp_path / "failed"
    shutil.copytree(run_dir, failed)
    RunStore(failed).record_failure("ood_001", "tuning loss became nan at step 3")
    studio = Studio(failed)
    with pytest.raises(BadInputError, match="this image failed in the run .tuning loss became nan"):
        studio.render("ood_001", {})
    assert studio.render("ood_000", {}).tuned.shape == (64, 64, 3)


# ---------------------------------------------------------------------------------------------------
# The page in a real browser.

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(path: Path, *args: str):
    """`python -m pti_lab.studio PATH` on a free port; (process, url) once the page answers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "pti_lab.studio", str(path), "--port", str(port), *args],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the studio exited: {process.stdout.read()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    pytest.fail("the studio did not answer within 90 s")


@pytest.fixture
def browser():
    for module in ("gradio", "playwright"):
        try:
            __import__(module)
        except ImportError:
            pytest.skip(f"{module} is not installed (pip install -e '.[studio]'), so the page is not tested in a browser")
    from playwright.sync_api import sync_playwright
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium), so the page is not tested in a browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


def shown(page, selector: str) -> tuple[str, np.ndarray]:
    """The src of the picture in `selector` and its pixels, as the browser received them."""
    src = page.get_attribute(f"{selector} img", "src")
    return src, np.asarray(Image.open(BytesIO(page.request.get(src).body())).convert("RGB")).astype(int)


def test_page_slide_save_in_a_browser(browser, run_dir, tmp_path):
    process, url = serve(run_dir, "--components", "2", "--pca-samples", str(PCA_SAMPLES))
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        outside = []
        page.on("request", lambda r: None if r.url.startswith(url) or r.url.startswith("data:") else outside.append(r.url))
        page.goto(url, wait_until="networkidle")
        page.wait_for_selector("#edit-tuned img", timeout=60_000)
        before_src, before = shown(page, "#edit-tuned")
        _, original_before = shown(page, "#edit-original")
        assert np.abs(before - pixels(run_dir / "images/ood_000/tuned.png")).max() <= 1  # no edit: the reconstruction

        number = page.locator("#slider-smile input[type=number]")
        number.fill("3")
        number.press("Enter")
        page.wait_for_function(f"document.querySelector('#edit-tuned img').src !== {json.dumps(before_src)}",
                               timeout=30_000)
        _, after = shown(page, "#edit-tuned")
        _, original_after = shown(page, "#edit-original")
        assert np.abs(after - before).mean() > 1.0, "the tuned picture did not change with the smile slider"
        assert np.abs(original_after - original_before).mean() > 1.0
        assert "ms" in page.inner_text("#timing")
        page.screenshot(path=str(tmp_path / "studio.png"), full_page=True)

        page.click("#save")
        page.wait_for_function("document.querySelector('#status').innerText.includes('saved')", timeout=30_000)
        folder = run_dir / "studio" / page.inner_text("#status").split("saved ")[1].split(":")[0].split("/")[-1]
        assert np.array_equal(pixels(folder / "edit.png"), after)  # the file is the picture on the page
        recipe = json.loads((folder / "recipe.json").read_text())
        assert [(e["slider"], e["strength"]) for e in recipe["edits"]] == [("smile", 3.0)]
        assert torch.load(folder / "latent.pt", weights_only=True).shape == (1, 10, 256)

        page.fill("#prompt textarea", "a smiling face")
        page.fill("#steps input", "3")
        page.click("#run-styleclip")
        page.wait_for_function("document.querySelector('#status').innerText.includes('StyleCLIP direction')",
                               timeout=60_000)
        assert page.locator("#slider-styleclip-0").is_visible()
        assert "styleclip: a smiling face (ood_000)" in page.inner_text("#slider-styleclip-0")
        assert not outside, f"the page fetched from outside: {outside[:3]}"
    finally:
        process.kill()
        process.wait()


@pytest.mark.filterwarnings("ignore:::gradio.queueing")  # Gradio's own use of pandas options pandas 3 deprecates
def test_page_says_what_is_wrong(browser, run_dir, tmp_path):
    """A directory that is not a run, an image whose tuning failed, a base generator that moved: one line each."""
    from pti_lab.studio.__main__ import open_page  # the studio extra, present when `browser` did not skip
    from pti_lab.studio.page import launch
    failed, moved = tmp_path / "failed", tmp_path / "moved"
    shutil.copytree(run_dir, failed)
    RunStore(failed).record_failure("ood_000", "tuning loss became nan at step 3")
    shutil.copytree(run_dir, moved)
    record = json.loads((moved / "run_config.json").read_text())
    record["settings"]["generator.path"] = str(tmp_path / "ffhq.pkl")
    (moved / "run_config.json").write_text(json.dumps(record))
    expected = {tmp_path / "empty": "not a pti-lab run or sweep directory",
                failed: "this image failed in the run (tuning loss became nan at step 3)",
                moved: "ffhq.pkl is missing; give its path with --generator FILE"}
    (tmp_path / "empty").mkdir()
    for path, message in expected.items():
        page, port = open_page(path, components=0), free_port()
        launch(page, "127.0.0.1", port, block=False)
        try:
            tab = browser.new_page()
            tab.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            tab.wait_for_function(f"document.querySelector('#status').innerText.includes({json.dumps(message)})",
                                  timeout=30_000)
            assert "Traceback" not in tab.content() and tab.inner_text("#status").count("\n") == 0
        finally:
            page.close()

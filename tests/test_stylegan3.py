"""StyleGAN3 (configs T and R): parity with the official code, loading official pickles safely,
saving, deltas, batching, and a whole run (inversion, tuning, InterfaceGAN and transform edits).

The golden files in tests/fixtures/official_stylegan3/ were made once by the official NVlabs/stylegan3
code (CPU reference ops) with seeded random weights; the command is in make_goldens.py there.
"""

import json
import os
import pickle

import numpy as np
import PIL.Image
import pytest
import torch

from pti_lab.editing import SequentialEditor, TransformEditor
from pti_lab.editing.editor import chained_transform
from pti_lab.editing.transform import image_transform
from pti_lab.errors import BadInputError, CheckpointError
from pti_lab.inversion import WInverter
from pti_lab.models import LPIPS
from pti_lab.models import load_generator, save_generator
from pti_lab.models.checkpoint_writers import rosinality_incompatibility, save_official
from pti_lab.models.checkpoints import new_generator
from pti_lab.models.delta import load_tuned, save_tuned
from pti_lab.models.stylegan3 import Generator, filtered_lrelu
from pti_lab.tuning import PivotalTuner
from tests.conftest import REPO, run_py
from tests.official_pickle import STYLEGAN3_SOURCE, dumps_network_pickle

pytestmark = pytest.mark.usefixtures("cache_dir")  # W statistics in a temporary cache

GOLDEN_DIR = REPO / "tests" / "fixtures" / "official_stylegan3"
GOLDENS = ["t16", "t64_clamp", "r16", "r64"]
PARITY = 1e-4  # max |image difference| allowed, images in [-1, 1]


def golden(name: str) -> dict:
    return torch.load(GOLDEN_DIR / f"{name}.pt", weights_only=True)


def official_pickle(tmp_path, name: str, module_src: str = STYLEGAN3_SOURCE, file: str = None):
    """An official-format network pickle of the golden generator `name` (flat options, plain attributes)."""
    data = golden(name)
    kwargs = dict(data["init_kwargs"])
    core = {key: kwargs.pop(key) for key in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
    G = new_generator(dict(core, mapping_kwargs=kwargs.pop("mapping_kwargs"), synthesis_kwargs=kwargs,
                           network="stylegan3"))
    G.load_state_dict(data["state_dict"])
    path = tmp_path / (file or f"stylegan3-{name}.pkl")
    path.write_bytes(dumps_network_pickle(G.eval(), module_src=module_src))
    return path, data


def small_generator(resolution: int = 16, radial: bool = False, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    synthesis = dict(channel_base=256, channel_max=16)
    if radial:
        synthesis.update(conv_kernel=1, use_radial_filters=True)
    return Generator(16, 0, 16, resolution, 3, synthesis_kwargs=synthesis).eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# Parity with the official code.

@pytest.mark.parametrize("name", GOLDENS)
def test_official_pickle_reproduces_official_images(name, tmp_path):
    path, data = official_pickle(tmp_path, name)
    G = load_generator(path)
    assert isinstance(G, Generator) and G.num_ws == 16
    for case in data["cases"]:
        options = dict(truncation_psi=case["truncation_psi"], truncation_cutoff=case["truncation_cutoff"])
        with torch.no_grad():
            ws = G.mapping(data["z"], None, **options)
            G.synthesis.input.transform.copy_(case["transform"])  # as the official gen_images.py sets it
            img = G(data["z"], None, **options, noise_mode=case["noise_mode"], force_fp32=True)
            G.synthesis.input.transform.copy_(torch.eye(3))
            by_argument = G.synthesis(ws, noise_mode=case["noise_mode"], transform=case["transform"])
        assert torch.allclose(ws, case["ws"], atol=1e-6, rtol=0)
        error = (img - case["img"]).abs().max().item()
        assert error < PARITY, (name, case["truncation_psi"], case["noise_mode"], error)
        assert torch.equal(by_argument, img)
        assert case["img"].std() > 0.1  # the golden images are images, not a constant


def test_transform_and_clamp_cases_are_not_trivial():
    data = golden("t64_clamp")
    plain, turned = data["cases"][0], data["cases"][3]
    assert not torch.equal(turned["transform"], torch.eye(3))
    assert (plain["img"] - turned["img"]).abs().max() > 0.3  # the transform moves the image
    assert data["init_kwargs"]["conv_clamp"] == 3.0
    assert (plain["img"].abs() >= 0.75 - 1e-6).float().mean() > 0.01  # clamp 3 x output scale 0.25 is reached


@pytest.mark.parametrize("name", GOLDENS)
def test_designed_filters_and_geometry_match_official(name):
    data = golden(name)
    kwargs = dict(data["init_kwargs"])
    core = {key: kwargs.pop(key) for key in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
    G = Generator(**core, mapping_kwargs=kwargs.pop("mapping_kwargs"), synthesis_kwargs=kwargs)
    state = G.state_dict()
    filters = [key for key in data["state_dict"] if key.endswith(("up_filter", "down_filter"))]
    assert filters and sorted(filters) == sorted(key for key in state if key.endswith(("up_filter", "down_filter")))
    radial = [key for key in filters if data["state_dict"][key].ndim == 2]
    assert bool(radial) == name.startswith("r")
    for key in filters:
        assert torch.allclose(state[key], data["state_dict"][key], atol=1e-7, rtol=0), key
    for layer, geometry in data["layers"].items():
        ours = getattr(G.synthesis, layer)
        assert [ours.padding, ours.up_factor, ours.down_factor, int(ours.in_size[0]), int(ours.out_size[0])] == \
            [geometry["padding"], geometry["up_factor"], geometry["down_factor"], geometry["in_size"], geometry["out_size"]]


@pytest.mark.parametrize("radial", [False, True])
@pytest.mark.parametrize("size, padding, up", [(9, [5, 2, 4, 3], 2), (7, [3, 6, 5, 4], 4), (20, [-3, -4, -2, -5], 2)])
def test_filtered_lrelu_and_its_gradient_match_its_definition(radial, size, padding, up):
    """Against the definition written out with differentiable ops: zero insertion, pad, full 2-D
    convolution, lrelu, clamp, full convolution, subsampling (the slow way). Ours keeps one byte per
    upsampled sample for its backward pass and computes the filters' transposes there."""
    gen = torch.Generator().manual_seed(size)
    x = torch.randn([2, 3, size, size], generator=gen, dtype=torch.float64, requires_grad=True)
    up_taps = torch.rand(6 * up, generator=gen, dtype=torch.float64)
    down_taps = torch.rand(*([12, 12] if radial else [12]), generator=gen, dtype=torch.float64)
    ours = filtered_lrelu(x, up_taps, down_taps, up=up, down=2, padding=padding, gain=1.7, slope=0.2, clamp=0.9)

    zero_inserted = torch.zeros([2, 3, size * up, size * up], dtype=torch.float64)
    zero_inserted[:, :, ::up, ::up] = 1
    upsampled = torch.nn.functional.pad(x.repeat_interleave(up, 2).repeat_interleave(up, 3) * zero_inserted, padding)
    kernel = (torch.outer(up_taps, up_taps) * up * up).flip([0, 1])
    y = torch.nn.functional.conv2d(upsampled.reshape(6, 1, *upsampled.shape[2:]), kernel[None, None])
    y = (torch.nn.functional.leaky_relu(y, 0.2) * 1.7).clamp(-0.9, 0.9)
    assert 0.05 < (y.abs() == 0.9).double().mean() < 0.95  # the clamp matters
    down_kernel = down_taps if radial else torch.outer(down_taps, down_taps)
    y = torch.nn.functional.conv2d(y, down_kernel.flip([0, 1])[None, None])
    expected = y.reshape(2, 3, *y.shape[2:])[:, :, ::2, ::2]
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, atol=1e-10)
    weights = torch.randn(ours.shape, generator=gen, dtype=torch.float64)
    grad_ours, = torch.autograd.grad((ours * weights).sum(), x)
    grad_expected, = torch.autograd.grad((expected * weights).sum(), x)
    assert torch.allclose(grad_ours, grad_expected, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Loading: hostile and inconsistent files are refused with one line.

def hostile_source(marker) -> str:
    return STYLEGAN3_SOURCE + f"\nimport os\nos.system('touch {marker}')\n"


def test_sg3_pickle_with_code_in_its_source_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path, _ = official_pickle(tmp_path, "t16", module_src=hostile_source(marker), file="evil-sg3.pkl")
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message and "refusing to load" in message
    assert not marker.exists()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_sg3_pickle_with_a_code_global_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path, _ = official_pickle(tmp_path, "r16")
    snapshot = pickle.dumps({"G_ema": _RunsCode(marker)}, protocol=4)
    path.write_bytes(snapshot)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    assert "system" in str(info.value) and not marker.exists()


def test_sg3_pickle_whose_layer_geometry_disagrees_is_refused(tmp_path):
    path, _ = official_pickle(tmp_path, "t16")
    G = load_generator(path)
    layer = G.synthesis.layer_names[3]
    G.synthesis.get_submodule(layer).padding = [0, 0, 0, 0]  # the file's stored padding, not its settings
    path.write_bytes(dumps_network_pickle(G))
    with pytest.raises(CheckpointError, match=rf"synthesis\.{layer}\.padding is \[0, 0, 0, 0\] in the file"):
        load_generator(path)


def test_unknown_sg3_option_is_refused(tmp_path):
    G = small_generator()
    G.synthesis_kwargs["warp_speed"] = 9
    path = tmp_path / "odd.pkl"
    path.write_bytes(dumps_network_pickle(G))
    with pytest.raises(CheckpointError, match="odd.pkl: unsupported StyleGAN3 synthesis option warp_speed=9"):
        load_generator(path)


def test_export_writes_the_users_sg3_pickle_back_and_refuses_rosinality(tmp_path):
    path, data = official_pickle(tmp_path, "r16")
    G = load_generator(path)
    with torch.no_grad():
        G.synthesis.L3_36_32.weight.add_(0.1)  # as tuning changes it
    exported = save_official(G, path, tmp_path / "tuned.pkl")
    assert torch.equal(render(load_generator(exported)), render(G))
    assert "has only StyleGAN2, and this generator is stylegan3" in rosinality_incompatibility(G)


# ---------------------------------------------------------------------------------------------
# The generator in the lab: own format, deltas, batches, vmap, gradients.

def render(G, seed=0, count=2, **kwargs):
    z = torch.randn([count, G.z_dim], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, None, truncation_psi=0.7, noise_mode="const", **kwargs)


@pytest.mark.parametrize("radial", [False, True])
def test_own_format_round_trip_and_delta(radial, tmp_path):
    G = small_generator(radial=radial)
    loaded = load_generator(save_generator(G, tmp_path / "g.pt"))
    assert isinstance(loaded, Generator) and loaded.init_kwargs == G.init_kwargs
    assert torch.equal(render(loaded), render(G))
    tuned = load_generator(save_generator(G, tmp_path / "g.pt"))
    with torch.no_grad():
        tuned.synthesis.L2_36_16.weight.add_(0.05)
    manifest = save_tuned(tuned, G, tmp_path / "delta.pt")
    assert manifest["tensors"] == 1
    assert torch.allclose(render(load_tuned(tmp_path / "delta.pt", G)), render(tuned), atol=2e-3)


def test_generator_fresh_stylegan3_config_builds_one():
    from omegaconf import OmegaConf
    from pti_lab.generators import make_generator
    config = OmegaConf.load(REPO / "conf" / "generator" / "fresh_stylegan3.yaml")
    architecture = OmegaConf.to_container(config.architecture)
    G = make_generator(architecture=dict(architecture, img_resolution=16), seed=1)
    assert isinstance(G, Generator) and G.num_ws == 16 and G.init_kwargs["network"] == "stylegan3"
    assert torch.equal(make_generator(architecture=dict(architecture, img_resolution=16), seed=1).synthesis.input.freqs,
                       G.synthesis.input.freqs)  # seeded


def test_batch_renders_each_image_as_alone():
    G = small_generator(radial=True)
    together = render(G, count=3)
    alone = torch.cat([render(G, count=3)[k:k + 1] for k in range(3)])
    z = torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        each = torch.cat([G(z[k:k + 1], None, truncation_psi=0.7) for k in range(3)])
    assert torch.allclose(together, alone) and torch.allclose(together, each, atol=1e-5)


def test_vmap_over_stacked_weights_matches_each_generator():
    """Batched tuning renders image k with generator k through torch.func.vmap."""
    G = small_generator()
    names = ["L1_36_16.weight", "L14_16_3.bias"]
    stacked = {n: torch.stack([G.synthesis.get_parameter(n) + 0.1 * k for k in range(2)]) for n in names}
    ws = G.mapping(torch.randn([2, 16], generator=torch.Generator().manual_seed(1)), None)[:, None]
    shared = {n: p for n, p in G.synthesis.named_parameters() if n not in names}

    def one(weights, w):
        return torch.func.functional_call(G.synthesis, {**shared, **weights}, (w,), {"noise_mode": "const"})
    batched = torch.func.vmap(one)(stacked, ws)[:, 0]
    for k in range(2):
        expected = torch.func.functional_call(G.synthesis, {**shared, **{n: t[k] for n, t in stacked.items()}}, (ws[k],))
        assert torch.allclose(batched[k:k + 1], expected, atol=1e-5)


def test_gradients_reach_every_synthesis_parameter_and_the_latents():
    G = small_generator(radial=True).requires_grad_(True)
    ws = G.mapping(torch.randn([1, 16]), None).detach().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad.abs().sum() > 0
    missing = [n for n, p in G.synthesis.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


@pytest.mark.parametrize("radial", [False, True])
def test_transform_translates_the_image(radial):
    """Translating the input by k / R (the inverse transform's offset) shifts the image by k pixels:
    StyleGAN3 is translation equivariant whatever its weights (rotation needs trained R weights)."""
    G = small_generator(resolution=16, radial=radial)
    k, R = 3, G.img_resolution
    shift = torch.eye(3)
    shift[0, 2] = k / R
    plain, moved = render(G, count=1), render(G, count=1, transform=shift)
    change = (moved - plain).abs().mean().item()
    assert change > 0.005
    assert (moved[..., :, :R - k] - plain[..., :, k:]).abs().mean().item() < 0.1 * change
    assert torch.equal(G.synthesis.input.transform, torch.eye(3))  # the buffer is untouched


def test_batched_inversion_and_tuning_equal_one_at_a_time(cache_dir):
    """batch_size=K on StyleGAN3: no noise maps to optimise, vmap over stacked weights (tune_batch)."""
    G = small_generator(resolution=32, radial=True)
    other = small_generator(resolution=32, radial=True, seed=5)
    with torch.no_grad():
        targets = list(other(torch.randn([2, 16], generator=torch.Generator().manual_seed(4)), None).clamp(-1, 1).split(1))
    lpips = LPIPS(net="alex")
    inverter = WInverter(steps=4, lr=0.05, w_avg_samples=100, progress=False)
    inverted = inverter.invert_batch(G, targets, seed=3)
    pivots = [inversion.pivot for inversion in inverted]
    tuner = PivotalTuner(steps=4, lr=3e-3, lpips_threshold=None, progress=False)
    tuned = tuner.tune_batch(G, targets, pivots, lpips)
    for k in range(2):
        alone = inverter.invert(G, targets[k], seed=3)
        # Adam's first steps turn tiny differences of summation order into ~lr-sized ones (measured 3e-4 at 2 threads)
        assert torch.allclose(alone.pivot, pivots[k], atol=2e-3)
        assert alone.losses[0]["noise_reg"] == 0  # StyleGAN3 has no noise maps
        one = tuner.tune(G, targets[k], pivots[k], lpips)
        with torch.no_grad():
            image, image_alone = (result.generator.synthesis(pivots[k]) for result in (tuned[k], one))
            start = G.synthesis(pivots[k])
        assert (image - image_alone).abs().mean() < 0.02 * (image_alone - start).abs().mean()


# ---------------------------------------------------------------------------------------------
# A whole run on an official-format StyleGAN3 pickle.

@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sg3run")
    from pti_lab.data import SynthfacesTestSet
    faces = root / "faces"
    faces.mkdir()
    for sample in SynthfacesTestSet(kind="indomain", limit=2).samples(64):
        pixels = ((sample.image[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        PIL.Image.fromarray(pixels).save(faces / f"{sample.name}.png")
    path, _ = official_pickle(root, "r64")
    direction = root / "direction.pt"
    torch.save(torch.nn.functional.normalize(torch.randn([1, 16], generator=torch.Generator().manual_seed(3))), direction)
    return root, path, faces, direction


RUN = ["debug=smoke", "data.limit=null", "inverter.w_avg_samples=200", "reuse_inversions=false"]  # both faces
TUNING = ["tuner.lr=0.003", "tuner.lpips_threshold=null"]  # 10x PTI's lr, no early stop: tuning shows in 10-30 steps


def test_run_py_inverts_tunes_and_edits_an_sg3_pickle(run_inputs):
    root, path, faces, direction = run_inputs
    out = root / "run"
    run_py(f"hydra.run.dir={out}", f"generator.path={path}", "data=folder", f"data.path={faces}",
           "editor=interfacegan", f"editor.direction={direction}", "editor.strengths=[-2,2]", *RUN, *TUNING,
           "inverter.steps=30", "tuner.steps=30")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [] and summary["images"] == 2
    stages = summary["stages"]
    assert stages["tuning"]["lpips"] < stages["inversion"]["lpips"], stages
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    edits = [r for r in rows if r["stage"] == "edit"]
    assert sorted((r["edit"], r["strength"]) for r in edits) == [("direction", -2.0), ("direction", -2.0),
                                                                   ("direction", 2.0), ("direction", 2.0)]
    grid = np.asarray(PIL.Image.open(out / "images" / edits[0]["image"] / "edits.png"))
    assert grid.shape[:2] == (2 * 64, 4 * 64)
    # The tuned generator is stored as a delta of the StyleGAN3 base and renders the tuned image.
    image_dir = out / "images" / edits[0]["image"]
    tuned = load_tuned(image_dir / "tuned_G.pt", load_generator(path))
    with torch.no_grad():
        render = tuned.synthesis(torch.load(image_dir / "tuned_pivot.pt", weights_only=True)).clamp(-1, 1)
    saved = torch.tensor(np.array(PIL.Image.open(image_dir / "tuned.png"))).permute(2, 0, 1).float() / 127.5 - 1
    assert (render[0] - saved).abs().max() < 0.02


# ---------------------------------------------------------------------------------------------
# editor=transform: the input transform as an edit.

def test_image_transform_is_the_inverse_motion_and_composes():
    assert torch.allclose(image_transform(), torch.eye(3))
    assert torch.allclose(image_transform(angle=20) @ image_transform(angle=-20), torch.eye(3), atol=1e-6)
    turn = image_transform(angle=90)  # the image turns counter-clockwise: its input x axis comes from -y
    assert torch.allclose(turn[:2, :2], torch.tensor([[0.0, -1.0], [1.0, 0.0]]), atol=1e-6)
    first, then = image_transform(tx=0.1), image_transform(angle=30)
    assert torch.allclose(chained_transform(first, then), torch.linalg.inv(
        torch.linalg.inv(then.double()) @ torch.linalg.inv(first.double())).float(), atol=1e-6)


def test_transform_editor_moves_the_image_and_keeps_the_pivot():
    G = small_generator(resolution=16)
    ws = G.mapping(torch.randn([1, 16], generator=torch.Generator().manual_seed(2)), None)
    editor = TransformEditor(rotate=[15.0], translate_x=[3 / 16])
    editor.prepare(G)
    edits = editor.edits(G, ws).edits
    assert [(e.name, e.strength) for e in edits] == [("rotate", 15.0), ("translate_x", 3 / 16)]
    assert all(torch.equal(e.ws, ws) for e in edits)
    with torch.no_grad():
        plain = G.synthesis(ws)
        moved = G.synthesis(ws, transform=edits[1].transform)
    change = (moved - plain).abs().mean().item()
    assert (moved[..., :, 3:] - plain[..., :, :-3]).abs().mean().item() < 0.1 * change  # 3 px to the right


def test_transform_editor_refuses_a_stylegan2_generator():
    from tests.conftest import small_generator as stylegan2_generator
    with pytest.raises(BadInputError, match="editor=transform needs a StyleGAN3 generator"):
        TransformEditor(rotate=[10.0]).prepare(stylegan2_generator())
    with pytest.raises(BadInputError, match="needs at least one of rotate"):
        TransformEditor()


def test_sequential_edits_carry_the_transform():
    G = small_generator(resolution=16)
    ws = G.mapping(torch.randn([1, 16]), None)
    chain = SequentialEditor([TransformEditor(rotate=[10.0]), TransformEditor(translate_y=[0.1])])
    last = chain.edits(G, ws).edits[-1]
    assert last.name == "rotate+10>translate_y"
    assert torch.allclose(last.transform, image_transform(angle=10) @ image_transform(ty=0.1))


def test_run_py_transform_edits_of_an_sg3_pickle(run_inputs):
    root, path, faces, _ = run_inputs
    out = root / "run_transform"
    run_py(f"hydra.run.dir={out}", f"generator.path={path}", "data=folder", f"data.path={faces}",
           "editor=transform", "editor.rotate=[-20,20]", "editor.translate_x=[0.25]", "+method=w", *RUN, "data.limit=1",
           "inverter.steps=5")
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    edits = [(r["edit"], r["strength"]) for r in rows if r["stage"] == "edit"]
    assert edits == [("rotate", -20.0), ("rotate", 20.0), ("translate_x", 0.25)]
    grid = np.asarray(PIL.Image.open(out / "images" / rows[0]["image"] / "edits.png")).astype(float)
    reconstruction, shifted = grid[:, 64:128], grid[:, 4 * 64:5 * 64]
    assert np.abs(shifted[:, 16:] - reconstruction[:, :-16]).mean() < 0.2 * np.abs(shifted - reconstruction).mean()


@pytest.mark.slow
@pytest.mark.parametrize("stages", [
    ["mode=multi", "regularizer=locality", "inverter=w_plus", "editor=ganspace", "editor.num_samples=2000"],
    ["batch_size=2", "tuner=joint", "inverter.autocast=bf16", "tuner.autocast=bf16", "editor=styleclip", "editor.steps=5"],
], ids=["multi-locality-wplus-ganspace", "batch2-joint-bf16-styleclip"])
def test_run_py_other_methods_on_an_sg3_pickle(run_inputs, stages):
    root, path, faces, _ = run_inputs
    out = root / ("run_" + stages[0].replace("=", "_"))
    run_py(f"hydra.run.dir={out}", f"generator.path={path}", "data=folder", f"data.path={faces}", *RUN, *TUNING,
           "inverter.steps=10", "tuner.steps=10", *stages)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [] and summary["stages"]["tuning"]["lpips"] < summary["stages"]["inversion"]["lpips"]
    assert sum(json.loads(line)["stage"] == "edit" for line in (out / "results.jsonl").read_text().splitlines()) >= 4


def test_bench_needs_an_official_checkout(tmp_path):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "pti_lab.bench.stylegan3", "--official", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == \
        f"--official {tmp_path}: not a NVlabs/stylegan3 checkout (no training/networks_stylegan3.py)"


OFFICIAL_CHECKOUT = os.environ.get("PTI_LAB_OFFICIAL_STYLEGAN3")  # a local NVlabs/stylegan3 checkout, never shipped

WRITE_OFFICIAL_SNAPSHOT = """
import copy, pickle, sys, types, torch
from packaging.version import parse
sys.modules.setdefault("pkg_resources", types.SimpleNamespace(parse_version=parse))
import dnnlib
from training import augment, networks_stylegan2, networks_stylegan3
data = torch.load(sys.argv[1], weights_only=True)
kwargs = dnnlib.EasyDict(copy.deepcopy(data["init_kwargs"]))
kwargs.mapping_kwargs = dnnlib.EasyDict(kwargs.mapping_kwargs)
G = networks_stylegan3.Generator(**kwargs).eval().requires_grad_(False)
G.load_state_dict(data["state_dict"])
D = networks_stylegan2.Discriminator(c_dim=0, img_resolution=G.img_resolution, img_channels=3, channel_base=64,
                                     channel_max=16).eval().requires_grad_(False)
snapshot = dict(G=copy.deepcopy(G), D=D, G_ema=G, augment_pipe=augment.AugmentPipe(xflip=1, rotate=1, hue=1),
                training_set_kwargs=dict(path="ffhq.zip", resolution=G.img_resolution))
with open(sys.argv[2], "wb") as f:
    pickle.dump(snapshot, f)  # as training_loop.py writes network-snapshot-*.pkl
"""


@pytest.mark.skipif(not OFFICIAL_CHECKOUT, reason="set PTI_LAB_OFFICIAL_STYLEGAN3 to a local NVlabs/stylegan3 checkout")
@pytest.mark.parametrize("name", ["t16", "r16"])
def test_snapshot_written_by_the_official_code_loads_and_matches(name, tmp_path):
    import subprocess
    import sys
    path = tmp_path / f"network-snapshot-{name}.pkl"
    subprocess.run([sys.executable, "-c", WRITE_OFFICIAL_SNAPSHOT, str(GOLDEN_DIR / f"{name}.pt"), str(path)],
                   cwd=OFFICIAL_CHECKOUT, check=True, timeout=300)
    G, data = load_generator(path), golden(name)
    for case in data["cases"]:
        with torch.no_grad():
            img = G(data["z"], None, truncation_psi=case["truncation_psi"], truncation_cutoff=case["truncation_cutoff"],
                    noise_mode=case["noise_mode"], transform=case["transform"])
        assert (img - case["img"]).abs().max() < PARITY

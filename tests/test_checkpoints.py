"""load_generator: official pickles, rosinality checkpoints, our own format; hostile and broken files
(hostile ones for load_encoder too)."""

import argparse
import os
import pickle
import subprocess

import pytest
import torch

from pti_lab.errors import CheckpointError
from pti_lab.models import load_encoder, load_generator, save_generator
from pti_lab.models.checkpoints import url_cache_path
from tests.conftest import small_generator
from tests.official_pickle import BENIGN_SOURCE, dumps_network_pickle


def render(G, seed=0):
    z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, None, truncation_psi=0.7, noise_mode="const")


@pytest.fixture
def G():
    return small_generator(seed=1)


@pytest.fixture
def marker(tmp_path):
    """A file that hostile payloads try to create; it must never appear."""
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "code from the checkpoint was executed"


# ---------------------------------------------------------------------------------------------
# Formats that load.

def test_own_format_round_trip(G, tmp_path):
    path = save_generator(G, tmp_path / "g.pt")
    loaded = load_generator(path)
    assert loaded.init_kwargs == G.init_kwargs
    assert torch.equal(render(loaded), render(G))
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_own_format_version_is_checked(G, tmp_path):
    path = save_generator(G, tmp_path / "g.pt")
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_generator(path)


def test_official_network_pickle(G, tmp_path):
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(dumps_network_pickle(G))
    loaded = load_generator(path)
    assert loaded.init_kwargs == G.init_kwargs  # num_fp16_res dropped: it only picks a precision
    assert torch.equal(render(loaded), render(G))


def test_stylegan3_repo_stylegan2_network_loads(G, tmp_path):
    # The stylegan3 repo's networks_stylegan2 passes synthesis options flat and adds an option
    # that only picks the conv implementation.
    path = tmp_path / "sg3-repo-stylegan2.pkl"
    path.write_bytes(dumps_network_pickle(G, module_src=BENIGN_SOURCE.replace("conv2d_resample", "fma")))
    assert torch.equal(render(load_generator(path)), render(G))


@pytest.mark.parametrize("marker_kind", ["input_layer", "source"])
def test_stylegan2_settings_in_a_stylegan3_network_are_refused(G, tmp_path, marker_kind):
    # StyleGAN3 pickles load (tests/test_stylegan3.py); a network marked as StyleGAN3 (its input
    # layer, or the filtered_lrelu op in its source) is read as one, and StyleGAN2 settings do not fit.
    path = tmp_path / "sg3.pkl"
    if marker_kind == "input_layer":
        path.write_bytes(dumps_network_pickle(G, extra_synthesis_child="SynthesisInput"))
    else:
        path.write_bytes(dumps_network_pickle(G, module_src=BENIGN_SOURCE + "from torch_utils.ops import filtered_lrelu\n"))
    with pytest.raises(CheckpointError, match="sg3.pkl: unsupported StyleGAN3 synthesis option synthesis_kwargs="):
        load_generator(path)


def rosinality_checkpoint(G) -> dict:
    """G in rosinality stylegan2-pytorch's naming and shapes (conventions written out by hand)."""
    sd, src = {}, G.state_dict()
    for i in range(G.mapping.num_layers):
        sd[f"style.{i + 1}.weight"] = src[f"mapping.fc{i}.weight"]
        sd[f"style.{i + 1}.bias"] = src[f"mapping.fc{i}.bias"]
    sd["input.input"] = src["synthesis.b4.const"][None]

    def styled(dst, name, noise_index):
        sd[f"{dst}.conv.weight"] = src[f"{name}.weight"][None]
        sd[f"{dst}.conv.modulation.weight"] = src[f"{name}.affine.weight"]
        sd[f"{dst}.conv.modulation.bias"] = src[f"{name}.affine.bias"]
        sd[f"{dst}.noise.weight"] = src[f"{name}.noise_strength"].reshape(1)
        sd[f"{dst}.activate.bias"] = src[f"{name}.bias"]
        sd[f"noises.noise_{noise_index}"] = src[f"{name}.noise_const"][None, None]

    def rgb(dst, name):
        sd[f"{dst}.conv.weight"] = src[f"{name}.weight"][None]
        sd[f"{dst}.conv.modulation.weight"] = src[f"{name}.affine.weight"]
        sd[f"{dst}.conv.modulation.bias"] = src[f"{name}.affine.bias"]
        sd[f"{dst}.bias"] = src[f"{name}.bias"].reshape(1, -1, 1, 1)

    styled("conv1", "synthesis.b4.conv1", 0)
    rgb("to_rgb1", "synthesis.b4.torgb")
    for k, res in enumerate(G.synthesis.block_resolutions[1:]):
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", 2 * k + 1)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", 2 * k + 2)
        rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
        kernel = torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1]))
        sd[f"convs.{2 * k}.conv.blur.kernel"] = kernel / kernel.sum() * 4
        sd[f"to_rgbs.{k}.upsample.kernel"] = kernel / kernel.sum() * 4
    return {"g_ema": sd, "g": sd, "latent_avg": src["mapping.w_avg"],
            "args": argparse.Namespace(size=G.img_resolution, channel_multiplier=2)}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])  # legacy: torch < 1.6
def test_rosinality_checkpoint(G, tmp_path, zip_format):
    path = tmp_path / "550000.pt"
    torch.save(rosinality_checkpoint(G), path, _use_new_zipfile_serialization=zip_format)
    loaded = load_generator(path)
    assert loaded.synthesis.channel_max == 32 and loaded.img_resolution == 16
    assert torch.allclose(render(loaded), render(G), atol=1e-5)


def test_rosinality_without_latent_avg_estimates_it(G, tmp_path):
    ckpt = rosinality_checkpoint(G)
    del ckpt["latent_avg"]
    torch.save(ckpt, tmp_path / "g.pt")
    loaded = load_generator(tmp_path / "g.pt")
    z = torch.randn(20000, G.z_dim, generator=torch.Generator().manual_seed(5))
    expected = G.mapping(z, None)[:, 0].mean(0)
    assert (loaded.mapping.w_avg - expected).abs().max() < 0.1 * expected.abs().max()


def test_url_uses_cache_then_fails_clearly(G, tmp_path, monkeypatch):
    monkeypatch.setenv("PTI_LAB_CACHE", str(tmp_path / "cache"))
    url = "http://127.0.0.1:9/nets/ffhq.pkl"  # discard port: nothing listens
    with pytest.raises(CheckpointError, match=r"download failed .* place it at .*ffhq\.pkl"):
        load_generator(url)
    cached = url_cache_path(url)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(dumps_network_pickle(G))
    assert torch.equal(render(load_generator(url)), render(G))


# ---------------------------------------------------------------------------------------------
# Hostile files: refused, nothing runs.

class RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class Calls:
    """Unpickling this calls function(*args), as the payloads in hostile checkpoints do."""

    def __init__(self, function, args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


# The calls attackers make, by the name the refusal must give; each would create `marker` if it ran.
HOSTILE_CALLS = {
    "os.system": lambda marker: Calls(os.system, (f"echo pwned > {marker}",)),
    "subprocess.Popen": lambda marker: Calls(subprocess.Popen, (["sh", "-c", f"echo pwned > {marker}"],)),
    "builtins.exec": lambda marker: Calls(exec, (f"open({str(marker)!r}, 'w').write('pwned')",)),
    "builtins.eval": lambda marker: Calls(eval, (f"__import__('os').system('echo pwned > {marker}')",)),
    "io.open": lambda marker: Calls(open, (str(marker), "w")),  # builtins.open is io.open
}

# How a checkpoint is written: torch's zip and legacy formats, plain pickles of protocol 2 (Python 2
# names: __builtin__, commands) and 5 (what pickle.dumps writes; official StyleGAN pickles are plain).
FILE_WRITERS = {
    "torch zip": lambda obj, path: torch.save(obj, path),
    "torch legacy": lambda obj, path: torch.save(obj, path, _use_new_zipfile_serialization=False),
    "pickle protocol 2": lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=2)),
    "pickle protocol 5": lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=5)),
}

# Words of torch's advice to load the file unsafely.
UNSAFE_ADVICE = ("weights_only", "re-running", "will likely succeed", "trust")


def assert_safe_refusal(message: str, path, names: str) -> None:
    """One line naming the file and `names`, and no advice to load the file unsafely."""
    assert "\n" not in message and message.startswith(str(path)), message
    assert names in message, message
    reason = message[len(str(path)):].lower()  # the path holds the test's name
    assert not [words for words in UNSAFE_ADVICE if words in reason], message


@pytest.mark.parametrize("file_format", FILE_WRITERS)
@pytest.mark.parametrize("loader", [load_generator, load_encoder], ids=["load_generator", "load_encoder"])
@pytest.mark.parametrize("call", HOSTILE_CALLS)
def test_hostile_file_is_refused_naming_the_call(tmp_path, marker, call, loader, file_format):
    path = tmp_path / "evil.pt"
    FILE_WRITERS[file_format]({"state_dict": HOSTILE_CALLS[call](marker)}, path)
    with pytest.raises(CheckpointError) as refused:
        loader(path)
    # torch's reader (load_encoder) stops at protocol 5's first opcode (FRAME), before any global.
    names = "Unsupported operand 149" if (loader, file_format) == (load_encoder, "pickle protocol 5") else call
    assert_safe_refusal(str(refused.value), path, names)


def hostile_readers() -> dict:
    """Every other reader of a .pt file a user may hand in: name -> read(path)."""
    from pti_lab.editing.directions import read_file
    from pti_lab.models.arcface import load_ir_se50
    from pti_lab.models.delta import load_tuned
    from pti_lab.models.lpips import read_torch_state_dict
    from pti_lab.synthfaces.predictor import read_weights
    return {
        "tuned generator delta": lambda path: load_tuned(path, small_generator()),
        "LPIPS weights": read_torch_state_dict,
        "IR-SE50 weights": load_ir_se50,
        "direction file": lambda path: read_file(path, "editor.direction"),
        "synthfaces weights": lambda path: read_weights(str(path), "predictor.pt", "predictor", "pti_lab.train.x"),
    }


@pytest.mark.parametrize("reader", ["tuned generator delta", "LPIPS weights", "IR-SE50 weights", "direction file",
                                    "synthfaces weights"])
@pytest.mark.parametrize("call", ["os.system", "builtins.exec"])
def test_every_reader_of_torch_files_refuses_a_hostile_one_naming_the_call(tmp_path, marker, call, reader):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": HOSTILE_CALLS[call](marker)}, path)
    with pytest.raises(CheckpointError) as refused:
        hostile_readers()[reader](path)
    assert_safe_refusal(str(refused.value), path, call)


# torch messages whose detail is not recognised: the advice in them must not come through.
_POSIX_REFUSAL = ("Weights only load failed. In PyTorch 2.6, we changed the default value of the `weights_only` "
                  "argument in `torch.load` from `False` to `True`. Re-running `torch.load` with `weights_only` "
                  "set to `False` will likely succeed, but it can result in arbitrary code execution. Do it only if "
                  "you got the file from a trusted source.\n\n\n{detail}\n\nCheck the documentation of torch.load")


@pytest.mark.parametrize("detail", [
    "Some check torch adds later.",
    "WeightsUnpickler error: Can only build Tensor, Parameter, OrderedDict or types allowlisted via "
    "`add_safe_globals`, but got <class 'x.Y'>. Please use safe_globals if you trust this class.",
])
def test_unrecognised_weights_only_refusal_gives_no_unsafe_advice(tmp_path, monkeypatch, detail):
    path = tmp_path / "odd.pt"
    torch.save({}, path)

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError(_POSIX_REFUSAL.format(detail=detail))

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(CheckpointError) as refused:
        load_encoder(path)
    assert_safe_refusal(str(refused.value), path, "holds more than tensors and plain data")


def test_storage_bytes_with_code_are_refused(G, tmp_path, marker):
    # torch.storage._load_from_bytes is allowed, but its payload is read as data only.
    evil_bytes = pickle.dumps(RunsShell(f"touch {marker}"))
    path = tmp_path / "evil.pkl"
    path.write_bytes(dumps_network_pickle(G, extra={"x": _CallLoadFromBytes(evil_bytes)}))
    with pytest.raises(CheckpointError, match="evil.pkl"):
        load_generator(path)


class _CallLoadFromBytes:
    def __init__(self, data):
        self.data = data

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.data,)


@pytest.mark.parametrize("payload,why", [
    ("import os\nos.system('touch {marker}')\n", "has a top-level Expr statement"),
    ("import os\ndef f(x=os.system('touch {marker}')):\n    pass\n", "runs code in a default argument"),
    ("import antigravity\n", "imports 'antigravity'"),
    ("import torch\nclass G(torch.nn.Module):\n    x = __import__('os').system('touch {marker}')\n",
     "runs code in a module-level assignment"),
    ("import os\n@os.system('touch {marker}')\ndef f():\n    pass\n", "runs code in a decorator"),
    ("for _ in [0]:\n    open('{marker}', 'w')\n", "has a top-level For statement"),
])
def test_module_source_with_side_effects_is_refused(G, tmp_path, marker, payload, why):
    path = tmp_path / "tampered.pkl"
    path.write_bytes(dumps_network_pickle(G, module_src=BENIGN_SOURCE + payload.format(marker=marker)))
    with pytest.raises(CheckpointError, match=f"tampered.pkl: embedded source of Generator {why}"):
        load_generator(path)


# ---------------------------------------------------------------------------------------------
# Broken files: one line naming the file and the first problem.

def test_truncated_pickle(G, tmp_path):
    data = dumps_network_pickle(G)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pkl: truncated or corrupt pickle"):
        load_generator(path)


def test_truncated_torch_file(G, tmp_path):
    path = save_generator(G, tmp_path / "g.pt")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"g\.pt: .*(truncated or corrupt|not a checkpoint)"):
        load_generator(path)


@pytest.mark.parametrize("content,match", [
    (b"", "file is empty"),
    (b"\x89PNG\r\n\x1a\n....", "not a checkpoint"),
    (b"hello world", "not a checkpoint"),
])
def test_not_a_checkpoint(tmp_path, content, match):
    path = tmp_path / "thing.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"thing.bin: {match}"):
        load_generator(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pkl: no such file"):
        load_generator(tmp_path / "nope.pkl")


def test_pickle_without_generator(tmp_path):
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps({"D": 1, "epoch": 3}))
    with pytest.raises(CheckpointError, match=r"no official generator \(found \['D', 'epoch'\]\)"):
        load_generator(path)


def test_torch_file_that_is_not_a_generator(tmp_path):
    torch.save({"model": {"w": torch.zeros(3)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"not a generator checkpoint \(found \['model'\]\)"):
        load_generator(tmp_path / "other.pt")


def _own_payload(G):
    return {"format": "pti-lab/generator", "version": 1, "init_kwargs": G.init_kwargs,
            "state_dict": dict(G.state_dict())}


def test_missing_tensor(G, tmp_path):
    payload = _own_payload(G)
    del payload["state_dict"]["synthesis.b8.conv0.weight"]
    torch.save(payload, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="g.pt: missing tensor 'synthesis.b8.conv0.weight'"):
        load_generator(tmp_path / "g.pt")


def test_misshaped_tensor(G, tmp_path):
    payload = _own_payload(G)
    payload["state_dict"]["synthesis.b8.conv0.weight"] = torch.zeros(3, 3)
    torch.save(payload, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match=r"'synthesis.b8.conv0.weight' has shape \[3, 3\], the network expects \[32, 32, 3, 3\]"):
        load_generator(tmp_path / "g.pt")


def test_unexpected_tensor(G, tmp_path):
    payload = _own_payload(G)
    payload["state_dict"]["synthesis.b32.const"] = torch.zeros(1)
    torch.save(payload, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="unexpected tensor 'synthesis.b32.const'"):
        load_generator(tmp_path / "g.pt")


def test_nan_weights(G, tmp_path):
    payload = _own_payload(G)
    payload["state_dict"]["mapping.fc0.weight"] = torch.full_like(payload["state_dict"]["mapping.fc0.weight"], float("nan"))
    torch.save(payload, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="'mapping.fc0.weight' contains NaN"):
        load_generator(tmp_path / "g.pt")


def test_rosinality_missing_tensor(G, tmp_path):
    ckpt = rosinality_checkpoint(G)
    del ckpt["g_ema"]["convs.1.activate.bias"]
    torch.save(ckpt, tmp_path / "r.pt")
    with pytest.raises(CheckpointError, match="r.pt: rosinality checkpoint lacks tensor 'convs.1.activate.bias'"):
        load_generator(tmp_path / "r.pt")


import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch

from pti_lab.models import Generator
from pti_lab.runtime import keep_freed_memory

os.environ.setdefault("WANDB_MODE", "disabled")
if "OMP_NUM_THREADS" not in os.environ:  # set: torch follows it (the suite must pass with 1 and 2)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
keep_freed_memory()  # as the entry points do

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Read-only reference files shipped beside the repository (../shared), as in CI.
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


# The shipped synthfaces generator's architecture at test size (64 px, a few channels): trains in seconds.
TINY_GENERATOR = dict(z_dim=40, c_dim=0, w_dim=32, img_resolution=64, img_channels=3,
                      mapping_kwargs=dict(num_layers=2, lr_multiplier=1.0),
                      synthesis_kwargs=dict(channel_base=256, channel_max=32))


@pytest.fixture
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.fail(f"{SHARED_FIXTURES} is missing: clone the repository next to shared/")
    return SHARED_FIXTURES


def run_py(*args: str, env: dict | None = None, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """`python run.py ARGS` in the repository with W&B disabled (whatever the calling shell says);
    `env` replaces the environment (W&B still disabled). With `check`, a non-zero exit fails the
    test with the end of stderr."""
    environment = {**(os.environ if env is None else env), "WANDB_MODE": "disabled"}
    result = subprocess.run([sys.executable, "run.py", *args], cwd=REPO, env=environment, capture_output=True,
                            text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """W statistics and pivots go to a temporary cache, never to the user's (one per test module)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PTI_LAB_CACHE", str(path))
        yield path


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """wandb's own files (settings, cache) go to a temporary directory, never the user's home."""
    for key in ("WANDB_DIR", "WANDB_API_KEY", "WANDB_ENTITY", "WANDB_PROJECT"):
        monkeypatch.delenv(key, raising=False)
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


def small_generator(seed: int = 0, **synthesis) -> Generator:
    """A 16 px StyleGAN2 generator of seeded fresh weights; `synthesis` changes its synthesis_kwargs."""
    torch.manual_seed(seed)
    synthesis_kwargs = dict(channel_base=256, channel_max=32)
    synthesis_kwargs.update(synthesis)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=synthesis_kwargs)
    with torch.no_grad():  # give the zero-initialised parameters values, so that all of them matter
        for name, p in G.named_parameters():
            if name.endswith(("bias", "noise_strength")):
                p.add_(torch.randn_like(p) * 0.3)
        G.mapping.w_avg.normal_()
    return G.eval()


@pytest.fixture(scope="module")
def one_thread():
    """One thread: VGG16 on 16 px images is too small to split, and on a shared machine two OpenMP
    threads wait on each other (measured: 38 ms per distance step with one thread, 800 ms with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inversion_generator() -> torch.nn.Module:
    """small_generator without noise and with its output scaled into about [-1, 1], so that its own
    images are valid, reachable targets."""
    G = small_generator()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.zero_()
            if ".torgb." in name and ".affine." not in name:
                p.mul_(0.3)
    return G


def tuning_generator() -> Generator:
    """A 32 px generator whose own images are in [-1, 1]: what the tuning tests tune."""
    torch.manual_seed(3)
    G = Generator(32, 0, 32, 32, 3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=512, channel_max=32)).eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(500, 32), None)[:, 0].mean(0))
        for res in G.synthesis.block_resolutions:  # fresh weights overshoot [-1, 1] by far; trained ones do not
            getattr(G.synthesis, f"b{res}").torgb.weight.mul_(0.12)
    assert G(torch.randn(64, 32), None, noise_mode="const").abs().max() < 1.5
    return G


def out_of_domain_target(G, seed=0):
    """G's own image of a latent plus a bright square that no latent explains: the 'hat' case."""
    w = G.mapping(torch.randn(1, 32, generator=torch.Generator().manual_seed(seed)), None)
    with torch.no_grad():
        image = G.synthesis(w, noise_mode="const").clamp(-1, 1)
    image[:, :, 4:14, 8:24] = torch.tensor([1.0, -0.6, 0.2]).reshape(1, 3, 1, 1)
    return image, w


class NaNDistance(torch.nn.Module):
    """LPIPS whose distance (computed once per tuning step) turns NaN at its `at_call`-th call, for the images
    `rows` of that call (None: all); with `size`, only calls on `size` images count (e.g. the batch of a run,
    not the driver's memory probe before it)."""

    def __init__(self, lpips: torch.nn.Module, at_call: int, rows: Optional[list[int]] = None,
                 size: Optional[int] = None):
        super().__init__()
        self.lpips, self.at_call, self.rows, self.size, self.calls = lpips, at_call, rows, size, 0
        self.feature_maps_unchecked, self.forward_unchecked = lpips.feature_maps_unchecked, lpips.forward_unchecked

    def distance(self, feats_x: list[torch.Tensor], feats_y: list[torch.Tensor]) -> torch.Tensor:
        value = self.lpips.distance(feats_x, feats_y)  # [N, 1, 1, 1]
        if self.size is not None and len(value) != self.size:
            return value
        self.calls += 1
        if self.calls != self.at_call:
            return value
        hit = torch.zeros(len(value), dtype=torch.bool)
        hit[slice(None) if self.rows is None else self.rows] = True
        return torch.where(hit.reshape(-1, 1, 1, 1), torch.full_like(value, float("nan")), value)

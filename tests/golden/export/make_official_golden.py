"""Make official_tuned.pt: what NVIDIA's own loader makes of a pickle written by `--format official`.

This script is ours; it imports a local checkout of NVlabs/stylegan2-ada-pytorch given with
--official, which is never copied into this repository. It

  1. builds the official training.networks.Generator with the weights of tests/test_export.py's
     official_base_generator() and pickles it with the official persistence (a genuine network
     pickle, NVIDIA's network source embedded, G/D/G_ema/training_set_kwargs/augment_pipe);
  2. writes it back with the tuned_copy() weights through pti_lab's save_official;
  3. loads that file with the official legacy.load_network_pkl and records G_ema's mapping of
     seeded z and its images of golden_latents() (noise_mode='const', force_fp32=True);
  4. prints how far pti-lab's generator of the same weights is from those.

Command used (torch 2.13.0+cpu, from the repository root, with a checkout of
github.com/NVlabs/stylegan2-ada-pytorch at d72cc7d in /tmp/sg2ada):

    OMP_NUM_THREADS=1 .venv/bin/python tests/golden/export/make_official_golden.py --official /tmp/sg2ada

It printed:

    nvidia loader: G_ema Generator, D Discriminator, keys ['D', 'G', 'G_ema', 'augment_pipe', 'training_set_kwargs']
    G (not tuned) equal to the base: True
    official images vs pti-lab's tuned generator: max |difference| 5.0e-06
    official mapping vs pti-lab's: max |difference| 0.0e+00
"""

import argparse
import copy
import io
import pickle
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, for tests.test_export

from pti_lab.models.checkpoint_writers import save_official  # noqa: E402
from tests.test_export import golden_latents, official_base_generator, tuned_copy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", required=True, type=Path, help="checkout of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--work", type=Path, default=Path("/tmp/official_export_golden"))
    args = parser.parse_args()
    sys.path.insert(0, str(args.official))
    import dnnlib  # noqa: F401  (official code, imported from the checkout)
    import legacy
    from training.networks import Discriminator, Generator as OfficialGenerator

    ours = official_base_generator()
    kwargs = ours.init_kwargs
    official = OfficialGenerator(**kwargs).eval().requires_grad_(False)
    official.load_state_dict(ours.state_dict())
    D = Discriminator(c_dim=0, img_resolution=kwargs["img_resolution"], img_channels=3,
                      channel_base=512, channel_max=32).eval().requires_grad_(False)
    args.work.mkdir(parents=True, exist_ok=True)
    base_file, tuned_file = args.work / "base.pkl", args.work / "tuned.pkl"
    snapshot = dict(G=copy.deepcopy(official), D=D, G_ema=copy.deepcopy(official), augment_pipe=None,
                    training_set_kwargs=dnnlib.EasyDict(path="ffhq.zip", resolution=32))
    with open(base_file, "wb") as f:
        pickle.dump(snapshot, f)

    tuned = tuned_copy(ours)
    save_official(tuned, base_file, tuned_file)
    with open(tuned_file, "rb") as f:
        data = legacy.load_network_pkl(f)
    G = data["G_ema"]
    print(f"nvidia loader: G_ema {type(G).__name__}, D {type(data['D']).__name__}, keys {sorted(data)}")
    base_sd = ours.state_dict()
    print("G (not tuned) equal to the base:",
          all(torch.equal(t, base_sd[k]) for k, t in data["G"].state_dict().items()))

    ws = golden_latents(ours)
    z = torch.randn([2, ours.z_dim], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        images = G.synthesis(ws, noise_mode="const", force_fp32=True)
        ws_nvidia = G.mapping(z, None, truncation_psi=0.8)
        ours_images = tuned.synthesis(ws, noise_mode="const")
        ours_ws = tuned.mapping(z, None, truncation_psi=0.8)
    print(f"official images vs pti-lab's tuned generator: max |difference| {(images - ours_images).abs().max():.1e}")
    print(f"official mapping vs pti-lab's: max |difference| {(ws_nvidia - ours_ws).abs().max():.1e}")
    buffer = io.BytesIO()
    torch.save({"ws": ws, "images": images, "z": z, "ws_nvidia": ws_nvidia,
                "meta": "stylegan2-ada-pytorch legacy.load_network_pkl of a pti_lab save_official pickle; "
                        "see make_official_golden.py"}, buffer)
    (HERE / "official_tuned.pt").write_bytes(buffer.getvalue())


if __name__ == "__main__":
    main()

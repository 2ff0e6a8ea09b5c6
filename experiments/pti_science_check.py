"""Science check of PTI on the synthfaces out-of-domain set (issue: PTI core).

    python experiments/pti_science_check.py [--images 8] [--out outputs/science] [-- extra overrides]

Runs, through run.py (so every number is also in the run directories):
  1. ablations A, C, D on `--images` out-of-domain images;
  2. multi-ID tuning of `--multi-images` images without and with locality regularisation;
and checks the paper's claims:
  * A's tuned LPIPS <= 0.5 x A's W-inversion LPIPS (tuning recovers out-of-domain detail);
  * A beats C and D after tuning (the pivot matters);
  * locality regularisation lowers the multi-ID drift (`locality.lpips`) by >= 30%.
Prints a table and PASS/FAIL per claim; exit status 1 if any claim fails. Re-running resumes.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str]) -> None:
    command = [sys.executable, str(REPO / "run.py"), *args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="images per ablation")
    parser.add_argument("--multi-images", type=int, default=8, help="images tuned together for the locality check")
    parser.add_argument("--out", default="outputs/science_check")
    parser.add_argument("overrides", nargs="*", help="extra run.py overrides, e.g. device=cuda logger=none")
    args = parser.parse_args()
    out = (REPO / args.out).resolve()
    common = ["tuner.progress=false", *args.overrides]

    for ablation in "ACD":
        run([f"+ablation={ablation}", f"data.limit={args.images}", f"hydra.run.dir={out}/ablation_{ablation}", *common])
    for regularizer in ("none", "locality"):
        run(["mode=multi", f"regularizer={regularizer}", f"data.limit={args.multi_images}",
             f"hydra.run.dir={out}/multi_{regularizer}", *common])

    results = {name: summary(out / f"ablation_{name}") for name in "ACD"}
    drift = {name: summary(out / f"multi_{name}")["locality"]["lpips"] for name in ("none", "locality")}
    print(f"\n{'ablation':<10}{'inversion LPIPS':>17}{'tuned LPIPS':>13}{'tuned MSE':>11}")
    for name, s in results.items():
        print(f"{name:<10}{s['stages']['inversion']['lpips']:>17.4f}{s['stages']['tuning']['lpips']:>13.4f}"
              f"{s['stages']['tuning']['mse']:>11.4f}")
    print(f"\nmulti-ID drift locality.lpips: without {drift['none']:.4f}, with regularisation {drift['locality']:.4f}")

    a_inv, a_tuned = results["A"]["stages"]["inversion"]["lpips"], results["A"]["stages"]["tuning"]["lpips"]
    claims = {
        "A tuned LPIPS <= 0.5 x A inversion LPIPS": a_tuned <= 0.5 * a_inv,
        "A beats C after tuning": a_tuned < results["C"]["stages"]["tuning"]["lpips"],
        "A beats D after tuning": a_tuned < results["D"]["stages"]["tuning"]["lpips"],
        "locality regularisation lowers drift by >= 30%": drift["locality"] <= 0.7 * drift["none"],
    }
    for claim, ok in claims.items():
        print(f"{'PASS' if ok else 'FAIL'}  {claim}")
    return 0 if all(claims.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

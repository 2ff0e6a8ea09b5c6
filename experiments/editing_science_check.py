"""Science check of PTI's central claim on the synthfaces out-of-domain set (issue: Editing).

    python experiments/editing_science_check.py [--images 8] [--out outputs/editing_science_check] [-- overrides]

Runs, through run.py (so every number is also in the run directories):
  1. PTI: W inversion + pivotal tuning, then InterfaceGAN edits (smile, age, pose) at several
     strengths, rendered with each image's tuned generator;
  2. the baseline: W+ inversion without tuning, the same edits, rendered with the original generator.
Both runs score every edit with the synthfaces predictor: `target_delta` (change of the edited
attribute) and `id_sim` (identity between the reconstruction and the edit; `id_sim_target`: between
the real image and the edit).

Edits of equal strength do not change the attribute equally in both runs, so the comparison is
made at equal `target_delta`: per direction and sign, the mean id_sim is interpolated linearly as a
function of |mean target_delta| (through id_sim = 1 at no change), at the half and the full change
that both runs reach. Claim: PTI keeps a higher id_sim than W+ at equal target_delta, for each of
smile, age and pose. Prints a table and PASS/FAIL; exit status 1 if the claim fails. Re-running resumes.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIRECTIONS = ("smile", "age", "pose")
STRENGTHS = (-4.0, -2.0, 2.0, 4.0)
METHODS = {"pti": ["inverter=w", "tuner=pivotal"], "w_plus": ["inverter=w_plus", "tuner=none"]}


def run(args: list[str]) -> None:
    command = [sys.executable, str(REPO / "run.py"), *args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def curve(edits: dict, sign: float, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(|target_delta|, metric) points of one direction for strengths of one sign, from no change outwards."""
    points = [(0.0, 1.0)]
    for strength, metrics in edits.items():
        if float(strength) * sign > 0 and metrics.get(key) is not None:
            points.append((abs(metrics["target_delta"]), metrics[key]))
    points.sort()
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def compare(edits_a: dict, edits_b: dict, key: str) -> list[tuple]:
    """Rows (sign, level, metric a, metric b) at half and all of the |target_delta| both runs reach."""
    rows = []
    for sign in (-1.0, 1.0):
        (xa, ya), (xb, yb) = curve(edits_a, sign, key), curve(edits_b, sign, key)
        reach = min(xa.max(), xb.max())
        if reach <= 0:
            continue
        # np.interp needs increasing x: the change grows with the strength (else the edit fails).
        for level in (reach / 2, reach):
            rows.append((sign, level, float(np.interp(level, xa, ya)), float(np.interp(level, xb, yb))))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="out-of-domain images")
    parser.add_argument("--out", default="outputs/editing_science_check")
    parser.add_argument("overrides", nargs="*", help="extra run.py overrides, e.g. device=cuda logger=none")
    args = parser.parse_args()
    out = (REPO / args.out).resolve()
    edit = ["editor=interfacegan", f"editor.direction=[{','.join(DIRECTIONS)}]",
            f"editor.strengths=[{','.join(f'{s:g}' for s in STRENGTHS)}]", f"data.limit={args.images}",
            "preview.count=0"]
    for method, choice in METHODS.items():
        run([*choice, *edit, f"hydra.run.dir={out}/{method}", *args.overrides])
    summaries = {method: json.loads((out / method / "summary.json").read_text()) for method in METHODS}

    print(f"\nInterfaceGAN edits of {args.images} synthfaces_ood images; mean over images. "
          f"PTI = W pivot + tuned G; W+ = W+ inversion, original G.")
    print("reconstruction LPIPS: PTI %.3f, W+ %.3f" % (summaries["pti"]["stages"]["tuning"]["lpips"],
                                                       summaries["w_plus"]["stages"]["inversion"]["lpips"]))
    print(f"\n{'edit':6} {'strength':>8} | {'PTI delta':>9} {'id_sim':>6} {'id_tgt':>6} | "
          f"{'W+ delta':>9} {'id_sim':>6} {'id_tgt':>6}")
    for name in DIRECTIONS:
        for strength in STRENGTHS:
            cells = []
            for method in METHODS:
                m = summaries[method]["edits"][name][f"{strength:g}"]
                cells.append(f"{m['target_delta']:+9.3f} {m['id_sim']:6.3f} {m['id_sim_target']:6.3f}")
            print(f"{name:6} {strength:+8g} | {cells[0]} | {cells[1]}")

    print(f"\nAt equal |target_delta| (interpolated): id_sim (reconstruction vs edit) and id_sim_target "
          f"(real image vs edit)")
    print(f"{'edit':6} {'side':>4} {'|delta|':>7} | {'PTI id_sim':>10} {'W+ id_sim':>9} | {'PTI id_tgt':>10} {'W+ id_tgt':>9}")
    wins, total, failed = 0, 0, []
    for name in DIRECTIONS:
        edits = {method: summaries[method]["edits"][name] for method in METHODS}
        by_sim = compare(edits["pti"], edits["w_plus"], "id_sim")
        by_target = compare(edits["pti"], edits["w_plus"], "id_sim_target")
        direction_wins = 0
        for (sign, level, pti, wplus), (_, _, pti_t, wplus_t) in zip(by_sim, by_target):
            print(f"{name:6} {'+' if sign > 0 else '-':>4} {level:7.3f} | {pti:10.3f} {wplus:9.3f} | {pti_t:10.3f} {wplus_t:9.3f}")
            direction_wins += pti > wplus
            total += 1
        wins += direction_wins
        if direction_wins * 2 <= len(by_sim):
            failed.append(name)
    verdict = "PASS" if not failed else "FAIL"
    print(f"\nclaim: PTI keeps higher id_sim than W+ at equal target_delta for smile, age and pose: {verdict} "
          f"(PTI higher at {wins} of {total} comparison points{'; not for ' + ', '.join(failed) if failed else ''})")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())

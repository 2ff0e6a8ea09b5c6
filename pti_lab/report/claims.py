"""The paper's claims, checked on the runs of a sweep: each a function of the runs' numbers that
returns (status, evidence), status PASS, FAIL or "not run" when the sweep lacks the runs it needs.

Runs are recognised by their group choices: PTI = W inversion + pivotal tuning, W = W inversion
without tuning, W+ = W+ inversion without tuning; ablations by their `ablation` choice; the
locality comparison by multi-ID runs that report a drift.
"""

from typing import Callable, Optional

from pti_lab.report.numbers import RunNumbers, compare_at_equal_change

PASS, FAIL, NOT_RUN = "PASS", "FAIL", "not run"
TUNED_TO_INVERSION_LPIPS = 0.5     # tuned LPIPS at most this fraction of the W-inversion LPIPS
DRIFT_CUT = 0.3                    # the locality regulariser lowers the drift by at least this fraction
EQUAL_FIT_LPIPS = 0.02             # reconstruction LPIPS closer than this: the runs fit equally well


def role(run: RunNumbers) -> Optional[str]:
    """PTI (without regulariser), W or W+ for runs of one image at a time, by their group choices; None for others."""
    choices = run.job.choices
    if run.job.mode != "single" or choices.get("regularizer") not in (None, "none"):
        return None
    roles = {("w", "pivotal"): "PTI", ("w", "none"): "W", ("w_plus", "none"): "W+"}
    return roles.get((choices.get("inverter"), choices.get("tuner")))


def verdict(passed: list[bool], evidence: list[str], needs: str) -> tuple[str, str]:
    """PASS when every comparison holds, FAIL when one does not, NOT_RUN (saying what it needs) when none was made."""
    if not passed:
        return NOT_RUN, needs
    return (PASS if all(passed) else FAIL), "; ".join(evidence)


def name(run: RunNumbers) -> str:
    return f"{run.job.name} ({run.job.experiment}, {run.job.method}, {run.job.data})"


def tuned_halves_inversion_lpips(runs: list[RunNumbers]) -> tuple[str, str]:
    """PTI's tuned LPIPS <= 0.5 x the LPIPS of its own W inversion (the same images)."""
    evidence, passed = [], []
    for run in runs:
        tuned, inverted = run.reconstruction["lpips"].mean, run.inversion["lpips"].mean
        if role(run) != "PTI" or run.job.final_stage != "tuning" or tuned is None or inverted is None:
            continue
        passed.append(tuned <= TUNED_TO_INVERSION_LPIPS * inverted)
        evidence.append(f"{name(run)}: tuned {tuned:.4f} vs W inversion {inverted:.4f} (ratio {tuned / inverted:.2f})")
    return verdict(passed, evidence, "needs a PTI run (inverter=w, tuner=pivotal) with inversion and tuning rows")


def ablation_a_beats_c_and_d(runs: list[RunNumbers]) -> tuple[str, str]:
    """Ablation A reconstructs better than C and D: lower LPIPS and higher identity, same data set."""
    by_data: dict[tuple, dict[str, RunNumbers]] = {}
    for run in runs:
        if run.job.choices.get("ablation") in ("A", "C", "D"):
            by_data.setdefault((run.job.experiment, run.job.data), {})[run.job.choices["ablation"]] = run
    evidence, passed = [], []
    for (experiment, data), ablations in by_data.items():
        if len(ablations) < 3:
            continue
        lpips = {k: ablations[k].reconstruction["lpips"].mean for k in "ACD"}
        identity = {k: ablations[k].reconstruction["id_sim"].mean for k in "ACD"}
        if None in lpips.values():
            continue
        wins = [lpips["A"] < lpips[k] for k in "CD"]
        text = f"{experiment}, {data}: LPIPS A {lpips['A']:.4f}, C {lpips['C']:.4f}, D {lpips['D']:.4f}"
        if None in identity.values():
            text += "; identity not measured"
        else:
            wins += [identity["A"] > identity[k] for k in "CD"]
            text += f"; identity A {identity['A']:.3f}, C {identity['C']:.3f}, D {identity['D']:.3f}"
        passed.append(all(wins))
        evidence.append(text)
    return verdict(passed, evidence, "needs ablations A, C and D on the same data set")


def locality_cuts_drift(runs: list[RunNumbers]) -> tuple[str, str]:
    """With the locality regulariser the drift is >= 30% lower than without, at the same identity
    count; the runs should fit equally well (reconstruction LPIPS within 0.02), else the fit difference is told."""
    pairs: dict[tuple, dict[str, RunNumbers]] = {}
    for run in runs:
        if "drift_lpips" in run.drift and run.regularizer in ("none", "locality"):
            pairs.setdefault((run.job.data, run.identities), {})[run.regularizer] = run
    evidence, passed = [], []
    for (data, identities), pair in sorted(pairs.items()):
        if len(pair) < 2:
            continue
        without, with_ = pair["none"].drift["drift_lpips"].mean, pair["locality"].drift["drift_lpips"].mean
        cut = 1 - with_ / without if without > 0 else 0.0
        passed.append(cut >= DRIFT_CUT)
        text = f"{data}, {identities} identities: drift {without:.4f} -> {with_:.4f} ({cut:.0%} lower)"
        fits = pair["none"].reconstruction["lpips"].mean, pair["locality"].reconstruction["lpips"].mean
        if None not in fits:
            gap = fits[1] - fits[0]
            text += (f", fit LPIPS {fits[0]:.4f} vs {fits[1]:.4f}"
                     + ("" if abs(gap) < EQUAL_FIT_LPIPS else f" (differs by {gap:+.4f}: not at equal fit)"))
        evidence.append(text)
    return verdict(passed, evidence, "needs multi-ID runs with regularizer none and locality at the same identity count")


def pti_edits_keep_identity(runs: list[RunNumbers]) -> tuple[str, str]:
    """PTI's edits keep more identity to the source image than W's and W+'s at equal attribute change:
    for every edit, PTI is higher than each baseline at most of the comparison points."""
    by_data: dict[tuple, dict[str, RunNumbers]] = {}
    for run in runs:
        if role(run) and run.edits:
            by_data.setdefault((run.job.experiment, run.job.data), {})[role(run)] = run
    evidence, passed = [], []
    for (experiment, data), group in by_data.items():
        if len(group) < 3:
            continue
        for edit in group["PTI"].edit_names():
            points = [point for point in compare_at_equal_change(group, edit) if len(point[2]) == len(group)]
            if not points:
                continue
            sign, level, values = max(points, key=lambda point: (point[1], point[0]))
            text = (f"{experiment}, {data}, {edit} (at |target_delta| {level:.3g}, {'+' if sign > 0 else '-'} side: "
                    + ", ".join(f"{label} {values[label]:.3f}" for label in ("PTI", "W", "W+")) + ")")
            for baseline in ("W", "W+"):
                higher = sum(values["PTI"] > values[baseline] for _, _, values in points)
                passed.append(2 * higher > len(points))
                text += f"; PTI above {baseline} at {higher} of {len(points)} points"
            evidence.append(text)
    return verdict(passed, evidence, "needs PTI, W and W+ runs (tuner=none for W and W+) with the same edits")


CLAIMS: dict[str, Callable[[list[RunNumbers]], tuple[str, str]]] = {
    "tuned LPIPS <= 0.5 x W-inversion LPIPS": tuned_halves_inversion_lpips,
    "A beats C and D (reconstruction LPIPS and identity)": ablation_a_beats_c_and_d,
    "locality cuts drift >= 30% at equal fit": locality_cuts_drift,
    "PTI edits keep more identity than W and W+ edits at equal attribute change": pti_edits_keep_identity,
}


def check_claims(runs: list[RunNumbers]) -> list[tuple[str, str, str]]:
    """(claim, status, evidence) for every claim."""
    return [(claim, *check(runs)) for claim, check in CLAIMS.items()]

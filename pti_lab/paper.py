"""`python run.py +experiment=paper`: the paper's experiments, each its own sweep, one after another,
then one report of them all.

Each sweep runs in its own process (`python run.py +experiment=<name> ...`), exactly as a user would
type it, so that each is an ordinary Hydra multirun with its own report and W&B summary run, and an
interrupted paper resumes sweep by sweep."""

import logging
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from pti_lab.errors import PTILabError

log = logging.getLogger(__name__)

PAPER_KEYS = ("experiment=", "paper.")               # the paper's own overrides, not passed to its sweeps
PASSED_HYDRA = ("hydra/launcher=", "hydra.launcher.")  # the Hydra overrides that are (the launcher's)


def override_key(override: str) -> str:
    """'+batch_size=8' -> 'batch_size', 'hydra/launcher=joblib' -> 'hydra/launcher'."""
    return override.lstrip("+~").split("=", 1)[0]


def sweep_command(script: str, experiment: str, sweep_dir: Path, overrides: Sequence[str],
                  hydra_overrides: Sequence[str] = (), defaults: Sequence[str] = ()) -> list[str]:
    """The command line of one experiment's sweep: the paper's `defaults` (paper.sweep_overrides), then the
    paper run's own overrides but its own keys; a default whose key the command line sets is dropped
    (Hydra refuses a key given twice)."""
    passed = [o for o in overrides if not o.lstrip("+~").startswith(PAPER_KEYS)]
    passed += [o for o in hydra_overrides if o.startswith(PASSED_HYDRA)]
    given = {override_key(o) for o in passed}
    kept = [o for o in defaults if override_key(o) not in given]
    return [sys.executable, script, f"+experiment={experiment}", f"hydra.sweep.dir={sweep_dir}", *kept, *passed]


def run_paper(
    script: str,                  # run.py
    experiments: Sequence[str],   # e.g. table1, table2, fig15, fig16
    out_dir: str | Path,          # each sweep goes to out_dir/<experiment>, the combined report to out_dir/report
    sweep_overrides: Sequence[str] = (),  # given to every sweep before the command line's overrides
) -> Path:
    """Run every experiment's sweep with the command line's overrides, then write the report of all of
    them; returns its report.html."""
    from hydra.core.hydra_config import HydraConfig
    from pti_lab.report.writer import write_report  # matplotlib only once the sweeps have run

    given = HydraConfig.get().overrides
    out = Path(out_dir)
    sweeps = []
    for number, experiment in enumerate(experiments, 1):
        sweep_dir = out / experiment
        command = sweep_command(script, experiment, sweep_dir, given.task, given.hydra, sweep_overrides)
        log.info("[%d/%d] %s", number, len(experiments), " ".join(command[1:]))
        print(f"[{number}/{len(experiments)}] {experiment}: {sweep_dir}", flush=True)
        if subprocess.run(command).returncode != 0:
            raise PTILabError(f"the {experiment} sweep failed (its output is above); re-run the same command to resume")
        sweeps.append(sweep_dir)
    report = write_report(sweeps, out / "report")
    print(f"report: {report}")
    return report

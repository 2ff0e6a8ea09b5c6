"""python -m pti_lab.report SWEEP_DIR [SWEEP_DIR ...] [--out DIR]: write the report of a sweep (or one
report of several, e.g. the paper's four under outputs/paper/) and print where it is."""

import argparse
from pathlib import Path

from pti_lab.report.writer import write_report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.report", description=__doc__)
    parser.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR",
                        help="a Hydra multirun directory (multirun.yaml and job folders 0, 1, ...)")
    parser.add_argument("--out", help="where to write the report (default: SWEEP_DIR/report; for several "
                                      "sweeps, report/ in the folder that holds them)")
    args = parser.parse_args()
    for sweep_dir in args.sweep_dirs:
        if not Path(sweep_dir).is_dir():
            parser.error(f"{sweep_dir}: no such sweep directory")
    sweeps = args.sweep_dirs[0] if len(args.sweep_dirs) == 1 else args.sweep_dirs
    print(write_report(sweeps, args.out))


if __name__ == "__main__":
    main()

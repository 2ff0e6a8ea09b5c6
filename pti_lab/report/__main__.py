"""python -m pti_lab.report SWEEP_DIR [--out DIR]: write the report of a sweep and print where it is."""

import argparse
from pathlib import Path

from pti_lab.report.writer import write_report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pti_lab.report", description=__doc__)
    parser.add_argument("sweep_dir", help="a Hydra multirun directory (multirun.yaml and job folders 0, 1, ...)")
    parser.add_argument("--out", help="where to write the report (default: SWEEP_DIR/report)")
    args = parser.parse_args()
    if not Path(args.sweep_dir).is_dir():
        parser.error(f"{args.sweep_dir}: no such sweep directory")
    print(write_report(args.sweep_dir, args.out))


if __name__ == "__main__":
    main()

"""The report of a sweep: per experiment its tables (CSV, Markdown, LaTeX) and the paper's figures,
the paper's claims checked on its runs, and one self-contained report.html.

    python -m pti_lab.report SWEEP_DIR            # writes SWEEP_DIR/report/
    write_report(sweep_dir) -> SWEEP_DIR/report/report.html

Hydra imports this package at the start of every run (the callback in hydra_callback.py), so
write_report, and with it matplotlib, is loaded only when it is first used.
"""


def __getattr__(name: str):
    if name == "write_report":
        from pti_lab.report.writer import write_report
        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

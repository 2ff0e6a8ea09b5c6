"""A sweep's summary run on W&B: the report's tables and claims as wandb.Table, its figures and
report.html, and its files as an artifact, in the sweep's group, so that the dashboard shows the
paper's tables next to the runs that made them."""

from pti_lab.report.tables import to_rows
from pti_lab.report.writer import Report
from pti_lab.tracking.wandb_logger import WandbLogger


def publish(report: Report, logger: WandbLogger, group: str) -> None:
    """Log `report` as one run of job_type "summary" named "<group> summary" in `group`; the run's own
    files (an offline run) go to the report folder's wandb/."""
    out = report.html.parent
    config = {"sweeps": [str(sweep.path.resolve()) for sweep in report.sweeps],
              "commands": [sweep.command for sweep in report.sweeps]}
    logger.start(config, str(out), name=f"{group} summary", group=group, tags=["summary"], job_type="summary")
    files = []
    for section in report.sections:
        for table in section.tables:
            columns, rows = to_rows(table)
            logger.log_table(f"tables/{table.name}", columns, rows)
            files += sorted(out.glob(f"{table.name}.*"))
        for path in section.figures.values():
            logger.log_file(f"figures/{path.stem}", path)
            files += sorted(out.glob(f"{path.stem}.*"))
    logger.log_table("claims", ["claim", "status", "numbers"], [list(claim) for claim in report.claims])
    logger.log_summary({f"claims/{claim}": status for claim, status, _ in report.claims})
    logger.log_file("report", report.html)
    logger.log_files("pti-report", [*dict.fromkeys(files), report.html])
    logger.finish(str(out))

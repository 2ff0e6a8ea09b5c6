"""Hydra callback: when a sweep (-m) ends, write its report (tables, figures, report.html) into the
sweep directory. Registered in conf/hydra/default.yaml; `python -m pti_lab.report SWEEP_DIR` does
the same on demand, also for a sweep that is still running or was interrupted."""

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class WriteReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from pti_lab.report import write_report  # matplotlib is imported only when a sweep ends

        try:
            path = write_report(config.hydra.sweep.dir)
        except Exception as exc:  # the sweep's results are on disk already; a failed report must not hide that
            log.warning("report of %s not written (%s: %s); run python -m pti_lab.report %s",
                        config.hydra.sweep.dir, type(exc).__name__, exc, config.hydra.sweep.dir)
            return
        log.info("report: %s", path)
        print(f"report: {path}")

"""Hydra callback: when a sweep (-m) ends, write its report (tables, figures, report.html) into the
sweep directory, and with logger=wandb log it as the summary run of the sweep's W&B group.
Registered in conf/hydra/default.yaml; `python -m pti_lab.report SWEEP_DIR` writes the report on
demand, also for a sweep that is still running or was interrupted."""

import logging
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class WriteReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from pti_lab.report.writer import build_report  # matplotlib is imported only when a sweep ends

        sweep_dir = config.hydra.sweep.dir
        try:
            report = build_report(sweep_dir)
        except Exception as exc:  # the sweep's results are on disk already; a failed report must not hide that
            log.warning("report of %s not written (%s: %s); run python -m pti_lab.report %s",
                        sweep_dir, type(exc).__name__, exc, sweep_dir)
            return
        log.info("report: %s", report.html)
        print(f"report: {report.html}")
        if config.get("logger") is not None:
            from pti_lab.report.wandb_summary import publish
            from pti_lab.tracking.wandb_logger import sweep_group

            experiment = (config.hydra.runtime.choices or {}).get("experiment")
            publish(report, instantiate(config.logger), sweep_group(experiment, sweep_dir))

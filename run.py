"""pti-lab entry point: `python run.py [group=option ...] [key=value ...]`, `-m` to sweep."""

import hydra
from omegaconf import DictConfig

from pti_lab.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from pti_lab import pipeline  # after Hydra has parsed the command line: --help stays fast
    from pti_lab.errors import PTILabError
    from pti_lab.runtime import keep_freed_memory

    keep_freed_memory()

    try:
        if cfg.paper is not None:  # +experiment=paper: the paper's sweeps, one after another
            from pti_lab.paper import run_paper
            run_paper(__file__, cfg.paper.experiments, cfg.paper.dir, cfg.paper.sweep_overrides)
        else:
            pipeline.run(cfg)
    except PTILabError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()

"""pti-lab: Pivotal Tuning Inversion (PTI) as a Hydra-configured research framework."""

__version__ = "0.1.0"

"""Generator tuning around pivots: pivotal (PTI), joint (ablations E/F), locality regularisation."""

from pti_lab.tuning.locality_regularizer import LocalityRegularizer
from pti_lab.tuning.pivotal import JointTuner, PivotalTuner, Tuning

__all__ = ["JointTuner", "LocalityRegularizer", "PivotalTuner", "Tuning"]

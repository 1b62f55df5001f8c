"""Propagation of a learned vocabulary into an instruct model (LEP), and its calibration."""

from vocadapt.propagate.lep import METHODS, MapFit, PropagateConfig, PropagateReport, propagate

__all__ = ["METHODS", "MapFit", "PropagateConfig", "PropagateReport", "propagate"]

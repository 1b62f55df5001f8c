"""Propagation of a learned vocabulary into an instruct model (LEP), and its calibration."""

from vocadapt.propagate.calibrate import CalibrateConfig, CalibrateResult, calibrate
from vocadapt.propagate.lep import METHODS, MapFit, PropagateConfig, PropagateReport, propagate

__all__ = ["CalibrateConfig", "CalibrateResult", "calibrate", "METHODS", "MapFit", "PropagateConfig", "PropagateReport", "propagate"]

"""Processors: derived crop-climate metrics and, later, range checks and calibration (issue 7)."""

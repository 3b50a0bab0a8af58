"""Memory estimation: model catalog, analytic estimate, meta-device trace, calibration."""

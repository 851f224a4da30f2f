"""The forward model (source -> atmosphere -> spectrograph -> CCD), datasets of stripes and whole exposures."""

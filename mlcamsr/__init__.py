"""MLCamSR: aligned multi-scale super-resolution datasets from whole-slide images."""

__version__ = "0.1.0"

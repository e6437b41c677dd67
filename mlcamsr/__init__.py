"""MLCamSR: aligned multi-scale super-resolution datasets from whole-slide images."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy top-level API: ``mlcamsr.open_store`` without importing zarr at package import."""
    if name == "open_store":
        from mlcamsr.store import open_store

        return open_store
    if name == "TripletDataset":  # imports torch only when used
        from mlcamsr.dataset import TripletDataset

        return TripletDataset
    raise AttributeError(f"module 'mlcamsr' has no attribute {name!r}")

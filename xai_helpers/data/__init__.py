"""Data: published layouts, the data audit, leak-free splits, the image cache, the synthetic dataset."""
from ..errors import DatasetError, ImageReadError
from .cache import ImageCache, build_cache, load_image
from .layouts import LAYOUTS, DatasetIndex, detect_layout, scan_dataset
from .splits import make_splits
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_dataset

__all__ = ["ImageCache", "ImageReadError", "build_cache", "load_image", "LAYOUTS", "DatasetIndex", "DatasetError",
           "detect_layout", "scan_dataset", "make_splits", "SYNTHETIC_CLASSES", "make_synthetic_dataset"]

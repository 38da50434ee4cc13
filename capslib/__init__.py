"""capslib: capsule networks for image anomaly detection (Piciarelli et al. 2019; Li et al. 2019).

Every score in this library is an anomaly score: higher = more anomalous.
"""
__version__ = "0.1.0"

from .capsnet import CapsNet, CapsNetConfig, dynamic_routing, squash  # noqa: F401
from .config import CellSpec, ConfigError  # noqa: F401

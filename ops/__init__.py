"""The occlusion operators: host-side sampling, CUDA kernels (CuPy) and their NumPy twin.

Installed as ``faceocc.ops``.
"""

from .kinds import KIND_NAMES, Kind
from .operator import FaceOccluder
from .profiles import Profile, load_profile

__all__ = ["KIND_NAMES", "FaceOccluder", "Kind", "Profile", "load_profile"]

"""The apply step's fixed settings: one frozen object per operator, beside the per-sample parameter table.

As kornia's ``apply_transform(input, params, flags)``: the table (``ops.params``) holds what is drawn per
sample, :class:`ApplySettings` what is the same for every batch (from the profile and the output
options). Both backends (the NumPy twin ``ops.reference`` and the CUDA launcher ``ops.gpu``) take the
same object. A new per-batch setting goes here (a field with its check); a new per-sample value goes
into the parameter table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .profiles import Profile

OUTPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


@dataclass(frozen=True)
class ApplySettings:
    """What applying a parameter table needs besides the table and the images.

    Args:
        grayscale: integer luma after the occlusion (Pillow's 'L'), as MSML.
        gray_channels: output channels with ``grayscale``: 1 (MSML) or 3 (the luma repeated).
        gray_offset_divisor: the mask3d offset's luma is divided by this with ``grayscale`` (MSML: 3).
        normalize: ``(v - 0.5) / 0.5`` at the end.
        mask_threshold: mask record values ``<=`` this are mask pixels (MSML: 128).
        dtype: ``img``/``ori`` dtype, float32 or float16.

    Example:
        >>> ApplySettings(grayscale=True, dtype=np.float16).channels
        1
    """

    grayscale: bool = False
    gray_channels: int = 1
    gray_offset_divisor: float = 3.0
    normalize: bool = True
    mask_threshold: int = 128
    dtype: np.dtype = field(default=np.dtype(np.float32))

    def __post_init__(self) -> None:
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in OUTPUT_DTYPES:
            raise ValueError(f"dtype must be float32 or float16; got {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype)
        for name in ("grayscale", "normalize"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if self.gray_channels not in (1, 3) or isinstance(self.gray_channels, bool):
            raise ValueError(f"gray_channels must be 1 or 3; got {self.gray_channels!r}")
        if not float(self.gray_offset_divisor) > 0:
            raise ValueError(f"gray_offset_divisor must be > 0; got {self.gray_offset_divisor!r}")
        if not 0 <= int(self.mask_threshold) <= 255:
            raise ValueError(f"mask_threshold must be in [0, 255]; got {self.mask_threshold!r}")

    @classmethod
    def from_profile(cls, profile: Profile, dtype: Any = np.float32) -> ApplySettings:
        """The settings of a validated profile (``Profile.validate``) with output ``dtype``."""
        return cls(grayscale=profile.grayscale, gray_channels=profile.gray_channels,
                   gray_offset_divisor=profile.gray_offset_divisor, normalize=profile.normalize,
                   mask_threshold=profile.mask3d.threshold, dtype=dtype)

    @property
    def channels(self) -> int:
        """Channels of ``img`` and ``ori``: 3, or ``gray_channels`` with grayscale."""
        return self.gray_channels if self.grayscale else 3

    @property
    def half(self) -> bool:
        """float16 outputs."""
        return self.dtype == np.float16

"""String options of the public API, as ``Literal`` types, and the one check that refuses any other value."""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

Device = Literal["cpu", "gpu"]          # where an operator runs: the NumPy twin or the CUDA kernels
OriMode = Literal["clean", "occluded"]  # the ``ori`` tensor: the clean face, or MSML's second occlusion draw

T = TypeVar("T")


def check_option(name: str, value: T, allowed: Any) -> T:
    """``value`` if it is one of the values of the ``Literal`` type (or tuple) ``allowed``; else a
    ``ValueError`` naming the option, the value and what is allowed.

    Example: ``check_option("device", "tpu", Device)`` raises
    ``ValueError: device must be one of 'cpu', 'gpu'; got 'tpu'``.
    """
    values = get_args(allowed) or tuple(allowed)
    if not any(value == v and type(value) is type(v) for v in values):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, values))}; got {value!r}")
    return value

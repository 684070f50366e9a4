"""Which payloads DALI's image decoder refuses: run after a pipeline failed, so that the error can name
the record (file, key, offset) and ``on_bad_image="skip"`` knows what to leave out."""

from __future__ import annotations

from typing import Any

import numpy as np


def _decoder() -> Any:
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1)
    def pipe() -> Any:
        return fn.decoders.image(fn.external_source(name="data", dtype=types.UINT8), device="cpu",
                                 adjust_orientation=True)

    p = pipe()
    p.build()
    return p


def undecodable(payloads: list[np.ndarray]) -> dict[int, str]:
    """``{position: decoder message}`` for every payload DALI's CPU decoder cannot decode."""
    bad: dict[int, str] = {}
    pipe = None
    for i, payload in enumerate(payloads):
        if pipe is None:
            pipe = _decoder()
        try:
            pipe.feed_input("data", [np.ascontiguousarray(payload, np.uint8)])
            pipe.run()
        except RuntimeError as err:
            bad[i] = first_line(err)
            pipe = None  # a pipeline that failed is not reused
    return bad


def first_line(err: BaseException) -> str:
    """The gist of a (long, multi-line) DALI error: what it says it encountered."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if "encountered:" in lines and lines.index("encountered:") + 1 < len(lines):
        return lines[lines.index("encountered:") + 1][:300]
    return lines[-1][:300] if lines else type(err).__name__

"""Timing for the benchmarks: contenders measured in alternation, and the CPU time they use.

Loaders keep working ahead of their consumer (prefetch, worker threads and processes), so timing one
after another measures whatever the previous one left running; :func:`alternate` runs every contender
in turns, each turn after untimed settle steps, and adds up each contender's timed turns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faceocc.runtime import synchronize

SETTLE = 6  # untimed steps at the start of each turn (see alternate)


def cpu_seconds() -> float:
    """CPU time of this process and its live child processes (Linux /proc; else this process only)."""
    total = time.process_time()
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # ppid; utime and stime follow at 11 and 12
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def alternate(contenders: dict[str, Callable[[], Any]], batches: int, rounds: int, warmup: int, batch: int,
              device: str, cpu: dict | None = None, settle: int = SETTLE, per_round: dict | None = None
              ) -> dict[str, float]:
    """Items per second of each ``step`` callable, measured in alternation, ``rounds`` times; with
    ``cpu``, also the CPU milliseconds per batch of this process and its child processes (all their
    threads; DataLoader workers are children) into it; with ``per_round``, each round's seconds per
    contender into it. Each turn first runs ``settle`` untimed steps: a pipeline keeps working ahead
    (prefetch, worker threads and processes) after its turn ends, and that work must not count in the
    next contender's time."""
    for step in contenders.values():
        for _ in range(warmup):
            step()
    spent = dict.fromkeys(contenders, 0.0)
    used = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, step in contenders.items():
            for _ in range(settle):  # untimed: the work the previous contender left running finishes here
                step()
            synchronize(device)
            start, cpu_start = time.perf_counter(), cpu_seconds()
            for _ in range(batches):
                step()
            synchronize(device)
            spent[name] += time.perf_counter() - start
            used[name] += cpu_seconds() - cpu_start
            if per_round is not None:
                per_round.setdefault(name, []).append(time.perf_counter() - start)
    if cpu is not None:
        cpu.update({name: 1e3 * u / (rounds * batches) for name, u in used.items()})
    return {name: rounds * batches * batch / t for name, t in spent.items()}


def per_call_ms(call: Callable[[int], Any], calls: int, device: str) -> float:
    """Milliseconds per ``call(seed)``, seeds 1..calls, after one untimed call (for one-shot calls, where
    nothing keeps working between calls, so no alternation is needed)."""
    call(0)
    synchronize(device)
    start = time.perf_counter()
    for seed in range(1, calls + 1):
        call(seed)
    synchronize(device)
    return (time.perf_counter() - start) / calls * 1e3

"""The memory-traffic floor: the fewest bytes each benchmarked op or block must move.

Model: data too large for the caches streams from memory; a pass over a tensor cannot start before
the reductions it depends on are complete (global pools, batch-norm statistics), so such passes cannot
be fused. Counts are in tensor-sized units:

* ``F``: the block's input, N·C·H·W elements;
* ``reduced``: a map with C/r channels (BAM's spatial branch), N·(C/r)·H·W elements;
* ``plane``: a one- or two-channel map, N·H·W elements each (CBAM's pooled maps and M_s).

(N, C)-sized vectors are left out (under 1/(H·W) of F). Everything is counted at the float's size
(index arrays, where a kernel keeps them, are counted as one float plane). Backward counts assume the
forward already ran and left its outputs and saved state; ``fwd+bwd`` is their sum.

The floor is these bytes over the copy bandwidth measured on an F-sized array: the regime the benchmark
times, where the same F is processed again and again and stays in the last-level cache when it fits
(16×256×28×28 float32 is 12.8 MB). It is a lower bound on the time of any implementation in that regime.

| case | forward | backward | why |
|---|---|---|---|
| global_avg_max_pool | F 1 | F 1 | read F once for both pools; write dF |
| gated_channel_pool | F 1, plane 2 | F 2, plane 3 | read F (M_c·F is formed on the fly), write the pooled pair; read F (for d gate), write dF; planes: the pooled pair's gradient and the channel-max index |
| channel_spatial_gate | F 2, plane 1 | F 3, plane 2 | read F and M_s, write F'' = M_s·M_c·F; read dF'' and F, write dF (and dM_s) |
| conv7x7 | plane 3 | plane 5 | read the 2 pooled planes, write 1; read d out and the input (dW), write d input |
| residual_gate | F 2, plane 1 | F 3, plane 2 | read F, write F + F·gate; read d out and F, write dF |
| conv1x1_reduce | F 1, reduced 1 | F 2, reduced 1 | read F, write the reduced map; read d out and F (dW), write dF |
| conv3x3_dilated | reduced 2 | reduced 3 | read, write; read d out and the input (dW), write d input |
| batch_norm | reduced 3 | reduced 5 | statistics pass, then read + write; backward: statistics of d out and x̂, then read both, write dx |
| cbam | F 4, plane 6 | F 7, plane 8 | forward: read F (global pools); read F for M_c·F and its channel pool (F' is not kept: recomputed later); read F, write F'' = M_s·M_c·F; planes: the pooled pair written and read, the conv output, M_s. Backward: read dF'' and F for dM_s; (the spatial batch norm's batch statistics sit in between) read them again for dM_c; read them a third time and write dF; planes: dM_s, the conv's backward, the channel-max index |
| bam | F 3, reduced 6 | F 5, reduced 9 | forward: read F once for the avg pool and the first 1×1 conv; write and re-read each of the three reduced maps; read F, write F'. Backward: read d out and F for the gate's gradients; read them again with the reduced gradient, write dF; each reduced layer reads its gradient and input and writes a gradient |
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Traffic:
    """How many tensor-sized reads + writes a pass needs (see the module table)."""

    F: int = 0
    reduced: int = 0
    plane: int = 0

    def elements(self, shape, reduction):
        n, c, h, w = shape
        return self.F * n * c * h * w + self.reduced * n * reduced_channels(c, reduction) * h * w \
            + self.plane * n * h * w


#: case -> (forward, backward); the module docstring explains every row.
FLOOR = {
    "global_avg_max_pool": (Traffic(F=1), Traffic(F=1)),
    "gated_channel_pool": (Traffic(F=1, plane=2), Traffic(F=2, plane=3)),
    "channel_spatial_gate": (Traffic(F=2, plane=1), Traffic(F=3, plane=2)),
    "conv7x7": (Traffic(plane=3), Traffic(plane=5)),
    "residual_gate": (Traffic(F=2, plane=1), Traffic(F=3, plane=2)),
    "conv1x1_reduce": (Traffic(F=1, reduced=1), Traffic(F=2, reduced=1)),
    "conv3x3_dilated": (Traffic(reduced=2), Traffic(reduced=3)),
    "batch_norm": (Traffic(reduced=3), Traffic(reduced=5)),
    "cbam": (Traffic(F=4, plane=6), Traffic(F=7, plane=8)),
    "bam": (Traffic(F=3, reduced=6), Traffic(F=5, reduced=9)),
}

PASSES = ("fwd", "fwd+bwd")


def reduced_channels(channels, reduction):
    """C/r as the attention modules size their hidden layers (at least one channel)."""
    return max(channels // reduction, 1)


def floor_bytes(case, pass_name, shape, dtype, reduction):
    """The floor's byte count for ``case`` in ``pass_name`` ("fwd" or "fwd+bwd"), or None if not tabulated."""
    if case not in FLOOR:
        return None
    if pass_name not in PASSES:
        raise ValueError(f"pass_name: expected one of {PASSES}, got {pass_name!r}")
    forward, backward = FLOOR[case]
    elements = forward.elements(shape, reduction)
    if pass_name == "fwd+bwd":
        elements += backward.elements(shape, reduction)
    return elements * np.dtype(dtype).itemsize


def floor_ms(nbytes, gb_per_s):
    """Time to move ``nbytes`` at the measured copy bandwidth."""
    return nbytes / (gb_per_s * 1e9) * 1e3

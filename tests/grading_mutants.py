"""Planted mistakes: for every exercise, plausible wrong solutions that its graded tests must catch.

Instructor-only (``make student`` leaves this file out: it describes the solutions).

A mutant is a small text edit of the reference solution region, the kind of slip
a student makes. The grader runs the exercise's tests with the edited region
(``runner.run(replace={id: [(old, new)]})``: the student process compiles the
exercise function, and the helper holding the region if it sits in one, from the
edited source). An edit that no longer matches the reference fails to install,
and the mutant counts as not caught, so mutants cannot silently go stale.

``python tests/grading_mutants.py [ids]`` runs them and prints one JSON line per mutant.
"""
from __future__ import annotations

import dataclasses
import json
import sys

from minitorch_attn.grading import runner


@dataclasses.dataclass(frozen=True)
class Mutant:
    exercise: str
    mistake: str
    old: str  # text of the solution region (it must occur there exactly once) ...
    new: str  # ... and what the student wrote instead


MUTANTS = [
    # 1.1 global average pooling backward
    Mutant("1.1", "forgets the 1/(H·W)", "(grad / (H * W))", "grad"),
    Mutant("1.1", "divides by H only", "(grad / (H * W))", "(grad / H)"),
    Mutant("1.1", "divides by N·C·H·W (the mean of the whole tensor)",
           "(grad / (H * W))",
           "(grad / (N * C * H * W))"),
    # 1.2 global max pooling backward
    Mutant("1.2", "spreads g over the whole plane",
           "np.put_along_axis(dx, index[:, :, None], grad[:, :, None], axis=2)",
           "dx[...] = grad[:, :, None]"),
    Mutant("1.2", "reads the flat index as (W, H): the plane transposed",
           "return dx.reshape(shape)",
           "return dx.reshape(N, C, W, H).transpose(0, 1, 3, 2).copy()"),
    Mutant("1.2", "float64 whatever the input dtype",
           "np.zeros((N, C, H * W), grad.dtype)",
           "np.zeros((N, C, H * W))"),
    # 2.1 linear backward
    Mutant("2.1", "transposed weight in dx", "dx = grad @ weight", "dx = grad @ weight.T"),
    Mutant("2.1", "dW transposed", "grad.T @ x", "x.T @ grad"),
    Mutant("2.1", "missing bias gradient", "grad.sum(axis=0) if has_bias else None", "None"),
    Mutant("2.1", "bias gradient averaged over the batch", "grad.sum(axis=0)", "grad.mean(axis=0)"),
    # 2.2 CBAM channel attention logit
    Mutant("2.2", "forgets the ReLU", "ops.relu(ops.linear(descriptor, w0, b0))", "ops.linear(descriptor, w0, b0)"),
    Mutant("2.2", "keeps only the last descriptor",
           "logit = term if logit is None else ops.add(logit, term)",
           "logit = term"),
    Mutant("2.2", "returns σ(logit), the gate", "return logit", "return ops.sigmoid(logit)"),
    # 3.1 channel mean backward
    Mutant("3.1", "divides by H·W instead of C", "grad / shape[1]", "grad / (shape[2] * shape[3])"),
    Mutant("3.1", "forgets the 1/C", "grad / shape[1]", "grad"),
    # 3.2 channel max backward
    Mutant("3.2", "sends g to every channel", "np.put_along_axis(dx, index, grad, axis=1)", "dx[...] = grad"),
    Mutant("3.2", "scatters along H instead of C",
           "np.put_along_axis(dx, index, grad, axis=1)",
           "np.put_along_axis(dx, np.minimum(index, shape[2] - 1), grad, axis=2)"),
    Mutant("3.2", "float64 whatever the input dtype", "np.zeros(shape, grad.dtype)", "np.zeros(shape)"),
    # 3.3 conv2d backward
    Mutant("3.3", "dx taps ignore the dilation",
           "_tap(dxp, i, j, stride, dilation,",
           "_tap(dxp, i, j, stride, (1, 1),"),
    Mutant("3.3", "dx cropped without the padding offset",
           "dxp[:, :, padding[0] : padding[0] + H, padding[1] : padding[1] + W]",
           "dxp[:, :, :H, :W]"),
    Mutant("3.3", "missing bias gradient", "grad.sum(axis=(0, 2, 3)) if has_bias else None", "None"),
    Mutant("3.3", "bias gradient summed over the batch only",
           "grad.sum(axis=(0, 2, 3))",
           "grad.sum(axis=0).mean(axis=(1, 2))"),
    # 3.4 CBAM spatial attention logit
    Mutant("3.4", "padding 1 whatever the kernel size", "padding=(k - 1) // 2", "padding=1"),
    Mutant("3.4", "skips the BatchNorm", "return logit if bn is None else bn(logit)", "return logit"),
    Mutant("3.4", "returns σ(logit), the gate",
           "return logit if bn is None else bn(logit)",
           "return ops.sigmoid(logit if bn is None else bn(logit))"),
    # 4.1 CBAM block
    Mutant("4.1", "spatial-channel runs channel first",
           "return channel_gate(spatial_gate(x))",
           "return spatial_gate(channel_gate(x))"),
    Mutant("4.1", "parallel multiplies the two gates",
           "return ops.mul(x, ops.sigmoid(both))",
           "return ops.mul(ops.mul(x, ops.sigmoid(expand_channels(channel_gate.logit(x))))"
           ", ops.sigmoid(spatial_gate.logit(x)))"),
    Mutant("4.1", "spatial gate computed from F instead of F'",
           "ops.sigmoid(spatial_gate.logit_of_compressed(pooled))",
           "ops.sigmoid(spatial_gate.logit(x))"),
    Mutant("4.1", "ignores a missing spatial gate",
           "    if spatial_gate is None:\n        return channel_gate(x)\n",
           ""),
    # 5.1 batch norm backward
    Mutant("5.1", "forgets the path through the batch mean",
           "dxhat - dxhat.sum(axis=(0, 2), keepdims=True) / m",
           "dxhat"),
    Mutant("5.1", "forgets the path through the batch variance",
           "\n          - xhat * (dxhat * xhat).sum(axis=(0, 2), keepdims=True) / m)",
           ")"),
    Mutant("5.1", "Bessel's correction (m - 1) in the backward",
           "m = grad.shape[0] * grad.shape[2]",
           "m = grad.shape[0] * grad.shape[2] - 1"),
    Mutant("5.1", "statistics per sample (m = L)", "m = grad.shape[0] * grad.shape[2]", "m = grad.shape[2]"),
    # 6.1 BAM spatial branch
    Mutant("6.1", "padding 1 for the dilated convs",
           "padding=dilation if dilated else 0",
           "padding=1 if dilated else 0"),
    Mutant("6.1", "3×3 convs without the dilation", "dilation=dilation if dilated else 1", "dilation=1"),
    Mutant("6.1", "ReLU after the last conv too",
           "        if index < last:\n            h = ops.relu(h)",
           "        h = ops.relu(h)"),
    Mutant("6.1", "norm after the ReLU",
           "        if norm is not None:\n            h = norm(h)\n"
           "        if index < last:\n            h = ops.relu(h)",
           "        if index < last:\n            h = ops.relu(h)\n"
           "        if norm is not None:\n            h = norm(h)"),
    # 7.1 BAM residual gate backward
    Mutant("7.1", "σ'(x) written as σ(x)", "grad * x * gate * (1 - gate)", "grad * x * gate"),
    Mutant("7.1", "forgets the residual's 1 in dF", "grad * (1 + gate)", "grad * gate"),
    Mutant("7.1", "dMs summed over H×W instead of C", "dlogit.sum(axis=1, keepdims=True)", "dlogit.sum(axis=(2, 3))"),
    # 7.2 BAM fusion and residual
    Mutant("7.2", "forgets the residual F +",
           "return ops.add(x, ops.mul(x, ops.sigmoid(logit)))",
           "return ops.mul(x, ops.sigmoid(logit))"),
    Mutant("7.2", "product fusion adds",
           "logit = ops.mul(expand_channels(channel_logit), spatial_logit)",
           "logit = ops.add(expand_channels(channel_logit), spatial_logit)"),
    Mutant("7.2", "max fusion sends ties to M_s",
           "maximum(expand_channels(channel_logit), spatial_logit)",
           "maximum(spatial_logit, expand_channels(channel_logit))"),
    # 9.1 Numba prange channel mean
    Mutant("9.1", "counts channel 0 twice", "for c in range(1, C):", "for c in range(C):"),
    Mutant("9.1", "divides by the pixel count", "out[n, s] /= count", "out[n, s] /= S"),
    # 9.2 CUDA channel-mean launch
    Mutant("9.2", "one block per sample, not per pixel", "blocks=N * H * W", "blocks=N"),
    Mutant("9.2", "returns the device array", "return d_out.copy_to_host().reshape(N, 1, H, W)", "return d_out"),
    Mutant("9.2", "forgets the (N, 1, H, W) shape",
           "d_out.copy_to_host().reshape(N, 1, H, W)",
           "d_out.copy_to_host()"),
    # 11.1 Welch's t-test
    Mutant("11.1", "variances divided by n, not n - 1",
           "a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)",
           "a.var() / len(a), b.var() / len(b)"),
    Mutant("11.1", "forgets to divide the variances by n (spread of the seeds, not of the mean)",
           "a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)",
           "a.var(ddof=1), b.var(ddof=1)"),
    Mutant("11.1", "Student's n_a + n_b - 2 degrees of freedom",
           "df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))",
           "df = len(a) + len(b) - 2"),
    Mutant("11.1", "Satterthwaite's denominator divided by n instead of n - 1",
           "va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)",
           "va ** 2 / len(a) + vb ** 2 / len(b)"),
    Mutant("11.1", "t of mean(b) - mean(a)", "gap = a.mean() - b.mean()", "gap = b.mean() - a.mean()"),
    Mutant("11.1", "forgets the square root", "t = gap / math.sqrt(va + vb)", "t = gap / (va + vb)"),
    Mutant("11.1", "one-sided p", "return t, df, student_t_sf(t, df)", "return t, df, student_t_sf(t, df) / 2"),
    Mutant("11.1", "forgets the case without spread (0/0)",
           "    if va + vb == 0:\n"
           "        return (math.copysign(math.inf, gap) if gap else 0.0), math.inf, (0.0 if gap else 1.0)\n",
           ""),
    # 12.1 receptive field of a stack of convolutions
    Mutant("12.1", "ignores the dilation",
           "size += dilation * (kernel_size - 1) * jump",
           "size += (kernel_size - 1) * jump"),
    Mutant("12.1", "ignores the strides of the layers before",
           "        jump *= stride\n",
           ""),
    Mutant("12.1", "counts a layer's own stride before it",
           "        size += dilation * (kernel_size - 1) * jump\n        jump *= stride\n",
           "        jump *= stride\n        size += dilation * (kernel_size - 1) * jump\n"),
    Mutant("12.1", "k taps counted as k gaps", "dilation * (kernel_size - 1)", "dilation * kernel_size"),
    Mutant("12.1", "starts from 0 pixels", "size, jump = 1, 1", "size, jump = 0, 1"),
    # 10.1 SGD with momentum and weight decay
    Mutant("10.1", "forgets the weight decay",
           "direction = grad + weight_decay * param if weight_decay else grad",
           "direction = grad"),
    Mutant("10.1", "weight decay with the wrong sign", "grad + weight_decay * param", "grad - weight_decay * param"),
    Mutant("10.1", "dampened buffer (1 - μ)·d", "momentum * buffer + direction",
           "momentum * buffer + (1 - momentum) * direction"),
    Mutant("10.1", "steps along the gradient, not the buffer", "param -= (lr * direction)", "param -= (lr * grad)"),
    Mutant("10.1", "returns the old buffer", "return direction if momentum else None",
           "return buffer if momentum else None"),
    Mutant("10.1", "the first buffer is the gradient array itself",
           "np.array(direction) if buffer is None", "direction if buffer is None"),
    Mutant("10.1", "updates a copy, not the parameter in place", "param -= (lr * direction).astype(param.dtype)",
           "param = param - (lr * direction).astype(param.dtype)"),
    # 13.1 a conv's MACs
    Mutant("13.1", "forgets the kernel area", "weight.size", "weight.shape[0] * weight.shape[1]"),
    Mutant("13.1", "counts the whole batch", "output_shape[2] * output_shape[3]",
           "output_shape[0] * output_shape[2] * output_shape[3]"),
    Mutant("13.1", "assumes a square output", "output_shape[2] * output_shape[3]", "output_shape[2] ** 2"),
    Mutant("13.1", "counts FLOPs (2 per MAC)", "return weight.size", "return 2 * weight.size"),
    # 14.1 Grad-CAM map
    Mutant("14.1", "forgets the ReLU", "np.maximum(np.einsum(\"nk,nkij->nij\", alpha, activations), 0)",
           "np.einsum(\"nk,nkij->nij\", alpha, activations)"),
    Mutant("14.1", "sums the gradients instead of averaging", "gradients.mean(axis=(2, 3))",
           "gradients.sum(axis=(2, 3))"),
    Mutant("14.1", "one weight per channel for the whole batch", "alpha = gradients.mean(axis=(2, 3))",
           "alpha = np.broadcast_to(gradients.mean(axis=(0, 2, 3)), gradients.shape[:2])"),
    Mutant("14.1", "absolute value instead of the ReLU", "np.maximum(np.einsum(\"nk,nkij->nij\", alpha, activations), 0)",
           "np.abs(np.einsum(\"nk,nkij->nij\", alpha, activations))"),
    Mutant("14.1", "weights from the activations", "alpha = gradients.mean(axis=(2, 3))",
           "alpha = activations.mean(axis=(2, 3))"),
    # 14.2 pointing game
    Mutant("14.2", "an empty map points at pixel (0, 0)", " & (flat.max(axis=1) > 0)", ""),
    Mutant("14.2", "a map of zeros counts", "(flat.max(axis=1) > 0)", "(flat.max(axis=1) >= 0)"),
    Mutant("14.2", "ties go to the last maximum", "peak = np.argmax(flat, axis=1)",
           "peak = flat.shape[1] - 1 - np.argmax(flat[:, ::-1], axis=1)"),
    Mutant("14.2", "reads the masks transposed", "masks.reshape(len(masks), -1)",
           "masks.transpose(0, 2, 1).reshape(len(masks), -1)"),
]


def run_mutants(ids=()):
    """``[(mutant, caught, first failure line)]`` for the mutants of ``ids`` (all when empty).

    Caught means: some test of the exercise fails on a check (not on a crash, a
    timeout, or an edit that does not apply). The mutants of one exercise share
    its student process.
    """
    results, pool = [], {}
    try:
        for mutant in MUTANTS:
            if ids and mutant.exercise not in ids:
                continue
            report = runner.run([mutant.exercise], replace={mutant.exercise: [(mutant.old, mutant.new)]},
                                timeout=60, stop_early=True, pool=pool)
            failed = [t for t in report.tests if not t.passed]
            caught = bool(failed) and report.complete
            results.append((mutant, caught, failed[0].message if failed else "; ".join(report.problems)))
    finally:
        runner.close_pool(pool)
    return results


if __name__ == "__main__":
    for mutant, caught, message in run_mutants(sys.argv[1:]):
        print(json.dumps({"exercise": mutant.exercise, "mistake": mutant.mistake, "caught": caught,
                          "message": message}, ensure_ascii=False))

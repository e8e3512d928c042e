"""Lesson 4: the CBAM block, channel and spatial attention composed in the arrangements of Table 3 (4.1)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minitorch_attn.grading.checks import describe, expect_array, torch_gradients


def torch_cbam(x, p, arrangement, spatial, eps):
    """CBAM written with torch ops from the parameters ``p`` of our module (BatchNorm in train mode)."""
    def channel_logit(f):
        def mlp(d):
            return F.linear(torch.relu(F.linear(d, p["channel_gate.fc0.weight"], p["channel_gate.fc0.bias"])),
                            p["channel_gate.fc1.weight"], p["channel_gate.fc1.bias"])
        return (mlp(f.mean(dim=(2, 3))) + mlp(f.amax(dim=(2, 3))))[:, :, None, None]

    def spatial_logit(f):
        pooled = torch.cat([f.mean(dim=1, keepdim=True), f.amax(dim=1, keepdim=True)], dim=1)
        weight = p["spatial_gate.conv.weight"]
        logit = F.conv2d(pooled, weight, padding=weight.shape[-1] // 2)
        return F.batch_norm(logit, None, None, p["spatial_gate.bn.weight"], p["spatial_gate.bn.bias"],
                            training=True, eps=eps)

    if not spatial:
        return x * torch.sigmoid(channel_logit(x))
    if arrangement == "parallel":
        return x * torch.sigmoid(channel_logit(x) + spatial_logit(x))
    first, second = channel_logit, spatial_logit
    if arrangement == "spatial-channel":
        first, second = second, first
    refined = x * torch.sigmoid(first(x))
    return refined * torch.sigmoid(second(refined))


def cbam_block(seed, arrangement, spatial, reduction, x, grad):
    """Run in the student's process: a seeded CBAM's output, x.grad, parameters and BatchNorm eps."""
    from minitorch_attn import nn
    from minitorch_attn.tensor import Tensor

    nn.manual_seed(seed)
    module = nn.CBAM(x.shape[1], reduction, arrangement=arrangement, no_spatial=not spatial, kernel_size=7)
    module = module.double() if x.dtype == np.float64 else module.float()
    ours = Tensor(x.copy(), requires_grad=True)
    out = module(ours)
    out.backward(grad)
    parameters = {name: p.data for name, p in module.named_parameters()}
    return out.numpy(), ours.grad, parameters, module.spatial_gate.bn.eps if spatial else None


def check_cbam(student, seed, arrangement, spatial=True, shapes=((2, 8, 6, 5), (1, 6, 7, 7)), reduction=2):
    rng = np.random.default_rng(seed)
    for shape in shapes:
        for dtype in (np.float64, np.float32):
            x = (rng.standard_normal(shape) * 2).astype(dtype)
            grad = rng.standard_normal(shape).astype(dtype)
            out, dx, parameters, eps = student(cbam_block, seed, arrangement, spatial, reduction, x, grad)
            case = describe(x=x) + f", arrangement {arrangement!r}" + ("" if spatial else ", no spatial gate")
            params = {name: torch.tensor(value) for name, value in parameters.items()}
            expected_out, (expected_dx,) = torch_gradients(
                lambda t: torch_cbam(t, params, arrangement, spatial, eps), [x], grad)
            expect_array(out, expected_out, "the output", case)
            expect_array(dx, expected_dx, "x.grad", case)


@pytest.mark.exercise("4.1", points=2)
def test_cbam_channel_then_spatial(student):
    check_cbam(student, 43, "channel-spatial")


@pytest.mark.exercise("4.1", points=1)
def test_cbam_spatial_then_channel(student):
    check_cbam(student, 44, "spatial-channel")


@pytest.mark.exercise("4.1", points=1)
def test_cbam_parallel(student):
    check_cbam(student, 45, "parallel")


@pytest.mark.exercise("4.1", points=1)
def test_cbam_without_spatial_gate(student):
    check_cbam(student, 46, "channel-spatial", spatial=False)

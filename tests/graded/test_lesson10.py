"""Lesson 10: one step of SGD with momentum and weight decay (10.1), against torch.optim.SGD."""
import numpy as np
import pytest
import torch

from minitorch_attn.grading.checks import GradingFailure, describe, expect_array, expect_none

# (momentum, weight decay): momentum alone, decay alone, both, neither, and a large decay.
SETTINGS = [(0.9, 0.0), (0.0, 0.01), (0.9, 0.01), (0.0, 0.0), (0.5, 0.3)]
SHAPES = [(3, 4), (5,), (2, 3, 3, 3)]
STEPS = 6
LR = 0.1


def cases(seed):
    rng = np.random.default_rng(seed)
    for momentum, weight_decay in SETTINGS:
        for shape in SHAPES:
            for dtype in (np.float64, np.float32):
                start = rng.standard_normal(shape).astype(dtype)
                grads = (rng.standard_normal((STEPS,) + shape) * 2).astype(dtype)
                yield start, grads, momentum, weight_decay


def torch_trajectory(start, grads, momentum, weight_decay):
    """The parameter and the momentum buffer after each of torch.optim.SGD's steps."""
    param = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizer = torch.optim.SGD([param], lr=LR, momentum=momentum, weight_decay=weight_decay)
    params, buffers = [], []
    for g in grads:
        param.grad = torch.from_numpy(g.copy())
        optimizer.step()
        params.append(param.detach().numpy().copy())
        buffer = optimizer.state[param].get("momentum_buffer")
        buffers.append(None if buffer is None else buffer.numpy().copy())
    return params, buffers


# -- run in the student's process ----------------------------------------------
def run_updates(start, grads, momentum, weight_decay):
    from minitorch_attn.nn.optim import sgd_update

    param, buffer, params, buffers, problems = start.copy(), None, [], [], []
    for step, g in enumerate(grads, 1):
        grad = g.copy()
        buffer = sgd_update(param, grad, buffer, LR, momentum, weight_decay)
        params.append(param.copy())
        buffers.append(np.array(buffer) if isinstance(buffer, np.ndarray) else buffer)
        if not np.array_equal(grad, g):
            problems.append(f"step {step} changed grad")
        if isinstance(buffer, np.ndarray) and np.shares_memory(buffer, grad):
            problems.append(f"step {step} returned grad itself as the buffer (return a new array: a later "
                            "in-place step would change the caller's gradient)")
    return params, buffers, problems


def run_sgd_module(starts, grads, momentum, weight_decay):
    """nn.SGD over two parameters; the second has no gradient at odd steps (it must then stay as it is)."""
    from minitorch_attn import Tensor, nn

    params = [Tensor(s.copy(), requires_grad=True) for s in starts]
    optimizer = nn.SGD(params, lr=LR, momentum=momentum, weight_decay=weight_decay)
    for step, (g0, g1) in enumerate(grads):
        optimizer.zero_grad()
        params[0].grad = g0.copy()
        if step % 2 == 0:
            params[1].grad = g1.copy()
        optimizer.step()
    return [p.numpy().copy() for p in params]


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("10.1", points=2)
def test_sgd_update_matches_torch_step_by_step(student):
    for start, grads, momentum, weight_decay in cases(101):
        case = describe(param=start) + f", momentum {momentum}, weight_decay {weight_decay}"
        params, buffers, problems = student(run_updates, start, grads, momentum, weight_decay)
        if problems:
            raise GradingFailure(f"{case}: {problems[0]}")
        expected_params, expected_buffers = torch_trajectory(start, grads, momentum, weight_decay)
        for step in range(STEPS):
            expect_array(params[step], expected_params[step], f"the parameter after step {step + 1}", case)
            if expected_buffers[step] is None:
                expect_none(buffers[step], f"the buffer returned at step {step + 1}", case, " without momentum")
            else:
                expect_array(buffers[step], expected_buffers[step], f"the buffer returned at step {step + 1}", case)


@pytest.mark.exercise("10.1", points=1)
def test_sgd_module_steps_every_parameter_with_a_gradient(student):
    rng = np.random.default_rng(102)
    for momentum, weight_decay in SETTINGS:
        for dtype in (np.float64, np.float32):
            starts = [rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal((3,)).astype(dtype)]
            grads = [[rng.standard_normal(s.shape).astype(dtype) for s in starts] for _ in range(STEPS)]
            case = f"nn.SGD, {dtype.__name__}, momentum {momentum}, weight_decay {weight_decay}"
            ours = student(run_sgd_module, starts, grads, momentum, weight_decay)
            theirs = [torch.nn.Parameter(torch.from_numpy(s.copy())) for s in starts]
            optimizer = torch.optim.SGD(theirs, lr=LR, momentum=momentum, weight_decay=weight_decay)
            for step, (g0, g1) in enumerate(grads):
                optimizer.zero_grad()
                theirs[0].grad = torch.from_numpy(g0.copy())
                if step % 2 == 0:
                    theirs[1].grad = torch.from_numpy(g1.copy())
                optimizer.step()
            for index, (mine, expected) in enumerate(zip(ours, theirs)):
                expect_array(mine, expected.detach().numpy(), f"parameter {index} after {STEPS} steps", case)

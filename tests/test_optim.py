"""Optimizers and schedules against torch.optim (float64, same gradients), state dicts, argument errors."""
import numpy as np
import pytest
import torch

from minitorch_attn import nn
from minitorch_attn.nn.module import StateDictError
from minitorch_attn.testing import rel_error

SHAPES = [(3, 4), (5,), (2, 3, 3, 3)]
STEPS = 7


def _pair(seed=0):
    """Our parameters and torch leaves with the same float64 values."""
    rng = np.random.default_rng(seed)
    ours = [nn.Parameter(rng.standard_normal(shape)) for shape in SHAPES]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    return ours, theirs


def _gradients(step, seed=1):
    """The gradients of one step; at step 2 the second parameter has none (it must not move, nor count a step)."""
    rng = np.random.default_rng([seed, step])
    return [None if (step == 2 and index == 1) else rng.standard_normal(shape) for index, shape in enumerate(SHAPES)]


def _step(optimizer, params, grads):
    for param, grad in zip(params, grads):
        if isinstance(param, torch.Tensor):
            param.grad = None if grad is None else torch.from_numpy(grad.copy())
        else:
            param.grad = None if grad is None else grad.copy()
    optimizer.step()


OPTIMIZERS = {
    "sgd": (lambda p: nn.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd-momentum-wd": (lambda p: nn.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4),
                        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4)),
    "adam": (lambda p: nn.Adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    "adam-betas-eps-wd": (lambda p: nn.Adam(p, lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
                          lambda p: torch.optim.Adam(p, lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch(name):
    ours, theirs = _pair()
    build_ours, build_theirs = OPTIMIZERS[name]
    opt, their_opt = build_ours(ours), build_theirs(theirs)
    for step in range(STEPS):
        grads = _gradients(step)
        _step(opt, ours, grads)
        _step(their_opt, theirs, grads)
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert rel_error(a.data, b.detach().numpy()) <= 1e-12, f"step {step}, parameter {index}"


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_resumes_bit_identically(name):
    build = OPTIMIZERS[name][0]
    straight, _ = _pair()
    opt = build(straight)
    for step in range(STEPS):
        _step(opt, straight, _gradients(step))

    first, _ = _pair()
    opt = build(first)
    for step in range(3):
        _step(opt, first, _gradients(step))
    saved = {key: value.copy() for key, value in opt.state_dict().items()}
    params = [nn.Parameter(p.data.copy()) for p in first]
    resumed = build(params)
    resumed.load_state_dict(saved)
    for step in range(3, STEPS):
        _step(resumed, params, _gradients(step))
    for a, b in zip(straight, params):
        assert np.array_equal(a.data, b.data)


def test_adam_state_counts_steps_per_parameter():
    ours, _ = _pair()
    opt = nn.Adam(ours)
    for step in range(4):
        _step(opt, ours, _gradients(step))
    state = opt.state_dict()
    assert [int(state[f"{i}.step"]) for i in range(3)] == [4, 3, 4]
    assert state["0.exp_avg"].shape == SHAPES[0] and float(state["param_group.beta2"]) == 0.999


SCHEDULES = {
    "step": (lambda o: nn.StepLR(o, step_size=3, gamma=0.5),
             lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
    "cosine": (lambda o: nn.CosineAnnealingLR(o, T_max=5),
               lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5)),
    "cosine-eta-min": (lambda o: nn.CosineAnnealingLR(o, T_max=4, eta_min=1e-3),
                       lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=1e-3)),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_torch(name):
    """Per-epoch lr over 12 epochs (past T_max, where the cosine comes back up), and the weights it drives."""
    ours, theirs = _pair()
    opt = nn.SGD(ours, lr=0.2, momentum=0.9)
    their_opt = torch.optim.SGD(theirs, lr=0.2, momentum=0.9)
    schedule, their_schedule = SCHEDULES[name][0](opt), SCHEDULES[name][1](their_opt)
    for epoch in range(12):
        assert abs(schedule.get_last_lr()[0] - their_schedule.get_last_lr()[0]) <= 1e-12 * 0.2, f"epoch {epoch}"
        assert opt.lr == schedule.get_last_lr()[0]
        grads = _gradients(epoch)
        _step(opt, ours, grads)
        _step(their_opt, theirs, grads)
        schedule.step()
        their_schedule.step()
    for a, b in zip(ours, theirs):
        assert rel_error(a.data, b.detach().numpy()) <= 1e-12


def test_schedule_state_dict_round_trip_and_mismatch():
    params, _ = _pair()
    opt = nn.SGD(params, lr=0.1)
    schedule = nn.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        schedule.step()
    state = schedule.state_dict()
    fresh = nn.CosineAnnealingLR(nn.SGD(params, lr=0.1), T_max=10)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 4 and fresh.get_last_lr() == schedule.get_last_lr()
    with pytest.raises(ValueError, match="T_max=10, this schedule T_max=20"):
        nn.CosineAnnealingLR(nn.SGD(params, lr=0.1), T_max=20).load_state_dict(state)
    with pytest.raises(StateDictError, match="missing keys"):
        nn.StepLR(nn.SGD(params, lr=0.1), step_size=2).load_state_dict(state)


def test_optimizer_load_state_dict_errors():
    params, _ = _pair()
    opt = nn.SGD(params, lr=0.1, momentum=0.9)
    _step(opt, params, _gradients(0))
    state = opt.state_dict()
    with pytest.raises(ValueError, match="momentum=0.9, this optimizer momentum=0.5"):
        nn.SGD(params, lr=0.1, momentum=0.5).load_state_dict(state)
    with pytest.raises(StateDictError, match=r"mis-shaped keys \(1\): 0.momentum_buffer"):
        nn.SGD([nn.Parameter(np.zeros((4, 4))), *params[1:]], lr=0.1, momentum=0.9).load_state_dict(state)
    with pytest.raises(StateDictError, match="unexpected keys.*2.momentum_buffer"):
        nn.SGD(params[:2], lr=0.1, momentum=0.9).load_state_dict(state)
    with pytest.raises(StateDictError, match="missing keys"):
        nn.Adam(params).load_state_dict(state)


@pytest.mark.parametrize("build, message", [
    (lambda p: nn.SGD(p, lr=-1), "SGD: lr must be a number >= 0, got -1"),
    (lambda p: nn.SGD(p, lr=0.1, momentum="0.9"), "SGD: momentum must be a number >= 0, got '0.9'"),
    (lambda p: nn.SGD(p, lr=float("nan")), "SGD: lr must be a number >= 0, got nan"),
    (lambda p: nn.Adam(p, betas=(0.9, 1.0)), r"Adam: betas\[1\] must be a number in \[0, 1\), got 1.0"),
    (lambda p: nn.Adam(p, betas=0.9), r"Adam: betas must be a pair \(beta1, beta2\), got 0.9"),
    (lambda p: nn.Adam(p, eps=-1e-8), "Adam: eps must be a number >= 0"),
    (lambda p: nn.Adam(p, weight_decay=-1), "Adam: weight_decay must be a number >= 0"),
    (lambda p: nn.Adam([]), "Adam: got an empty parameter list"),
    (lambda p: nn.StepLR(nn.SGD(p, lr=0.1), step_size=0), "StepLR: step_size must be a positive int, got 0"),
    (lambda p: nn.StepLR(nn.SGD(p, lr=0.1), step_size=2, gamma=-0.1), "StepLR: gamma must be a number >= 0"),
    (lambda p: nn.CosineAnnealingLR(nn.SGD(p, lr=0.1), T_max=2.5), "CosineAnnealingLR: T_max must be a positive int"),
    (lambda p: nn.CosineAnnealingLR(nn.SGD(p, lr=0.1), 3, eta_min=-1), "CosineAnnealingLR: eta_min must be a number"),
])
def test_argument_errors(build, message):
    params, _ = _pair()
    with pytest.raises(ValueError, match=message):
        build(params)


def test_type_errors():
    with pytest.raises(TypeError, match="SGD: parameter 0 must be a Tensor with requires_grad"):
        nn.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="StepLR: optimizer must be an SGD or Adam, got SGD"):
        nn.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), step_size=1)

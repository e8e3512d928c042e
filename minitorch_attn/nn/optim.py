"""Optimizers (SGD with momentum, Adam) and per-epoch learning-rate schedules, with PyTorch's update rules,
names and ``step()`` habits, and state dicts of ndarrays so that a training run resumes bit-identically.

A state dict here is flat, ``{key: ndarray}`` (it goes straight into an ``.npz``): the hyper-parameters under
``param_group.<name>``, and per-parameter state under ``<index>.<name>`` (PyTorch also keys the state by the
parameter's index in the list given to the constructor). Loading checks everything before changing anything.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from ..exercise import exercise
from ..tensor import Tensor
from .module import state_dict_problems


def _check_number(value, name, owner, low=0, high=None):
    """``value`` as a float in [low, high) (high exclusive), else a one-line ValueError naming it."""
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value) or value < low or (high is not None and value >= high)):
        bounds = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"{owner}: {name} must be a number {bounds}, got {value!r}")
    return float(value)


def _check_positive_int(value, name, owner):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


class Optimizer:
    """What SGD and Adam share: the parameter list, ``zero_grad``, per-parameter ``state`` and the state dict.

    A subclass lists its hyper-parameters in ``hyper`` (checked by the constructor of the subclass) and its
    per-parameter state names in ``state_names``; ``lr`` is the one hyper-parameter a schedule changes.
    """

    state_names = ()

    def __init__(self, parameters, hyper):
        owner = type(self).__name__
        self.parameters = list(parameters)
        if not self.parameters:
            raise ValueError(f"{owner}: got an empty parameter list")
        for index, param in enumerate(self.parameters):
            if not isinstance(param, Tensor) or not param.requires_grad:
                raise TypeError(f"{owner}: parameter {index} must be a Tensor with requires_grad (a Parameter), "
                                f"got {type(param).__name__}")
        self.hyper = OrderedDict(hyper)
        self.state = [{} for _ in self.parameters]

    @property
    def lr(self):
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value):
        self.hyper["lr"] = _check_number(value, "lr", type(self).__name__)

    def zero_grad(self):
        for param in self.parameters:
            param.grad = None

    def state_dict(self):
        """Hyper-parameters and every parameter's state (copies), flat ``{key: ndarray}``."""
        out = OrderedDict((f"param_group.{name}", np.array(value)) for name, value in self.hyper.items())
        for index, state in enumerate(self.state):
            for name, value in state.items():
                out[f"{index}.{name}"] = np.array(value)
        return out

    def load_state_dict(self, state_dict):
        """Restore the state of :meth:`state_dict` in place: every hyper-parameter but ``lr`` must be equal
        (a different one would make the resumed run differ from an uninterrupted one)."""
        owner = f"{type(self).__name__}.load_state_dict"
        values = {key: np.asarray(value) for key, value in state_dict.items()}
        missing = [f"param_group.{name}" for name in self.hyper if f"param_group.{name}" not in values]
        unexpected, misshaped, state = [], [], [{} for _ in self.parameters]
        for key, value in values.items():
            head, _, name = key.partition(".")
            if head == "param_group":
                if name not in self.hyper:
                    unexpected.append(key)
                continue
            if not head.isdigit() or int(head) >= len(self.parameters) or name not in self.state_names:
                unexpected.append(key)
                continue
            param = self.parameters[int(head)]
            wanted = () if name == "step" else param.shape
            if value.shape != wanted:
                misshaped.append((key, wanted, value.shape))
            state[int(head)][name] = value
        if missing or unexpected or misshaped:
            raise state_dict_problems(missing, unexpected, misshaped, owner)
        for name, current in self.hyper.items():
            saved = values[f"param_group.{name}"].tolist()
            if name != "lr" and saved != current:
                raise ValueError(f"{owner}: the state dict has {name}={saved!r}, this optimizer {name}={current!r}")
        self.hyper["lr"] = float(values["param_group.lr"])
        self.state = [{name: (int(v) if name == "step" else np.array(v, dtype=self.parameters[i].dtype))
                       for name, v in s.items()} for i, s in enumerate(state)]


class SGD(Optimizer):
    r"""One step per call, for every parameter p with a gradient:

    .. math:: d = \nabla p + \lambda p, \qquad v \leftarrow \mu v + d \ (v = d \text{ at the first step}),
              \qquad p \leftarrow p - \eta v

    (λ = ``weight_decay``, μ = ``momentum``, η = ``lr``; the same rule as ``torch.optim.SGD`` without dampening.)
    State per parameter: ``momentum_buffer`` v (from the first step, when μ > 0).
    """

    state_names = ("momentum_buffer",)

    def __init__(self, parameters, lr, momentum=0.0, weight_decay=0.0):
        hyper = [(name, _check_number(value, name, "SGD")) for name, value in
                 (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay))]
        super().__init__(parameters, hyper)

    def step(self):
        lr, momentum, weight_decay = self.hyper["lr"], self.hyper["momentum"], self.hyper["weight_decay"]
        for param, state in zip(self.parameters, self.state):
            if param.grad is None:
                continue
            buffer = sgd_update(param.data, param.grad, state.get("momentum_buffer"), lr, momentum, weight_decay)
            if buffer is not None:
                state["momentum_buffer"] = buffer


@exercise("10.1", "SGD with momentum and weight decay: one in-place step of one parameter, returning the new "
                  "momentum buffer (lesson 10)")
def sgd_update(param, grad, buffer, lr, momentum, weight_decay):
    r"""One step of :class:`SGD` for one parameter, in place: with η = ``lr``, μ = ``momentum``,
    λ = ``weight_decay``,

    .. math:: d = g + \lambda p, \qquad v \leftarrow \mu v + d \ (v = d \text{ when there is no buffer yet}),
              \qquad p \leftarrow p - \eta v

    (without momentum, μ = 0, the step is :math:`p \leftarrow p - \eta d`). param p: ndarray, updated in place
    and kept in its dtype; grad g: its gradient, same shape; buffer v: the momentum buffer or None before the
    first step. Returns the new buffer (a new array, never ``grad`` itself), or None when μ = 0.
    """
    # BEGIN SOLUTION
    direction = grad + weight_decay * param if weight_decay else grad
    if momentum:
        direction = np.array(direction) if buffer is None else momentum * buffer + direction
    param -= (lr * direction).astype(param.dtype)
    return direction if momentum else None
    # END SOLUTION


class Adam(Optimizer):
    r"""Adam (Kingma & Ba), PyTorch's rule with L2 weight decay (``torch.optim.Adam``, not AdamW). At the
    t-th step of a parameter p with a gradient:

    .. math:: g = \nabla p + \lambda p, \qquad m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
              v \leftarrow \beta_2 v + (1 - \beta_2) g^2,

    .. math:: p \leftarrow p - \frac{\eta}{1 - \beta_1^t} \cdot
              \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    (m = v = 0 before the first step; λ = ``weight_decay``, η = ``lr``, (β₁, β₂) = ``betas``, ε = ``eps``.)
    State per parameter: ``step`` t, ``exp_avg`` m, ``exp_avg_sq`` v.
    """

    state_names = ("step", "exp_avg", "exp_avg_sq")

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        hyper = [("lr", _check_number(lr, "lr", "Adam")),
                 ("beta1", _check_number(betas[0], "betas[0]", "Adam", high=1)),
                 ("beta2", _check_number(betas[1], "betas[1]", "Adam", high=1)),
                 ("eps", _check_number(eps, "eps", "Adam")),
                 ("weight_decay", _check_number(weight_decay, "weight_decay", "Adam"))]
        super().__init__(parameters, hyper)

    def step(self):
        lr, beta1, beta2, eps, weight_decay = self.hyper.values()
        for param, state in zip(self.parameters, self.state):
            if param.grad is None:
                continue
            grad = param.grad + weight_decay * param.data if weight_decay else param.grad
            if not state:
                state.update(step=0, exp_avg=np.zeros_like(param.data), exp_avg_sq=np.zeros_like(param.data))
            state["step"] += 1
            t = state["step"]
            state["exp_avg"] = (beta1 * state["exp_avg"] + (1 - beta1) * grad).astype(param.dtype)
            state["exp_avg_sq"] = (beta2 * state["exp_avg_sq"] + (1 - beta2) * grad * grad).astype(param.dtype)
            denominator = np.sqrt(state["exp_avg_sq"]) / math.sqrt(1 - beta2 ** t) + eps
            param.data -= (lr / (1 - beta1 ** t) * state["exp_avg"] / denominator).astype(param.dtype)


class _Schedule:
    """Per-epoch learning rate: ``step()`` once after each epoch (PyTorch's order: after the optimizer steps).

    ``last_epoch`` counts the calls; the optimizer's ``lr`` is set to :meth:`lr_at` (last_epoch) at
    construction (epoch 0: the optimizer's own lr, the base) and after every ``step()``.
    """

    def __init__(self, optimizer, config):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: optimizer must be an SGD or Adam, got {type(optimizer).__name__}")
        self.optimizer, self.config = optimizer, OrderedDict(config)
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self.optimizer.lr = self.lr_at(0)

    def lr_at(self, epoch):
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self):
        """The lr set by the last ``step()`` (or the construction), as a one-element list (one per param group)."""
        return [self.optimizer.lr]

    def state_dict(self):
        return OrderedDict([("last_epoch", np.array(self.last_epoch)), ("base_lr", np.array(self.base_lr))]
                           + [(name, np.array(value)) for name, value in self.config.items()])

    def load_state_dict(self, state_dict):
        """Restore ``last_epoch`` and ``base_lr`` (and set the optimizer's lr to match); the schedule's own
        settings must be equal."""
        owner = f"{type(self).__name__}.load_state_dict"
        expected = ["last_epoch", "base_lr", *self.config]
        missing = [key for key in expected if key not in state_dict]
        unexpected = [key for key in state_dict if key not in expected]
        if missing or unexpected:
            raise state_dict_problems(missing, unexpected, [], owner)
        for name, current in self.config.items():
            saved = np.asarray(state_dict[name]).tolist()
            if saved != current:
                raise ValueError(f"{owner}: the state dict has {name}={saved!r}, this schedule {name}={current!r}")
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lr = float(state_dict["base_lr"])
        self.optimizer.lr = self.lr_at(self.last_epoch)


class StepLR(_Schedule):
    r""":math:`\eta_e = \eta_0 \, \gamma^{\lfloor e / s \rfloor}` after e calls of ``step()`` (s = ``step_size``),
    the closed form of ``torch.optim.lr_scheduler.StepLR``."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer, [("step_size", _check_positive_int(step_size, "step_size", "StepLR")),
                                     ("gamma", _check_number(gamma, "gamma", "StepLR"))])

    def lr_at(self, epoch):
        return self.base_lr * self.config["gamma"] ** (epoch // self.config["step_size"])


class CosineAnnealingLR(_Schedule):
    r""":math:`\eta_e = \eta_{min} + \tfrac{1}{2}(\eta_0 - \eta_{min})(1 + \cos(\pi e / T_{max}))` after e calls
    of ``step()``: η₀ at e = 0, η_min at e = T_max (and back up after it, as PyTorch's, which computes the same
    curve recursively)."""

    def __init__(self, optimizer, T_max, eta_min=0.0):  # noqa: N803 (PyTorch's argument name)
        super().__init__(optimizer, [("T_max", _check_positive_int(T_max, "T_max", "CosineAnnealingLR")),
                                     ("eta_min", _check_number(eta_min, "eta_min", "CosineAnnealingLR"))])

    def lr_at(self, epoch):
        eta_min = self.config["eta_min"]
        return eta_min + (self.base_lr - eta_min) * (1 + math.cos(math.pi * epoch / self.config["T_max"])) / 2

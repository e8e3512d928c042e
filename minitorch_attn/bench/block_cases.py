"""The block cases: our CBAM and BAM modules (their defaults, train mode) and the same blocks in plain PyTorch.

The PyTorch blocks follow the official code's structure (MODELS/cbam.py, bam.py) with our modules'
default options, written in the fastest eager form found (one fused op where PyTorch has one,
e.g. ``addcmul`` for F + F·gate; the max pools in the variant named by ``variant``). They read the
*same* parameter values as our module (copied from its ``named_parameters`` / ``named_buffers``), and
the benchmark compares both before timing, so a PyTorch formula that drifts from our defaults fails the
check instead of being timed.
"""
from __future__ import annotations

import numpy as np

from ..nn import BAM, CBAM, BatchNorm1d, BatchNorm2d, init
from ..tensor import Tensor
from .ops_cases import MAX_VARIANTS, channel_max, global_max

BLOCK_VARIANTS = {"cbam": MAX_VARIANTS, "bam": ("eager",)}


def build_module(name, channels, dtype, seed):
    """Our block with its default options, parameters drawn from ``seed``, in train mode."""
    init.manual_seed(seed)
    module = {"cbam": CBAM, "bam": BAM}[name](channels)
    # Batch norms start at γ = 1, β = 0; random values instead make every parameter's gradient count in the check.
    rng = np.random.default_rng(seed)
    for _, param in module.named_parameters():
        if np.all(param.data == param.data.flat[0]):
            param.data[...] = rng.uniform(0.5, 1.5, param.shape)
    return module.to(dtype).train()


def rounding_noise_parameters(name, module):
    """Parameters whose exact gradient is 0, so that both sides return only rounding noise: the biases right
    before a train-mode batch norm (the batch mean removes any constant). At float32 that noise reaches 1e-3
    of the other gradients, so the check leaves these out; the op tests cover the bias gradients themselves.
    """
    if name != "bam":
        return ()
    config = module.config()
    hidden_convs = config["dilation_conv_num"] + 1  # the 1×1 reduce and the dilated convs, each followed by a BN
    return ("channel_gate.fc0.bias",) + tuple(f"spatial_gate.convs.{i}.bias" for i in range(hidden_convs))


def torch_state(module, parameter_seed=None):
    """Torch copies of the module's parameters (leaves with grad) and buffers, keyed by dotted name.

    ``parameter_seed`` replaces every parameter with other random values: the check must then fail
    (the test uses it to show the comparison can catch a wrong computation).
    """
    import torch

    rng = None if parameter_seed is None else np.random.default_rng(parameter_seed)
    state = {}
    for key, param in module.named_parameters():
        values = param.data if rng is None else rng.standard_normal(param.shape).astype(param.dtype)
        state[key] = torch.tensor(values, requires_grad=True)
    for key, buffer in module.named_buffers():
        state[key] = torch.tensor(buffer)
    return state


#: The options the PyTorch blocks implement; any other value of these is refused rather than mis-timed.
SUPPORTED = {
    "cbam": dict(pool_types=("avg", "max"), no_spatial=False, arrangement="channel-spatial", spatial_bn=True,
                 compress="pool"),
    "bam": dict(fusion="sum", branches="both", bn_placement="official"),
}


def torch_options(name, module):
    """What the PyTorch block reads from our module: its config and ``bn``: {dotted name: (momentum, eps)}."""
    config = module.config()
    unsupported = {key: config[key] for key, value in SUPPORTED[name].items() if config[key] != value}
    if unsupported:
        raise ValueError(f"the PyTorch {name} implements {SUPPORTED[name]}; the module has {unsupported}")
    bn = {key: (m.momentum, m.eps) for key, m in module.named_modules() if isinstance(m, (BatchNorm1d, BatchNorm2d))}
    return dict(config, bn=bn)


def _torch_batch_norm(x, state, options, name):
    import torch.nn.functional as F

    momentum, eps = options["bn"][name]
    return F.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                        state[f"{name}.bias"], training=True, momentum=momentum, eps=eps)


def torch_cbam(x, state, options, variant):
    """CBAM, channel then spatial: MLP with biases, channel pool [mean; max], 7×7 conv, BN, sigmoid."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    # both descriptors through the shared MLP in one batch: one GEMM per layer instead of two
    descriptors = torch.cat([x.mean(dim=(2, 3)), global_max(x, variant)], dim=0)
    hidden = F.relu(F.linear(descriptors, state["channel_gate.fc0.weight"], state["channel_gate.fc0.bias"]))
    mlp = F.linear(hidden, state["channel_gate.fc1.weight"], state["channel_gate.fc1.bias"])
    refined = x * torch.sigmoid(mlp[:n] + mlp[n:])[:, :, None, None]
    pooled = torch.cat([refined.mean(dim=1, keepdim=True), channel_max(refined, variant)], dim=1)
    logit = F.conv2d(pooled, state["spatial_gate.conv.weight"], padding=options["kernel_size"] // 2)
    logit = _torch_batch_norm(logit, state, options, "spatial_gate.bn")
    return refined * torch.sigmoid(logit)


def torch_bam(x, state, options, variant):
    """BAM with sum fusion and the official BN placement: F + F·σ(M_c + M_s)."""
    import torch
    import torch.nn.functional as F

    hidden = F.linear(x.mean(dim=(2, 3)), state["channel_gate.fc0.weight"], state["channel_gate.fc0.bias"])
    hidden = F.relu(_torch_batch_norm(hidden, state, options, "channel_gate.hidden_bn"))
    channel_logit = F.linear(hidden, state["channel_gate.fc1.weight"], state["channel_gate.fc1.bias"])
    h = x
    last = options["dilation_conv_num"] + 1
    for i in range(last):
        dilation = 1 if i == 0 else options["dilation_val"]
        h = F.conv2d(h, state[f"spatial_gate.convs.{i}.weight"], state[f"spatial_gate.convs.{i}.bias"],
                     padding=0 if i == 0 else dilation, dilation=dilation)
        h = F.relu(_torch_batch_norm(h, state, options, f"spatial_gate.hidden_bns.{i}"))
    spatial_logit = F.conv2d(h, state[f"spatial_gate.convs.{last}.weight"], state[f"spatial_gate.convs.{last}.bias"])
    return torch.addcmul(x, x, torch.sigmoid(channel_logit[:, :, None, None] + spatial_logit))


TORCH_BLOCKS = {"cbam": torch_cbam, "bam": torch_bam}


class OursBlock:
    """Our module on a fixed input and upstream gradient; the two timed passes."""

    def __init__(self, name, shape, dtype, seed):
        rng = np.random.default_rng(seed)
        self.module = build_module(name, shape[1], np.dtype(dtype), seed)
        skipped = rounding_noise_parameters(name, self.module)
        #: the parameters whose gradients the check compares, in ``named_parameters`` order
        self.compared = [key for key, _ in self.module.named_parameters() if key not in skipped]
        self.input = rng.standard_normal(shape).astype(dtype)
        self.upstream = rng.standard_normal(shape).astype(dtype)

    def forward(self):
        from ..autograd import no_grad

        with no_grad():
            return (self.module(Tensor(self.input)).data,)

    def forward_backward(self):
        """((output,), (dx, d parameter, ...)) for the parameters in ``compared``."""
        self.module.zero_grad()
        x = Tensor(self.input, requires_grad=True)
        out = self.module(x)
        out.backward(self.upstream)
        parameters = dict(self.module.named_parameters())
        return (out.data,), (x.grad,) + tuple(parameters[key].grad for key in self.compared)


class TorchBlock:
    """The PyTorch block on copies of the same input, parameters, buffers and upstream gradient."""

    def __init__(self, ours, name, variant, parameter_seed=None):
        import torch

        self.forward_fn, self.variant = TORCH_BLOCKS[name], variant
        self.state = torch_state(ours.module, parameter_seed)
        self.options = torch_options(name, ours.module)
        self.parameters = [self.state[key] for key, _ in ours.module.named_parameters()]
        self.compared = [self.state[key] for key in ours.compared]
        self.input = torch.tensor(ours.input, requires_grad=True)
        self.upstream = torch.from_numpy(ours.upstream)

    def forward(self):
        import torch

        with torch.no_grad():
            return (self.forward_fn(self.input, self.state, self.options, self.variant),)

    def forward_backward(self):
        for t in [self.input] + self.parameters:
            t.grad = None
        out = self.forward_fn(self.input, self.state, self.options, self.variant)
        out.backward(self.upstream)
        return (out,), (self.input.grad,) + tuple(p.grad for p in self.compared)

"""minitorch_attn.nn core: Module habits, standard layers against torch.nn, initialisation, SGD."""
import numpy as np
import pytest
import torch
from torch import nn as tnn

from minitorch_attn import Tensor, backend, interop, nn
from minitorch_attn.testing import TOLERANCE, assert_close


def small_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, 2))


def test_state_dict_keys_and_order_match_pytorch():
    ours = small_net()
    theirs = tnn.Sequential(tnn.Conv2d(3, 4, 3, padding=1), tnn.BatchNorm2d(4), tnn.ReLU(), tnn.Flatten(),
                            tnn.Linear(100, 2))
    expected = [k for k in theirs.state_dict() if not k.endswith("num_batches_tracked")]
    assert list(ours.state_dict()) == expected
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in theirs.named_parameters()]
    assert [name for name, _ in ours.named_buffers()] == ["1.running_mean", "1.running_var"]
    assert len(list(ours.children())) == 5


def test_state_dict_is_a_copy_and_load_is_in_place():
    net = small_net()
    state = net.state_dict()
    weight = net[0].weight
    state["0.weight"][...] = 0
    assert np.abs(weight.data).max() > 0
    net.load_state_dict(state)
    assert net[0].weight is weight and np.all(weight.data == 0)


def test_load_state_dict_lists_every_problem():
    net = small_net()
    state = net.state_dict()
    del state["1.running_var"]
    state["5.weight"] = np.zeros(2)
    state["4.bias"] = np.zeros(3)
    with pytest.raises(nn.StateDictError) as info:
        net.load_state_dict(state)
    message = str(info.value)
    assert "missing keys (1): 1.running_var" in message
    assert "unexpected keys (1): 5.weight" in message
    assert "4.bias (expected (2,), got (3,))" in message


def test_load_state_dict_non_strict_reports_and_still_rejects_shapes():
    net = small_net()
    state = net.state_dict()
    del state["1.running_var"]
    state["extra"] = np.zeros(1)
    assert net.load_state_dict(state, strict=False) == (["1.running_var"], ["extra"])
    state["4.bias"] = np.zeros(3)
    with pytest.raises(nn.StateDictError, match="mis-shaped"):
        net.load_state_dict(state, strict=False)


def test_load_state_dict_from_torch_tensors():
    theirs = tnn.Linear(3, 2)
    ours = nn.Linear(3, 2)
    ours.load_state_dict(theirs.state_dict())
    np.testing.assert_array_equal(ours.weight.data, theirs.weight.detach().numpy())


def test_train_eval_zero_grad_and_dtype_conversion_keep_parameters():
    net = small_net()
    params = list(net.parameters())
    assert all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    net.double()
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == np.float64 for p in params) and net[1].running_mean.dtype == np.float64
    out = net(np.random.default_rng(0).standard_normal((2, 3, 5, 5)))
    out.backward(np.ones(out.shape))
    assert all(p.grad is not None for p in params)
    net.zero_grad()
    assert all(p.grad is None for p in params)
    assert net.float().dtype == np.float32
    with pytest.raises(TypeError, match="float32 or float64"):
        net.to(np.int32)


def test_repr_is_readable():
    text = repr(small_net())
    assert "(0): Conv2d(3, 4, kernel_size=(3, 3), padding=(1, 1))" in text
    assert "(1): BatchNorm2d(4, eps=1e-05, momentum=0.1)" in text
    assert "(4): Linear(in_features=100, out_features=2, bias=True)" in text


def test_forward_hooks_run_and_can_be_removed():
    seen = []
    layer = nn.ReLU()
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    layer(np.ones((2, 3)))
    handle.remove()
    layer(np.ones((2, 3)))
    assert seen == [(2, 3)]


def test_assigning_registers_and_reassigning_unregisters():
    module = nn.Module()
    module.layer = nn.Linear(2, 2)
    module.scale = nn.Parameter(np.ones(1, np.float32))
    assert [k for k, _ in module.named_parameters()] == ["scale", "layer.weight", "layer.bias"]
    module.layer = None
    assert [k for k, _ in module.named_parameters()] == ["scale"] and module.layer is None


def test_seed_makes_initialisation_reproducible():
    nn.manual_seed(3)
    first = small_net().state_dict()
    nn.manual_seed(3)
    second = small_net().state_dict()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    nn.manual_seed(4)
    assert not np.array_equal(small_net().state_dict()["0.weight"], first["0.weight"])


@pytest.mark.parametrize("layer, fan_in", [(lambda: nn.Linear(200, 300), 200),
                                           (lambda: nn.Conv2d(16, 64, 3, groups=4), 36)])
def test_default_init_follows_pytorch(layer, fan_in):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases: range and the uniform variance bound²/3."""
    nn.manual_seed(0)
    module = layer()
    bound = 1 / np.sqrt(fan_in)
    for values in (module.weight.data, module.bias.data):
        assert values.dtype == np.float32 and np.abs(values).max() <= bound
    assert abs(module.weight.data.std() - bound / np.sqrt(3)) < 0.05 * bound
    assert np.abs(module.bias.data).max() > 0.8 * bound


def test_batch_norm_defaults():
    bn = nn.BatchNorm2d(3)
    assert np.all(bn.weight.data == 1) and np.all(bn.bias.data == 0)
    assert np.all(bn.running_mean == 0) and np.all(bn.running_var == 1)


LAYERS = {
    "linear": (lambda: tnn.Linear(6, 4), (5, 6)),
    "linear-no-bias": (lambda: tnn.Linear(6, 4, bias=False), (5, 6)),
    "conv-stride-pad": (lambda: tnn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 7, 6)),
    "conv-dilated": (lambda: tnn.Conv2d(4, 2, 3, padding=2, dilation=2, bias=False), (2, 4, 6, 5)),
    "conv-depthwise": (lambda: tnn.Conv2d(4, 4, 3, padding=1, groups=4), (2, 4, 5, 5)),
    "bn1d": (lambda: tnn.BatchNorm1d(4), (6, 4)),
    "bn1d-3d": (lambda: tnn.BatchNorm1d(4, momentum=0.3), (3, 4, 5)),
    "bn2d": (lambda: tnn.BatchNorm2d(3, eps=1e-3), (2, 3, 4, 5)),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_layer_matches_torch(name, training, dtype, backend_name):
    """from_torch gives a layer with the same numbers: output, input grad, parameter grads, running stats."""
    build, shape = LAYERS[name]
    theirs = build().to({np.float32: torch.float32, np.float64: torch.float64}[dtype.type])
    with torch.no_grad():
        for i, value in enumerate(list(theirs.parameters()) + [b for b in theirs.buffers() if b.is_floating_point()]):
            value.copy_(torch.rand(value.shape, generator=torch.Generator().manual_seed(i)) + 0.5)
    theirs.train(training)
    ours = interop.from_torch(theirs)
    assert ours.training == training and ours.dtype == dtype
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    ours_in, theirs_in = Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
    with backend(backend_name):
        out = ours(ours_in)
        upstream = rng.standard_normal(out.shape).astype(dtype)
        out.backward(upstream)
    ref = theirs(theirs_in)
    ref.backward(torch.from_numpy(upstream))
    tol = TOLERANCE[dtype]
    assert_close(out.data, ref.detach().numpy(), tol, "output")
    assert_close(ours_in.grad, theirs_in.grad.numpy(), tol, "input grad")
    for (key, param), (_, their) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert_close(param.grad, their.grad.numpy(), tol, f"grad of {key}")
    their_state = theirs.state_dict()
    for key, buffer in ours.named_buffers():
        assert_close(buffer, their_state[key].numpy(), tol, key)


@pytest.mark.parametrize("module, x, message", [
    (lambda: nn.Linear(4, 2), np.ones((3, 5), np.float32), "expected 4 channels (dim 1), got 5"),
    (lambda: nn.Conv2d(3, 2, 1), np.ones((1, 3, 4), np.float32), "expected a 4-d input, got a 3-d input"),
    (lambda: nn.BatchNorm2d(3), np.ones((2, 4, 2, 2), np.float32), "expected 3 channels (dim 1), got 4"),
    (lambda: nn.BatchNorm1d(3), np.ones((2, 3, 2, 2), np.float32), "expected a 2-d or 3-d input"),
])
def test_layers_check_their_input(module, x, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        module()(x)


def test_dtype_mismatch_is_a_clear_error():
    with pytest.raises(TypeError, match="input dtype is float64 but the module's parameters are float32"):
        nn.Linear(2, 2)(np.ones((1, 2)))


@pytest.mark.parametrize("args, message", [
    ((0, 2), "in_features must be a positive int"),
    ((2, 2.5), "out_features must be a positive int"),
])
def test_linear_checks_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        nn.Linear(*args)


def test_conv_checks_groups():
    with pytest.raises(ValueError, match="divisible by groups=2"):
        nn.Conv2d(3, 4, 3, groups=2)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-2)])
def test_sgd_matches_torch(momentum, weight_decay):
    ours = nn.Linear(4, 3).double()
    theirs = interop.to_torch(ours)
    opt = nn.SGD(ours.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    their_opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((5, 4))
        opt.zero_grad()
        their_opt.zero_grad()
        ours(x).sum().backward()
        theirs(torch.from_numpy(x)).sum().backward()
        opt.step()
        their_opt.step()
    assert_close(ours.weight.data, theirs.weight.detach().numpy())
    assert_close(ours.bias.data, theirs.bias.detach().numpy())


def test_sgd_rejects_negative_rates():
    with pytest.raises(ValueError, match="lr must be a number >= 0, got -1"):
        nn.SGD([], lr=-1)

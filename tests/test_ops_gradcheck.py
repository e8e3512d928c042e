"""Every op's backward against central differences of its own forward (float64, tiny shapes, no ties).

Independent of PyTorch: this is the check a student can run on an op PyTorch does not have.
"""
import numpy as np
import pytest

from minitorch_attn import Tensor, backend, no_grad
from minitorch_attn.parity import CASES, Draw, backpropagate, own_copies, upstream_gradients
from minitorch_attn.testing import assert_close, numerical_gradient


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_backward_matches_central_differences(case, seed, backend_name):
    sample = case.make(Draw.seeded((seed, 7), np.float64, small=True))
    names = list(sample.inputs)

    with backend(backend_name):
        leaves = [Tensor(a, requires_grad=True) for a in sample.inputs.values()]
        outputs = _as_tuple(case.ours(*leaves, **own_copies(sample.options)))
        upstream = upstream_gradients([out.shape for out in outputs], np.float64, seed)
        backpropagate(outputs, upstream)

    flat_upstream = np.concatenate([u.ravel() for u in upstream])
    for index, name in enumerate(names):
        # numerical_gradient perturbs this very array (maybe a non-contiguous view) and restores it.
        probe = sample.inputs[name]
        arrays = list(sample.inputs.values())

        def forward(_):
            with no_grad(), backend(backend_name):
                results = _as_tuple(case.ours(*arrays, **own_copies(sample.options)))
            return np.concatenate([r.numpy().ravel() for r in results])

        expected = numerical_gradient(forward, probe, flat_upstream)
        assert_close(leaves[index].grad, expected, tol=1e-6, name=f"{case.name} d {name} [{sample.describe()}]")


def test_numerical_gradient_of_a_non_contiguous_view():
    """The helper must perturb the view itself, not a flattened copy the function never reads."""
    base = np.random.default_rng(0).standard_normal((4, 6))
    view = base[:, ::2].T  # (3, 4), neither C- nor F-contiguous
    weights = np.random.default_rng(1).standard_normal((3, 4))
    grad = numerical_gradient(lambda v: v**2, view, weights)
    assert_close(grad, 2 * view * weights, tol=1e-8)

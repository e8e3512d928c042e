"""Bad input: every op raises a ValueError/TypeError that names the argument, the expected and the received value."""
import re

import numpy as np
import pytest

from minitorch_attn import Tensor, ops


def t(*shape, dtype=np.float64):
    return Tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


def raises(error, *fragments):
    """``pytest.raises`` that also wants every fragment (plain text) in the message."""
    return pytest.raises(error, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


NCHW_OPS = [ops.global_avg_pool, ops.global_max_pool, ops.global_lp_pool, ops.global_lse_pool,
            ops.global_avg_max_pool, ops.channel_mean, ops.channel_max]


@pytest.mark.parametrize("op", NCHW_OPS, ids=lambda op: op.__name__)
class TestPoolingInput:
    def test_wrong_ndim(self, op):
        with raises(ValueError, "x", "4-d", "(N, C, H, W)", "(2, 3, 4)"):
            op(t(2, 3, 4))

    def test_integer_array(self, op):
        with raises(TypeError, "x", "float32 or float64", "int64"):
            op(np.ones((1, 2, 3, 3), np.int64))

    def test_not_an_array(self, op):
        with raises(TypeError, "x", "Tensor or ndarray", "list"):
            op([[[[1.0]]]])

    def test_empty_dimension(self, op):
        with raises(ValueError, "x", ">= 1", "(2, 3, 0, 4)"):
            op(t(2, 3, 0, 4))


class TestLinear:
    def test_feature_mismatch(self):
        with raises(ValueError, "x has 3 features", "in_features=4", "(5, 4)"):
            ops.linear(t(2, 3), t(5, 4))

    def test_wrong_ndim(self):
        with raises(ValueError, "x", "2-d", "(2, 3, 1)"):
            ops.linear(t(2, 3, 1), t(5, 3))
        with raises(ValueError, "weight", "2-d", "(5,)"):
            ops.linear(t(2, 3), t(5))

    def test_bias_shape(self):
        with raises(ValueError, "bias", "(5,)", "(4,)"):
            ops.linear(t(2, 3), t(5, 3), t(4))

    def test_mixed_dtypes(self):
        with raises(TypeError, "x=float32", "weight=float64"):
            ops.linear(t(2, 3, dtype=np.float32), t(5, 3))


class TestConv2d:
    def test_channel_mismatch(self):
        with raises(ValueError, "x has 4 channels", "C_in = 3", "groups 1"):
            ops.conv2d(t(1, 4, 5, 5), t(2, 3, 3, 3))

    def test_channel_mismatch_with_groups(self):
        with raises(ValueError, "x has 4 channels", "C_in = 1", "groups 2", "= 2"):
            ops.conv2d(t(1, 4, 5, 5), t(2, 1, 3, 3), groups=2)

    def test_c_out_not_divisible_by_groups(self):
        with raises(ValueError, "C_out=3", "groups=2"):
            ops.conv2d(t(1, 4, 5, 5), t(3, 2, 3, 3), groups=2)

    @pytest.mark.parametrize("groups", [0, -1, 1.0])
    def test_bad_groups(self, groups):
        with raises(ValueError, "groups", repr(groups)):
            ops.conv2d(t(1, 2, 5, 5), t(2, 2, 3, 3), groups=groups)

    def test_wrong_ndim(self):
        with raises(ValueError, "x", "4-d", "(2, 5, 5)"):
            ops.conv2d(t(2, 5, 5), t(2, 2, 3, 3))
        with raises(ValueError, "weight", "4-d", "(2, 2, 3)"):
            ops.conv2d(t(1, 2, 5, 5), t(2, 2, 3))

    def test_kernel_larger_than_padded_input(self):
        with raises(ValueError, "kernel height 7", "spans 7", "4 + 2×1 = 6"):
            ops.conv2d(t(1, 2, 4, 9), t(2, 2, 7, 7), padding=1)

    def test_dilated_kernel_larger_than_input(self):
        with raises(ValueError, "kernel width 3", "dilation 3", "spans 7", "5 + 2×0 = 5"):
            ops.conv2d(t(1, 2, 9, 5), t(2, 2, 3, 3), dilation=3)

    @pytest.mark.parametrize("argument", ["stride", "dilation"])
    @pytest.mark.parametrize("value", [0, (1, 0), -2])
    def test_stride_and_dilation_below_one(self, argument, value):
        with raises(ValueError, argument, ">= 1", repr(value)):
            ops.conv2d(t(1, 2, 5, 5), t(2, 2, 3, 3), **{argument: value})

    def test_negative_padding(self):
        with raises(ValueError, "padding", ">= 0", "-1"):
            ops.conv2d(t(1, 2, 5, 5), t(2, 2, 3, 3), padding=-1)

    @pytest.mark.parametrize("argument, value", [("padding", 1.5), ("stride", (1, 2, 3)), ("dilation", "2"),
                                                 ("stride", (1.0, 1))])
    def test_not_an_int_pair(self, argument, value):
        with raises(ValueError, argument, "an int or a pair of ints", repr(value)):
            ops.conv2d(t(1, 2, 5, 5), t(2, 2, 3, 3), **{argument: value})

    def test_unknown_padding_name(self):
        with raises(ValueError, "padding", "'same'", "'valid-ish'"):
            ops.conv2d(t(1, 2, 5, 5), t(2, 2, 3, 3), padding="valid-ish")

    def test_same_padding_with_even_kernel(self):
        with raises(ValueError, "padding='same'", "odd kernel", "(2, 3)", "dilation (1, 1)"):
            ops.conv2d(t(1, 2, 5, 5), t(2, 2, 2, 3), padding="same")

    def test_same_padding_with_stride(self):
        with raises(ValueError, "padding='same'", "stride 1", "(2, 2)"):
            ops.conv2d(t(1, 2, 5, 5), t(2, 2, 3, 3), padding="same", stride=2)

    def test_bias_shape(self):
        with raises(ValueError, "bias", "(2,)", "(3,)"):
            ops.conv2d(t(1, 2, 5, 5), t(2, 2, 3, 3), t(3))

    def test_non_float_weight(self):
        with raises(TypeError, "weight", "float32 or float64", "int32"):
            ops.conv2d(t(1, 2, 5, 5), np.ones((2, 2, 3, 3), np.int32))


class TestBatchNorm:
    @staticmethod
    def call(x, channels=3, training=True, **overrides):
        dtype = x.dtype if isinstance(x, Tensor) else np.float64
        arguments = dict(running_mean=np.zeros(channels, dtype), running_var=np.ones(channels, dtype),
                         weight=t(channels, dtype=dtype), bias=t(channels, dtype=dtype), training=training)
        arguments.update(overrides)
        return ops.batch_norm(x, **arguments)

    @pytest.mark.parametrize("shape", [(6,), (2, 3, 2, 2, 2)])
    def test_wrong_ndim(self, shape):
        with raises(ValueError, "x", "(N, C)", "(N, C, H, W)", str(shape)):
            self.call(t(*shape))

    @pytest.mark.parametrize("name", ["weight", "bias"])
    def test_parameter_channel_mismatch(self, name):
        with raises(ValueError, name, "(3,)", "(4,)", "(2, 3, 4, 4)"):
            self.call(t(2, 3, 4, 4), **{name: t(4)})

    @pytest.mark.parametrize("name", ["running_mean", "running_var"])
    def test_buffer_channel_mismatch(self, name):
        with raises(ValueError, name, "(3,)", "(2,)"):
            self.call(t(2, 3, 4, 4), **{name: np.ones(2)})

    @pytest.mark.parametrize("name", ["running_mean", "running_var"])
    def test_buffer_dtype(self, name):
        with raises(TypeError, name, "float32", "float64"):
            self.call(t(2, 3, 4, 4, dtype=np.float32), **{name: np.ones(3)})

    def test_buffer_must_be_an_array(self):
        with raises(TypeError, "running_mean", "ndarray", "Tensor"):
            self.call(t(2, 3, 4, 4), running_mean=t(3))

    @pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3)])
    def test_one_value_per_channel_in_train_mode(self, shape):
        with raises(ValueError, "x", "more than 1 value per channel", str(shape)):
            self.call(t(*shape))

    def test_one_value_per_channel_is_fine_in_eval_mode(self):
        assert self.call(t(1, 3, 1, 1), training=False).shape == (1, 3, 1, 1)

    def test_eval_mode_needs_running_stats(self):
        with raises(ValueError, "eval mode", "running_mean and running_var"):
            self.call(t(2, 3), training=False, running_mean=None)

    @pytest.mark.parametrize("momentum", [-0.1, 1.5])
    def test_momentum_range(self, momentum):
        with raises(ValueError, "momentum", "[0, 1]", str(momentum)):
            self.call(t(2, 3), momentum=momentum)

    @pytest.mark.parametrize("eps", [0, -1e-5])
    def test_eps_positive(self, eps):
        with raises(ValueError, "eps", "> 0", str(eps)):
            self.call(t(2, 3), eps=eps)

    def test_no_buffer_changes_on_bad_input(self):
        running_mean = np.zeros(3)
        with pytest.raises(ValueError):
            self.call(t(2, 3, 4, 4), running_mean=running_mean, weight=t(4))
        assert not running_mean.any()


class TestArithmetic:
    @pytest.mark.parametrize("op", [ops.mul, ops.add], ids=["mul", "add"])
    def test_shapes_that_do_not_broadcast(self, op):
        with raises(ValueError, "a", "b", "broadcast", "(2, 3)", "(4,)"):
            op(t(2, 3), t(4))

    @pytest.mark.parametrize("op", [ops.mul, ops.add], ids=["mul", "add"])
    def test_mixed_dtypes(self, op):
        with raises(TypeError, "a=float64", "b=float32"):
            op(t(2, 3), t(2, 3, dtype=np.float32))

    def test_integer_array_operand(self):
        with raises(TypeError, "b", "float32 or float64", "int64"):
            ops.mul(t(2, 3), np.ones((2, 3), np.int64))

    def test_concat_mismatch(self):
        with raises(ValueError, "tensors[1]", "(2, 3, 5, 5)", "(2, 1, 4, 5)", "dim 1"):
            ops.concat([t(2, 1, 4, 5), t(2, 3, 5, 5)])

    def test_concat_empty(self):
        with raises(ValueError, "tensors", "empty"):
            ops.concat([])

    @pytest.mark.parametrize("shape", [(5, 5), (-1, -1), (7, -1), (-2, 12)])
    def test_reshape_count_mismatch(self, shape):
        with raises(ValueError, "reshape", "(2, 3, 4)", str(shape)):
            ops.reshape(t(2, 3, 4), shape)


class TestLossAndGates:
    def test_cross_entropy_labels(self):
        with raises(ValueError, "labels", "integers", "(3,)", "float64"):
            ops.cross_entropy(t(3, 4), np.zeros(3))
        with raises(ValueError, "labels", "(3,)", "(2,)"):
            ops.cross_entropy(t(3, 4), np.zeros(2, np.int64))
        with raises(ValueError, "labels", "[0, 4)", "4"):
            ops.cross_entropy(t(3, 4), np.array([0, 4, 1]))
        with raises(ValueError, "labels", "[0, 4)", "-1"):
            ops.cross_entropy(t(3, 4), np.array([0, -1, 1]))

    def test_cross_entropy_logits_ndim(self):
        with raises(ValueError, "logits", "2-d", "(N, K)", "(3, 4, 1)"):
            ops.cross_entropy(t(3, 4, 1), np.zeros(3, np.int64))

    def test_channel_gate_shape(self):
        with raises(ValueError, "gate", "(2, 3)", "(2, 4)"):
            ops.gated_channel_pool(t(2, 3, 4, 4), t(2, 4))
        with raises(ValueError, "gate", "2-d", "(2, 3, 1, 1)"):
            ops.gated_channel_pool(t(2, 3, 4, 4), t(2, 3, 1, 1))

    def test_channel_gate_dtype(self):
        with raises(TypeError, "x=float64", "gate=float32"):
            ops.gated_channel_pool(t(2, 3, 4, 4), t(2, 3, dtype=np.float32))

    def test_channel_spatial_gate_shapes_and_dtypes(self):
        with raises(ValueError, "channel_gate", "(2, 3)", "(2, 1)"):
            ops.channel_spatial_gate(t(2, 3, 4, 4), t(2, 1), t(2, 1, 4, 4))
        with raises(ValueError, "spatial_gate", "(2, 1, 4, 4)", "(2, 3, 4, 4)"):
            ops.channel_spatial_gate(t(2, 3, 4, 4), t(2, 3), t(2, 3, 4, 4))
        with raises(TypeError, "x=float64", "spatial_gate=float32"):
            ops.channel_spatial_gate(t(2, 3, 4, 4), t(2, 3), t(2, 1, 4, 4, dtype=np.float32))

    def test_residual_gate_shapes(self):
        with raises(ValueError, "channel_logit", "(2, 3)", "(2, 1)"):
            ops.residual_gate(t(2, 3, 4, 4), t(2, 1), t(2, 1, 4, 4))
        with raises(ValueError, "spatial_logit", "(2, 1, 4, 4)", "(2, 3, 4, 4)"):
            ops.residual_gate(t(2, 3, 4, 4), t(2, 3), t(2, 3, 4, 4))
        with raises(ValueError, "spatial_logit", "4-d", "(2, 4, 4)"):
            ops.residual_gate(t(2, 3, 4, 4), t(2, 3), t(2, 4, 4))

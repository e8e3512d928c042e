"""Backbones: attention placement as in the papers, block formulas, counts, a training step, backends agree."""
import numpy as np
import pytest

from minitorch_attn import Tensor, backend, models, nn, ops
from minitorch_attn.testing import assert_close

TINY = dict(widths=(8, 8, 16, 16), attention_options=dict(reduction_ratio=4))


def attention_modules(model, kind):
    return [name for name, m in model.named_modules() if isinstance(m, kind)]


@pytest.mark.parametrize("attention, kind", [("se", nn.SE), ("cbam", nn.CBAM)])
def test_se_and_cbam_sit_in_every_residual_block(attention, kind):
    model = models.resnet18(attention=attention, **TINY)
    assert attention_modules(model, kind) == [f"stages.{s}.{b}.attention" for s in range(4) for b in range(2)]
    assert len(model.bottlenecks) == 0


def test_bam_sits_at_the_bottlenecks_between_stages():
    model = models.resnet10(attention="bam", **TINY)
    assert attention_modules(model, nn.BAM) == ["bottlenecks.0", "bottlenecks.1", "bottlenecks.2"]
    assert [b.gate_channel for b in model.bottlenecks] == [8, 8, 16]
    every = models.resnet10(attention="bam", bam_in_every_block=True, **TINY)
    assert attention_modules(every, nn.BAM) == [f"stages.{s}.0.attention" for s in range(4)]


def test_mobilenet_places_bam_before_each_downsampling_block():
    model = models.MobileNet(0.25, attention="bam", attention_options=dict(reduction_ratio=4))
    layers = list(model.features)
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.BAM):
            following = layers[index + 1]
            assert following.depthwise[0].stride == (2, 2) and following.in_channels == layer.gate_channel
    assert sum(isinstance(layer, nn.BAM) for layer in layers) == 3


def test_mobilenet_cbam_in_every_block_and_width_multiplier():
    model = models.MobileNet(0.5, attention="cbam", attention_options=dict(reduction_ratio=4))
    blocks = list(model.features)
    assert all(isinstance(b.attention, nn.CBAM) for b in blocks)
    assert [b.pointwise[0].out_channels for b in blocks] == [32, 64, 64, 128, 128, 256, 256]


def test_basic_block_applies_attention_before_the_addition():
    block = models.BasicBlock(4, 8, stride=2, attention=nn.CBAM(8, 2)).double()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4, 6, 6)))
    residual = block.attention(block.conv2(ops.relu(block.conv1(x))))
    expected = ops.relu(ops.add(residual, block.shortcut(x)))
    assert_close(block(x).data, expected.data)


def test_depthwise_separable_block_formula():
    block = models.DepthwiseSeparable(4, 8, stride=2, attention=nn.SE(8, 2)).double()
    assert block.depthwise[0].groups == 4
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4, 6, 6)))
    expected = block.attention(ops.relu(block.pointwise(ops.relu(block.depthwise(x)))))
    assert_close(block(x).data, expected.data)


def test_report_counts_parameters_and_multiply_accumulates():
    model = models.ResNet(depths=(1,), widths=(8,), num_classes=10)
    report = models.model_report(model, (3, 6, 5))
    assert report["params"] == sum(p.size for p in model.parameters()) and report["attention_params"] == 0
    pixels = 6 * 5
    assert report["macs"] == 3 * 8 * 9 * pixels + 2 * 8 * 8 * 9 * pixels + 8 * 10


def test_report_counts_attention_the_papers_way():
    """CBAM's shared MLP runs once per pooled descriptor; its spatial conv once per pixel."""
    plain = models.model_report(models.ResNet(depths=(1,), widths=(8,)), (3, 6, 5))
    with_cbam = models.model_report(models.ResNet(depths=(1,), widths=(8,), attention="cbam",
                                                  attention_options=dict(reduction_ratio=4)), (3, 6, 5))
    mlp = 8 * 2 + 2 * 8
    assert with_cbam["macs"] - plain["macs"] == 2 * mlp + 2 * 7 * 7 * 6 * 5
    assert with_cbam["attention_params"] == mlp + 2 + 8 + 2 * 49 + 2


def test_report_counts_bam_and_spatial_first_cbam_through_hooks():
    """BAM: its MLP once, its four convs at every pixel; CBAM's count does not depend on the arrangement."""
    plain = models.model_report(models.ResNet(depths=(1, 1), widths=(8, 16)), (3, 6, 5))
    with_bam = models.model_report(models.ResNet(depths=(1, 1), widths=(8, 16), attention="bam",
                                                 attention_options=dict(reduction_ratio=4)), (3, 6, 5))
    convs = 8 * 2 + 2 * (2 * 2 * 9) + 2 * 1
    assert with_bam["macs"] - plain["macs"] == 8 * 2 + 2 * 8 + convs * 6 * 5
    counts = {arrangement: models.model_report(models.ResNet(depths=(1,), widths=(8,), attention="cbam",
              attention_options=dict(reduction_ratio=4, arrangement=arrangement)), (3, 6, 5))["macs"]
              for arrangement in ("channel-spatial", "spatial-channel", "parallel")}
    assert len(set(counts.values())) == 1


def test_mac_hooks_are_removed_and_count_the_whole_batch():
    from minitorch_attn.models.report import counting_macs

    model = models.ResNet(depths=(1,), widths=(8,), attention="cbam", attention_options=dict(reduction_ratio=4))
    single = models.model_report(model, (3, 6, 5))["macs"]
    with counting_macs(model) as counter:
        model(Tensor(np.zeros((3, 3, 6, 5), np.float32)))
    assert counter[0] == 3 * single
    assert all(not m._forward_hooks for m in model.modules())


def test_zero_init_spatial_bn_touches_only_spatial_gates():
    model = models.resnet10(attention="cbam", zero_init_spatial_bn=True, **TINY)
    norms = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    spatial = [m for name, m in norms if name.endswith("spatial_gate.bn")]
    assert len(spatial) == 4 and all(np.all(m.weight.data == 0) for m in spatial)
    assert all(np.all(m.weight.data == 1) for name, m in norms if not name.endswith("spatial_gate.bn"))


@pytest.mark.parametrize("build, message", [
    (lambda: models.resnet10(attention="eca"), "attention must be one of"),
    (lambda: models.ResNet(depths=(1, 1), widths=(8,)), "one positive entry per stage"),
    (lambda: models.MobileNet(0), "width_multiplier must be > 0"),
    (lambda: models.resnet10(attention="se", widths=(8, 8, 8, 8)), "reduction_ratio=16 is larger than gate_channels=8"),
])
def test_model_arguments_are_checked(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("family", ["resnet", "mobilenet"])
@pytest.mark.parametrize("attention", [None, "se", "cbam", "bam"])
def test_a_few_sgd_steps_lower_the_loss(family, attention):
    nn.manual_seed(0)
    if family == "resnet":
        model = models.resnet10(attention=attention, num_classes=3, **TINY)
    else:
        model = models.MobileNet(0.125, num_classes=3, attention=attention, attention_options=dict(reduction_ratio=4),
                                 config=((16, 1), (32, 2)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 12, 12)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    optimizer = nn.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        loss = ops.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


def test_backends_agree_on_a_model(backend_name):
    model = models.resnet10(attention="cbam", **TINY).double().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12))
    results = {}
    for name in ("numpy", backend_name):
        model.zero_grad()
        with backend(name):
            out = model(x)
            out.backward(np.ones(out.shape))
        results[name] = [out.data] + [p.grad for p in model.parameters()]
    for ours, reference in zip(results[backend_name], results["numpy"]):
        assert_close(ours, reference)

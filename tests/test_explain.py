"""Seeing attention: captured maps are the forward's, Grad-CAM against a torch Grad-CAM of the twin,
localisation scores on hand-built cases, and one-line errors."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minitorch_attn import explain, interop, models, nn
from minitorch_attn.tensor import Tensor
from minitorch_attn.testing import assert_close

TINY = dict(depths=(1, 1, 1), widths=(8, 16, 16))


def images(shape=(3, 3, 12, 10), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def tiny_resnet(attention, seed=0, **options):
    nn.manual_seed(seed)
    model = models.ResNet(**TINY, attention=attention, attention_options=dict(reduction_ratio=4, **options))
    return interop.randomize(model.double(), seed).eval()


# --------------------------------------------------------------------------
# capture_attention
# --------------------------------------------------------------------------
def test_cbam_maps_are_the_ones_the_forward_applied():
    """F'' = (F ⊗ M_c) ⊗ M_s bit for bit, and M_c, M_s equal the torch twin's sigmoid maps."""
    module = interop.randomize(nn.CBAM(8, 4).double(), 1).eval()
    x = images((2, 8, 6, 5))
    with explain.capture_attention(module) as maps:
        out = module(x).data
    m_c, m_s = maps[""]["channel"], maps[""]["spatial"]
    assert m_c.shape == (2, 8) and m_s.shape == (2, 1, 6, 5)
    np.testing.assert_array_equal(out, x * m_c[:, :, None, None] * m_s)
    twin, t = interop.to_torch(module), torch.from_numpy(x)
    with torch.no_grad():
        torch_c = torch.sigmoid(twin.channel_gate.logit(t))
        torch_s = torch.sigmoid(twin.spatial_gate.logit(t * torch_c[:, :, None, None]))
    assert_close(m_c, torch_c.numpy(), name="M_c")
    assert_close(m_s, torch_s.numpy(), name="M_s")


def test_spatial_first_and_parallel_cbam_maps():
    x = images((2, 8, 6, 5))
    first = interop.randomize(nn.CBAM(8, 4, arrangement="spatial-channel").double(), 2).eval()
    with explain.capture_attention(first) as maps:
        out = first(x).data
    np.testing.assert_array_equal(out, x * maps[""]["spatial"] * maps[""]["channel"][:, :, None, None])
    parallel = interop.randomize(nn.CBAM(8, 4, arrangement="parallel").double(), 3).eval()
    with explain.capture_attention(parallel) as maps:
        out = parallel(x).data
    record = maps[""]
    assert set(record) == {"channel_logit", "spatial_logit", "attention"}
    np.testing.assert_array_equal(out, x * record["attention"])
    expected = 1 / (1 + np.exp(-(record["channel_logit"][:, :, None, None] + record["spatial_logit"])))
    assert_close(record["attention"], expected)


@pytest.mark.parametrize("fusion", ["sum", "product", "max"])
def test_bam_logits_and_fused_map(fusion):
    module = interop.randomize(nn.BAM(8, 4, fusion=fusion).double(), 4).eval()
    x = images((2, 8, 6, 5))
    with explain.capture_attention(module) as maps:
        out = module(x).data
    record = maps[""]
    assert record["channel_logit"].shape == (2, 8) and record["spatial_logit"].shape == (2, 1, 6, 5)
    assert record["attention"].shape == (2, 8, 6, 5)
    assert_close(out, x + x * record["attention"])
    twin, t = interop.to_torch(module), torch.from_numpy(x)
    with torch.no_grad():
        assert_close(record["channel_logit"], twin.channel_gate(t).numpy(), name="M_c")
        assert_close(record["spatial_logit"], twin.spatial_gate(t).numpy(), name="M_s")


def test_maps_are_keyed_by_qualified_name_and_hooks_are_removed():
    resnet = tiny_resnet("cbam")
    with explain.capture_attention(resnet) as maps:
        resnet(images())
    assert list(maps) == ["stages.0.0.attention", "stages.1.0.attention", "stages.2.0.attention"]
    assert maps["stages.1.0.attention"]["spatial"].shape == (3, 1, 6, 5)
    assert all(not m._forward_hooks for m in resnet.modules())
    bam = tiny_resnet("bam")
    with explain.capture_attention(bam) as maps:
        bam(images())
    assert list(maps) == ["bottlenecks.0", "bottlenecks.1"]
    se = models.MobileNet(width_multiplier=0.25, attention="se", attention_options=dict(reduction_ratio=4))
    with explain.capture_attention(se) as maps:
        se(images().astype(np.float32))
    assert list(maps)[0] == "features.0.attention" and set(maps["features.0.attention"]) == {"channel"}
    mobile_bam = models.MobileNet(width_multiplier=0.25, attention="bam", attention_options=dict(reduction_ratio=4))
    with explain.capture_attention(mobile_bam) as maps:
        mobile_bam(images().astype(np.float32))
    assert list(maps) == ["features.1", "features.4", "features.7"]


def test_forward_hook_can_replace_the_output():
    """Module.__call__ uses a hook's return value, as PyTorch does (grad_cam relies on it)."""
    layer = nn.ReLU()
    layer.register_forward_hook(lambda module, inputs, output: Tensor(output.data + 1))
    np.testing.assert_array_equal(layer(np.array([-1.0, 2.0])).data, [1.0, 3.0])


# --------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------
def test_grad_cam_formula_on_a_hand_case():
    activations = np.array([[[[1.0, 2.0], [0.0, -1.0]], [[3.0, 0.0], [1.0, 1.0]]]])  # (1, 2, 2, 2)
    gradients = np.stack([np.full((2, 2), 0.5), np.full((2, 2), -1.0)])[None]  # α = (0.5, -1)
    expected = np.maximum(0.5 * activations[0, 0] - activations[0, 1], 0)[None]  # [[0, 1], [0, 0]]
    np.testing.assert_array_equal(explain.grad_cam_map(activations, gradients), expected)
    assert expected.sum() == 1.0


@pytest.mark.parametrize("size, out", [((3, 4), (12, 10)), ((5, 5), (7, 16)), ((6, 9), (4, 3)), ((1, 1), (3, 2))])
def test_upsample_matches_torch_bilinear_half_pixel(size, out):
    maps = images((2,) + size)
    expected = F.interpolate(torch.from_numpy(maps)[:, None], size=out, mode="bilinear", align_corners=False)
    assert_close(explain.upsample_bilinear(maps, out), expected[:, 0].numpy())


def torch_grad_cam(model, x, target, layer):
    """Grad-CAM of the torch twin with torch autograd and a torch forward hook."""
    twin = interop.to_torch(model).eval()
    module = dict(twin.named_modules())[layer]
    seen = []
    handle = module.register_forward_hook(lambda m, inputs, output: seen.append(output))
    scores = twin(torch.from_numpy(x))
    handle.remove()
    classes = scores.argmax(dim=1) if target is None else torch.as_tensor(target).expand(len(x))
    (grad,) = torch.autograd.grad(scores.gather(1, classes[:, None]).sum(), seen[0])
    alpha = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((alpha * seen[0]).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, cam / torch.where(peak > 0, peak, 1), 0).detach().numpy()


@pytest.mark.parametrize("family, attention, target, layer, torch_layer", [
    ("resnet", "cbam", None, "stages.-1", "stages.2"),
    ("resnet", "bam", 3, "stages.-1", "stages.2"),
    ("resnet", "se", [1, 0, 7], "stages.1", "stages.1"),
    ("mobilenet", "cbam", None, "features.-1", "features.2"),
])
def test_grad_cam_matches_torch_grad_cam_of_the_twin(family, attention, target, layer, torch_layer):
    if family == "resnet":
        model = tiny_resnet(attention)
    else:
        nn.manual_seed(0)
        model = interop.randomize(models.MobileNet(attention=attention, config=((16, 1), (32, 2), (32, 1)),
                                                   attention_options=dict(reduction_ratio=4)).double(), 0)
    x = images()
    cams = explain.grad_cam(model, x, target, layer)
    expected = torch_grad_cam(model, x, target, torch_layer)
    assert cams.shape == (3, 12, 10) and np.count_nonzero(cams.max(axis=(1, 2))) >= 2  # not a trivial check
    assert_close(cams, expected, name="Grad-CAM")


def test_grad_cam_default_layer_mode_and_gradients_untouched():
    model = tiny_resnet("cbam").train()
    model.fc.weight.grad = np.ones_like(model.fc.weight.data)
    x = images()
    by_default = explain.grad_cam(model, x)
    assert model.training and np.all(model.fc.weight.grad == 1)
    assert all(p.grad is None for name, p in model.named_parameters() if name != "fc.weight")
    np.testing.assert_array_equal(by_default, explain.grad_cam(model, x, layer=model.stages[-1]))
    peaks = by_default.max(axis=(1, 2))
    assert by_default.min() >= 0 and np.all((peaks == 1) | (peaks == 0))


# --------------------------------------------------------------------------
# Localisation
# --------------------------------------------------------------------------
def test_boxes_become_end_exclusive_masks():
    masks = explain.boxes_to_masks(np.array([[1, 2, 3, 4], [0, 0, 4, 5]]), (4, 5))
    assert masks[0].sum() == 4 and masks[0, 1:3, 2:4].all() and masks[1].all()


def test_energy_and_pointing_on_hand_built_maps():
    cams = np.zeros((3, 4, 4))
    cams[0, 0, 0], cams[0, 2, 2] = 1.0, 3.0  # 3/4 of the mass and the peak inside
    cams[1, 0, 0], cams[1, 3, 3] = 2.0, 1.0  # peak outside, 1/3 of the mass inside
    boxes = np.array([[2, 2, 4, 4], [2, 2, 4, 4], [0, 0, 2, 2]])  # image 2: an empty map
    scores = explain.localisation_scores(cams, boxes=boxes)
    np.testing.assert_allclose(scores["energy"], [0.75, 1 / 3, 0.0])
    np.testing.assert_array_equal(scores["pointing"], [True, False, False])
    assert scores["pointing_mean"] == pytest.approx(1 / 3)
    assert scores["energy_mean"] == pytest.approx((0.75 + 1 / 3) / 3)
    masks = explain.boxes_to_masks(boxes, (4, 4))
    masks[1, 0, 0] = True  # a mask need not be a box
    from_masks = explain.localisation_scores(cams, masks=masks)
    np.testing.assert_allclose(from_masks["energy"], [0.75, 1.0, 0.0])
    np.testing.assert_array_equal(from_masks["pointing"], [True, True, False])


def test_mean_and_std_over_models():
    mean, std = explain.mean_std([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7) and std == pytest.approx(0.2)
    assert np.isnan(explain.mean_std([0.4])[1])
    trained = [tiny_resnet("cbam", seed) for seed in (0, 1)]
    x = images()
    boxes = np.array([[0, 0, 6, 5], [3, 2, 12, 10], [0, 0, 12, 10]])
    result = explain.localisation_over_models(trained, x, boxes=boxes)
    each = [explain.localisation_scores(explain.grad_cam(m, x), boxes=boxes) for m in trained]
    assert result["energy"] == pytest.approx(explain.mean_std([s["energy_mean"] for s in each]))
    assert result["pointing"] == pytest.approx(explain.mean_std([s["pointing_mean"] for s in each]))


# --------------------------------------------------------------------------
# Bad input: one line naming the argument
# --------------------------------------------------------------------------
def raises(error, *fragments):
    """``pytest.raises`` that wants a one-line message containing every fragment (plain text)."""
    return pytest.raises(error, match=r"(?s)\A(?!.*\n)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


def test_errors_name_the_argument_and_what_was_expected():
    model, x = tiny_resnet("cbam"), images()
    with raises(ValueError, "layer 'stages.7'", "out of range", "3 entries"):
        explain.grad_cam(model, x, layer="stages.7")
    with raises(ValueError, "layer 'stage.-1'", "no 'stage'"):
        explain.grad_cam(model, x, layer="stage.-1")
    with raises(ValueError, "layer", "not inside"):
        explain.grad_cam(model, x, layer=nn.ReLU())
    with raises(ValueError, "target", "[0, 10)", "12"):
        explain.grad_cam(model, x, target=12)
    with raises(ValueError, "target", "3 ints"):
        explain.grad_cam(model, x, target=[1, 2])
    with raises(ValueError, "layer must output (N, C, h, w)"):
        explain.grad_cam(model, x, layer="fc")
    cams = np.zeros((3, 12, 10))
    with raises(ValueError, "masks", "(3, 12, 10)", "(3, 12, 9)"):
        explain.localisation_scores(cams, masks=np.zeros((3, 12, 9), bool))
    with raises(ValueError, "exactly one of masks"):
        explain.localisation_scores(cams)
    with raises(ValueError, "box 1", "(0, 0, 13, 2)", "y1 <= 12"):
        explain.localisation_scores(cams, boxes=np.array([[0, 0, 1, 1], [0, 0, 13, 2], [0, 0, 1, 1]]))
    with raises(ValueError, "masks", "(3, 12, 10)", "(2, 12, 10)"):
        explain.localisation_over_models([model], x, masks=np.zeros((2, 12, 10), bool))

"""Training: whole-backbone PyTorch twins, the training loop (history, checkpoints, resume, errors), and a
ResNet trained side by side with its twin."""
import numpy as np
import pytest
import torch

from minitorch_attn import Tensor, backend, interop, models
from minitorch_attn.testing import TOLERANCE, rel_error

# Small backbones on 16×16 inputs; r = 4 leaves hidden units at 8 channels.
R4 = {"reduction_ratio": 4}
SMALL = dict(widths=(8, 16, 16, 16), in_channels=1, num_classes=10)
MOBILE = dict(width_multiplier=0.5, in_channels=1, num_classes=10, config=((16, 1), (32, 2), (32, 2)),
              stem_channels=16)

BACKBONES = {
    "resnet-none": lambda: models.resnet10(**SMALL),
    "resnet-se": lambda: models.resnet10(**SMALL, attention="se", attention_options=R4),
    "resnet-cbam": lambda: models.resnet10(**SMALL, attention="cbam", attention_options=R4),
    "resnet-cbam-parallel-k3-conv1x1": lambda: models.resnet10(
        **SMALL, attention="cbam",
        attention_options=dict(R4, arrangement="parallel", kernel_size=3, compress="conv1x1")),
    "resnet18-cbam-spatial-channel": lambda: models.resnet18(
        **SMALL, attention="cbam", attention_options=dict(R4, arrangement="spatial-channel")),
    "resnet-bam": lambda: models.resnet10(**SMALL, attention="bam", attention_options=R4),
    "resnet-bam-product-every-block": lambda: models.resnet10(
        **SMALL, attention="bam", attention_options=dict(R4, fusion="product"), bam_in_every_block=True),
    "mobilenet-none": lambda: models.MobileNet(**MOBILE),
    "mobilenet-se": lambda: models.MobileNet(**MOBILE, attention="se", attention_options=R4),
    "mobilenet-cbam": lambda: models.MobileNet(**MOBILE, attention="cbam", attention_options=R4),
    "mobilenet-bam": lambda: models.MobileNet(**MOBILE, attention="bam", attention_options=R4),
    "mobilenet-bam-max-every-block": lambda: models.MobileNet(
        **MOBILE, attention="bam", attention_options=dict(R4, fusion="max"), bam_in_every_block=True),
}


# --------------------------------------------------------------------------
# Whole-backbone twins
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_twin_matches_in_train_and_eval_mode(name):
    """Output, input grad, every parameter grad and the running stats after a train step, float64."""
    model = interop.randomize(BACKBONES[name]().double(), seed=1)
    twin = interop.to_torch(model)
    assert set(dict(twin.named_parameters())) == set(dict(model.named_parameters()))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 1, 16, 16))
    upstream = rng.standard_normal((8, 10))
    tol = TOLERANCE[np.dtype(np.float64)]
    for training in (True, False):
        model.train(training).zero_grad()
        twin.train(training).zero_grad()
        ours_in, theirs_in = Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
        with backend("numpy"):
            out = model(ours_in)
            out.backward(upstream)
        ref = twin(theirs_in)
        ref.backward(torch.from_numpy(upstream))
        mode = "train" if training else "eval"
        assert rel_error(out.data, ref.detach().numpy()) <= tol, f"{mode} output"
        assert rel_error(ours_in.grad, theirs_in.grad.numpy()) <= tol, f"{mode} input grad"
        theirs = dict(twin.named_parameters())
        for key, param in model.named_parameters():
            assert rel_error(param.grad, theirs[key].grad.numpy()) <= tol, f"{mode} grad of {key}"
        state = twin.state_dict()
        for key, buffer in model.named_buffers():
            assert rel_error(buffer, state[key].numpy()) <= tol, f"{mode} {key}"


def test_backbone_twin_keeps_dtype_and_mode():
    model = BACKBONES["resnet-cbam"]().eval()
    twin = interop.to_torch(model)
    assert not twin.training and all(not m.training for m in twin.modules())
    assert all(p.dtype == torch.float32 for p in twin.parameters())

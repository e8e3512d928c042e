"""Seeing attention: the maps CBAM / BAM / SE compute, Grad-CAM, and how well a heat map finds the object.

* :func:`capture_attention`: the attention maps of every attention module during a forward pass, read by
  forward hooks (nothing global is swapped; the hooks are removed on exit).
* :func:`grad_cam`: Grad-CAM of a layer (by default the last stage) with this library's autograd; the
  formula is :func:`grad_cam_map`, the resizing :func:`upsample_bilinear` (PyTorch's ``align_corners=False``).
* :func:`localisation_scores`: energy inside the ground-truth region and the pointing game, per image and
  averaged; :func:`localisation_over_models` gives mean ± std over several trained models (seeds).

Heat maps, masks and boxes here are NumPy arrays: maps (N, H, W) float, masks (N, H, W) bool, boxes (N, 4)
ints ``(y0, x0, y1, x1)`` with the ends excluded (rows y0 .. y1 - 1, columns x0 .. x1 - 1).
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import nn, ops
from .autograd import is_grad_enabled, no_grad
from .exercise import exercise
from .nn.bam import maximum
from .nn.cbam import expand_channels
from .nn.layers import check_input
from .nn.module import ModuleList, Sequential
from .tensor import Tensor

__all__ = ["capture_attention", "attention_modules", "bam_attention_map", "grad_cam", "grad_cam_map",
           "upsample_bilinear", "normalise_per_image", "find_module", "boxes_to_masks", "energy_inside",
           "pointing_hits", "localisation_scores", "mean_std", "localisation_over_models"]


# --------------------------------------------------------------------------
# Attention maps
# --------------------------------------------------------------------------
def attention_modules(model):
    """``{qualified name: module}`` of the outermost SE / ChannelGate / SpatialGate / CBAM / BAM modules."""
    found = {}
    for name, module in model.named_modules():
        inside = any(name.startswith(f"{outer}.") or outer == "" for outer in found)
        if isinstance(module, (nn.ChannelGate, nn.SpatialGate, nn.CBAM, nn.BAM)) and not inside:
            found[name] = module
    return found


def bam_attention_map(channel_logit, spatial_logit, fusion="sum"):
    """BAM's fused map M(F) = σ(fuse(M_c, M_s)), the M of F' = F + F ⊗ M(F): (N, C, H, W) with both branches,
    (N, C, 1, 1) or (N, 1, H, W) with one.

    fuse: ``"sum"`` M_c + M_s, ``"product"`` M_c · M_s, ``"max"`` max(M_c, M_s); with one branch, that
    branch's logit alone. channel_logit (N, C) or None, spatial_logit (N, 1, H, W) or None.
    (For ``"sum"`` the forward's fused ``residual_gate`` kernel never materialises M, so this is the
    equation evaluated on the captured logits; for the other fusions it repeats the forward's ops exactly.)
    """
    if spatial_logit is None:
        return ops.sigmoid(expand_channels(channel_logit))
    if channel_logit is None:
        return ops.sigmoid(spatial_logit)
    fuse = {"sum": ops.add, "product": ops.mul, "max": maximum}[fusion]
    return ops.sigmoid(fuse(expand_channels(channel_logit), spatial_logit))


def _hooks_for(module, record):
    """``[(module to hook, hook)]`` that fill ``record`` (a dict) with ``module``'s maps."""
    logits = {}  # this forward's logit tensors, for the maps built from two of them

    def keep(key, transform=None):
        def hook(_, inputs, output):
            logits[key] = output
            with no_grad():
                record[key] = np.array((output if transform is None else transform(output)).data)
        return hook

    if isinstance(module, nn.CBAM) and module.arrangement == "parallel" and module.spatial_gate is not None:
        def joint(_, inputs, output):
            with no_grad():  # the same ops, in the same order, as cbam_attention's parallel branch
                both = ops.add(expand_channels(logits["channel_logit"]), logits["spatial_logit"])
                record["attention"] = np.array(ops.sigmoid(both).data)
        return [(module.channel_gate.logit_out, keep("channel_logit")),
                (module.spatial_gate.logit_out, keep("spatial_logit")), (module, joint)]
    if isinstance(module, nn.CBAM):
        gates = [module.channel_gate] + ([module.spatial_gate] if module.spatial_gate is not None else [])
        return [hook for gate in gates for hook in _hooks_for(gate, record)]
    if isinstance(module, nn.ChannelGate):
        return [(module.logit_out, keep("channel", ops.sigmoid))]
    if isinstance(module, nn.SpatialGate):
        return [(module.logit_out, keep("spatial", ops.sigmoid))]

    def fused(_, inputs, output):  # BAM: its branches return their logits; M(F) once the block has run
        with no_grad():
            record["attention"] = np.array(bam_attention_map(
                logits.get("channel_logit"), logits.get("spatial_logit"), module.fusion).data)
    branches = [(gate, keep(key)) for gate, key in ((module.channel_gate, "channel_logit"),
                                                    (module.spatial_gate, "spatial_logit")) if gate is not None]
    return branches + [(module, fused)]


@contextlib.contextmanager
def capture_attention(model):
    """``with capture_attention(model) as maps: model(x)`` -> the attention maps of that forward pass.

    ``maps[name]`` (name: the module's qualified name, e.g. ``"stages.0.0.attention"``, ``"bottlenecks.1"``,
    ``"features.3"``) is a dict of NumPy arrays, the maps the forward pass applied:

    * CBAM (channel-spatial / spatial-channel), ChannelGate, SE, SpatialGate: ``"channel"`` M_c (N, C) and
      ``"spatial"`` M_s (N, 1, H, W), after the sigmoid (M_s of F' when it follows the channel gate);
    * CBAM ``arrangement="parallel"``: ``"channel_logit"`` (N, C), ``"spatial_logit"`` (N, 1, H, W) and
      the one map it applies, ``"attention"`` σ(logit_c + logit_s) (N, C, H, W);
    * BAM: ``"channel_logit"`` M_c (N, C), ``"spatial_logit"`` M_s (N, 1, H, W) (the branches it has) and
      ``"attention"`` M(F) (N, C, H, W), see :func:`bam_attention_map`.

    The maps come from forward hooks on the modules (the gates pass their logits through ``logit_out``);
    the sigmoid is the same op on the same logit as in the forward, so the values are identical. Each
    forward pass inside the block replaces the maps of the previous one. The hooks are removed on exit.
    """
    maps, handles = {}, []
    for name, module in attention_modules(model).items():
        record = maps.setdefault(name, {})
        for hooked, hook in _hooks_for(module, record):
            handles.append(hooked.register_forward_hook(hook))
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------
@exercise("14.1", "Grad-CAM: channel weights alpha (the spatial mean of the gradients), then "
                  "ReLU(sum_k alpha_k A^k) per image (lesson 14)")
def grad_cam_map(activations, gradients):
    """Grad-CAM (Selvaraju et al., ICCV 2017, Eqs. 1-2) from a layer's activations and their gradients.

        alpha_k^c = (1 / (h w)) * sum_{i,j} d y^c / d A^k_{ij}      (one weight per channel k)
        L^c       = ReLU( sum_k alpha_k^c A^k )                      (one map per image)

    activations A (N, K, h, w); gradients d y^c / d A (N, K, h, w), y^c the class score before the
    softmax -> L (N, h, w), at the layer's resolution, in the inputs' dtype.
    """
    # BEGIN SOLUTION
    alpha = gradients.mean(axis=(2, 3))
    return np.maximum(np.einsum("nk,nkij->nij", alpha, activations), 0)
    # END SOLUTION


def upsample_bilinear(maps, size):
    """Bilinear resize (N, h, w) -> (N, H, W) with half-pixel centres, PyTorch's ``align_corners=False``.

    Output pixel d reads the input at s = (d + 0.5) h / H - 0.5 (clamped at 0) and interpolates linearly
    between rows floor(s) and min(floor(s) + 1, h - 1); the same along the width.
    """
    def taps(n_in, n_out):
        source = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, n_in - 1), source - low

    (top, bottom, dy), (left, right, dx) = taps(maps.shape[1], size[0]), taps(maps.shape[2], size[1])
    rows = maps[:, top] * (1 - dy)[:, None] + maps[:, bottom] * dy[:, None]
    return rows[:, :, left] * (1 - dx) + rows[:, :, right] * dx


def normalise_per_image(maps):
    """Each (H, W) map divided by its maximum, so its peak is 1; a map with no positive value stays 0."""
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def find_module(model, layer, owner="find_module"):
    """The sub-module named ``layer`` (dotted, negative indices into Sequential / ModuleList allowed, e.g.
    ``"stages.-1"``), or ``layer`` itself if it is a module inside ``model``."""
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"{owner}: layer is a {type(layer).__name__} that is not inside the "
                             f"{type(model).__name__} given")
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"{owner}: layer must be a module name like 'stages.-1' or a module, got "
                        f"{type(layer).__name__}")
    module, path = model, []
    for part in layer.split("."):
        children = list(module._modules)
        if isinstance(module, (Sequential, ModuleList)) and part.lstrip("-").isdigit():
            if not -len(module) <= int(part) < len(module):
                raise ValueError(f"{owner}: layer {layer!r}: index {part} is out of range for "
                                 f"{'.'.join(path) or 'the model'}, which has {len(module)} entries")
            module = module[int(part)]
        elif module._modules.get(part) is not None:
            module = module._modules[part]
        else:
            raise ValueError(f"{owner}: layer {layer!r} does not name a module of {type(model).__name__}: "
                             f"{'.'.join(path) or 'the model'} has no {part!r} (children: {children})")
        path.append(part)
    return module


def _default_layer(model):
    for name in ("stages", "features"):
        if isinstance(model._modules.get(name), (Sequential, ModuleList)):
            return f"{name}.-1"
    raise ValueError(f"grad_cam: {type(model).__name__} has no 'stages' or 'features'; pass layer= "
                     f"(a module name or a module)")


def _targets(target, batch, classes):
    """(N,) class indices, checked against the number of classes."""
    target = np.broadcast_to(np.asarray(target), (batch,)) if np.ndim(target) == 0 else np.asarray(target)
    if target.shape != (batch,) or not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"grad_cam: target must be None, an int or {batch} ints (one per image), got "
                         f"{target.dtype} of shape {target.shape}")
    if target.size and (target.min() < 0 or target.max() >= classes):
        raise ValueError(f"grad_cam: target must be in [0, {classes}) (the model has {classes} classes), got "
                         f"{target.min() if target.min() < 0 else target.max()}")
    return target


def grad_cam(model, x, target=None, layer=None):
    """Grad-CAM heat maps (N, H, W) of ``model`` for the images x (N, C, H, W), in [0, 1], one per image.

    ``target``: the class c whose score y^c is explained (None: each image's predicted class; an int for
    all images; or N ints). ``layer``: the module whose output A is explained, a name like ``"stages.-1"``
    or the module itself; default the last stage (``"stages.-1"`` for ResNet, ``"features.-1"`` for
    MobileNet). Steps: one forward pass in eval mode with a hook that makes A a leaf of the graph, one
    backward pass of sum_n y^{c_n}_n (images do not interact in eval mode, so each image gets its own
    d y^c / d A), then :func:`grad_cam_map`, :func:`upsample_bilinear` to H×W (half-pixel centres, as
    PyTorch's ``align_corners=False``) and :func:`normalise_per_image` (divided by the maximum).
    The model's mode and its parameters' ``.grad`` are left as they were.
    """
    module = find_module(model, _default_layer(model) if layer is None else layer, "grad_cam")
    x = check_input(model, x, (4,), getattr(model, "in_channels", None))
    fc = model._modules.get("fc")
    if target is not None and isinstance(fc, nn.Linear):
        _targets(target, x.shape[0], fc.out_features)
    if not is_grad_enabled():
        raise RuntimeError("grad_cam: called inside no_grad(); Grad-CAM needs the backward pass")
    captured = []

    def make_leaf(_, inputs, output):
        if output.ndim != 4:
            raise ValueError(f"grad_cam: layer must output (N, C, h, w) feature maps, got shape {output.shape}")
        captured.append(Tensor(output.data, requires_grad=True))
        return captured[-1]

    was_training, saved_grads = model.training, [(p, p.grad) for p in model.parameters()]
    handle = module.register_forward_hook(make_leaf)
    model.eval()
    try:
        logits = model(x)
        if len(captured) != 1:
            raise ValueError(f"grad_cam: layer ran {len(captured)} times in one forward pass; expected once")
        if logits.ndim != 2:
            raise ValueError(f"grad_cam: the model must return (N, classes) scores, got shape {logits.shape}")
        classes = _targets(np.argmax(logits.data, axis=1) if target is None else target, x.shape[0],
                           logits.shape[1])
        seed = np.zeros(logits.shape, logits.dtype)
        seed[np.arange(x.shape[0]), classes] = 1
        logits.backward(seed)
    finally:
        handle.remove()
        model.train(was_training)
        for param, grad in saved_grads:
            param.grad = grad
    activations = captured[0]
    gradients = np.zeros_like(activations.data) if activations.grad is None else activations.grad
    return normalise_per_image(upsample_bilinear(grad_cam_map(activations.data, gradients), x.shape[2:]))


# --------------------------------------------------------------------------
# Localisation
# --------------------------------------------------------------------------
def boxes_to_masks(boxes, shape):
    """Boxes (N, 4) ``(y0, x0, y1, x1)``, ends excluded -> masks (N, H, W) bool; ``shape`` is (H, W)."""
    boxes = np.asarray(boxes)
    height, width = shape
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.issubdtype(boxes.dtype, np.integer):
        raise ValueError(f"boxes must be (N, 4) ints (y0, x0, y1, x1), got {boxes.dtype} of shape {boxes.shape}")
    y0, x0, y1, x1 = boxes.T
    bad = (y0 < 0) | (x0 < 0) | (y1 > height) | (x1 > width) | (y0 >= y1) | (x0 >= x1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"boxes: box {i} = {tuple(boxes[i].tolist())} must satisfy 0 <= y0 < y1 <= {height} and "
                         f"0 <= x0 < x1 <= {width} (the maps are {height}×{width})")
    rows, cols = np.arange(height), np.arange(width)
    inside_rows = (rows >= y0[:, None]) & (rows < y1[:, None])
    inside_cols = (cols >= x0[:, None]) & (cols < x1[:, None])
    return inside_rows[:, :, None] & inside_cols[:, None, :]


def _region(cams, masks, boxes, owner):
    """The cams (N, H, W) and the region masks (N, H, W) bool, checked, from exactly one of masks / boxes."""
    cams = np.asarray(cams)
    if cams.ndim != 3:
        raise ValueError(f"{owner}: cams must be (N, H, W) heat maps, got shape {cams.shape}")
    if (masks is None) == (boxes is None):
        raise ValueError(f"{owner}: give exactly one of masks (N, H, W) and boxes (N, 4)")
    if boxes is not None:
        if np.shape(boxes)[:1] != cams.shape[:1]:
            raise ValueError(f"{owner}: boxes must have one box per map, (N, 4) = ({cams.shape[0]}, 4), got shape "
                             f"{np.shape(boxes)}")
        return cams, boxes_to_masks(boxes, cams.shape[1:])
    masks = np.asarray(masks)
    if masks.shape != cams.shape:
        raise ValueError(f"{owner}: masks must have the cams' shape (N, H, W) = {cams.shape}, got {masks.shape}")
    if masks.dtype != bool:
        raise ValueError(f"{owner}: masks must be bool, got {masks.dtype}")
    return cams, masks


def energy_inside(cams, masks):
    """The fraction of each map's mass inside its region: sum_{ij in mask} L_ij / sum_ij L_ij, (N,).

    cams (N, H, W) non-negative, masks (N, H, W) bool. A map with no mass localises nothing: 0.
    """
    total = cams.sum(axis=(1, 2))
    inside = np.where(masks, cams, 0).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(total, dtype=float), where=total > 0)


@exercise("14.2", "the pointing game: whether each map's first maximum (row-major) lies in its mask; a map "
                  "with no positive value is a miss (lesson 14)")
def pointing_hits(cams, masks):
    """The pointing game: is each map's maximum inside its region? (N,) bool.

    cams (N, H, W), masks (N, H, W) bool. The maximum is the first in row-major order (``np.argmax``); a map
    with no positive value points nowhere and counts as a miss.
    """
    # BEGIN SOLUTION
    flat = cams.reshape(len(cams), -1)
    peak = np.argmax(flat, axis=1)
    return masks.reshape(len(masks), -1)[np.arange(len(cams)), peak] & (flat.max(axis=1) > 0)
    # END SOLUTION


def localisation_scores(cams, masks=None, boxes=None):
    """Energy inside the region and pointing-game hits of heat maps against the ground truth.

    cams (N, H, W); exactly one of masks (N, H, W) bool or boxes (N, 4) ``(y0, x0, y1, x1)`` ends excluded.
    -> ``{"energy": (N,), "pointing": (N,) bool, "energy_mean": float, "pointing_mean": float}``.
    """
    cams, masks = _region(cams, masks, boxes, "localisation_scores")
    energy, pointing = energy_inside(cams, masks), pointing_hits(cams, masks)
    return {"energy": energy, "pointing": pointing, "energy_mean": float(energy.mean()),
            "pointing_mean": float(pointing.mean())}


def mean_std(values):
    """(mean, sample standard deviation with ddof = 1) of one number per model; std is NaN for one model."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"mean_std: values must be a non-empty 1-d sequence (one per model), got shape "
                         f"{values.shape}")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else float("nan")


def localisation_over_models(trained_models, x, masks=None, boxes=None, target=None, layer=None):
    """Grad-CAM localisation of several trained models (e.g. seeds) on the same images: mean ± std.

    -> ``{"energy": (mean, std), "pointing": (mean, std), "per_model": [localisation_scores(...), ...]}``,
    the statistics taken over the models' per-image averages. Arguments as :func:`grad_cam` and
    :func:`localisation_scores`.
    """
    trained_models = list(trained_models)
    if not trained_models:
        raise ValueError("localisation_over_models: trained_models is empty; give at least one model")
    shape = x.shape if isinstance(x, Tensor) else np.shape(x)
    if len(shape) == 4:  # the region checked before any work (grad_cam names a wrong x)
        _region(np.zeros((shape[0],) + tuple(shape[2:])), masks, boxes, "localisation_over_models")
    per_model = [localisation_scores(grad_cam(m, x, target, layer), masks, boxes) for m in trained_models]
    return {"energy": mean_std([s["energy_mean"] for s in per_model]),
            "pointing": mean_std([s["pointing_mean"] for s in per_model]), "per_model": per_model}

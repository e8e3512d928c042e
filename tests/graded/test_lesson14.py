"""Lesson 14: Grad-CAM's weighted map (14.1) and the pointing game (14.2), against PyTorch."""
import numpy as np
import pytest
import torch

from minitorch_attn.grading.checks import GradingFailure, describe, expect_array

# Odd sizes, a 1×1 layer, one channel, a batch of one.
SHAPES = [(2, 3, 4, 5), (1, 1, 1, 1), (3, 8, 2, 7), (4, 5, 6, 6), (1, 1, 3, 2)]


def torch_grad_cam_map(activations, gradients):
    a, g = torch.from_numpy(activations), torch.from_numpy(gradients)
    return torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1)).numpy()


def torch_pointing(cams, masks):
    flat = torch.from_numpy(cams).flatten(1)
    peak = flat.argmax(dim=1)  # the first maximum in row-major order
    inside = torch.from_numpy(masks).flatten(1).gather(1, peak[:, None])[:, 0]
    return (inside & (flat.amax(dim=1) > 0)).numpy()


def cam_cases(seed):
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        for dtype in (np.float64, np.float32):
            activations = np.abs(rng.standard_normal(shape)) * 2   # post-ReLU activations, as in a network
            yield activations.astype(dtype), rng.standard_normal(shape).astype(dtype)


def per_image_cases(seed):
    """Gradients constant over H×W per (image, channel) and different between images: weights per image."""
    rng = np.random.default_rng(seed)
    for dtype in (np.float64, np.float32):
        activations = np.abs(rng.standard_normal((3, 4, 5, 3))).astype(dtype)
        weights = rng.standard_normal((3, 4, 1, 1))
        weights[1] = -weights[0]                                   # image 1 wants the opposite channels
        yield activations, np.broadcast_to(weights, activations.shape).astype(dtype)


def map_cases(seed):
    rng = np.random.default_rng(seed)
    for n, h, w in [(6, 5, 7), (4, 1, 1), (5, 6, 6), (3, 8, 3)]:
        for dtype in (np.float64, np.float32):
            masks = np.zeros((n, h, w), bool)
            for i in range(n):  # a box per map, sometimes touching pixel (0, 0)
                y0, x0 = rng.integers(0, h), rng.integers(0, w)
                masks[i, y0 : rng.integers(y0 + 1, h + 1), x0 : rng.integers(x0 + 1, w + 1)] = True
            masks[0, 0, 0] = True
            yield "random maps", np.abs(rng.standard_normal((n, h, w))).astype(dtype), masks
            tied = rng.integers(0, 3, (n, h, w)).astype(dtype)      # many tied maxima
            yield "tied maxima", tied, masks
            empty = np.zeros((n, h, w), dtype)                      # no positive value: points nowhere
            empty[-1] = -1.0
            yield "maps without a positive value", empty, masks


def expect_hits(actual, expected, case):
    if not isinstance(actual, np.ndarray):
        raise GradingFailure(f"{case}: returned a {type(actual).__name__}, expected a bool array of shape "
                             f"{expected.shape}")
    if actual.shape != expected.shape or actual.dtype != bool:
        raise GradingFailure(f"{case}: returned {actual.dtype} of shape {actual.shape}, expected bool of shape "
                             f"{expected.shape}")
    if not np.array_equal(actual, expected):
        i = int(np.flatnonzero(actual != expected)[0])
        raise GradingFailure(f"{case}: map {i} is a {'hit' if actual[i] else 'miss'}, PyTorch says "
                             f"{'hit' if expected[i] else 'miss'}")


# -- run in the student's process ----------------------------------------------
def grad_cam_map(activations, gradients):
    from minitorch_attn.explain import grad_cam_map

    return grad_cam_map(activations, gradients)


def pointing_hits(cams, masks):
    from minitorch_attn.explain import pointing_hits

    return pointing_hits(cams, masks)


def pointing_game_mean(cams, masks):
    from minitorch_attn.explain import localisation_scores

    return localisation_scores(cams, masks=masks)["pointing_mean"]


# -- the graded tests ----------------------------------------------------------
@pytest.mark.exercise("14.1", points=2)
def test_grad_cam_map_matches_torch(student):
    for activations, gradients in cam_cases(141):
        case = describe(activations=activations)
        expect_array(student(grad_cam_map, activations, gradients),
                     torch_grad_cam_map(activations, gradients), "the map", case)


@pytest.mark.exercise("14.1", points=1)
def test_grad_cam_weights_are_per_image(student):
    for activations, gradients in per_image_cases(142):
        case = describe(activations=activations) + ", gradients that differ between images"
        expect_array(student(grad_cam_map, activations, gradients),
                     torch_grad_cam_map(activations, gradients), "the map", case)


@pytest.mark.exercise("14.2", points=2)
def test_pointing_hits_matches_torch(student):
    for what, cams, masks in map_cases(143):
        case = f"{what}, " + describe(cams=cams)
        expect_hits(student(pointing_hits, cams, masks), torch_pointing(cams, masks), case)


@pytest.mark.exercise("14.2", points=1)
def test_pointing_game_score(student):
    for what, cams, masks in map_cases(144):
        case = f"localisation_scores(...)['pointing_mean'], {what}, " + describe(cams=cams)
        score, expected = student(pointing_game_mean, cams, masks), float(torch_pointing(cams, masks).mean())
        if not isinstance(score, float) or abs(score - expected) > 1e-12:
            raise GradingFailure(f"{case}: {score!r}, expected {expected}")

"""How well a trained model's Grad-CAM points at the object: measured on every run, reported by ``gradcam``."""
from __future__ import annotations

import numpy as np

from .. import explain

#: Test images scored per run: the first example of every test source digit (cluttered-digits has 359).
IMAGES = 359
BATCH = 64


def measure(model, dataset, images=IMAGES):
    """Grad-CAM of the true class on the last stage for the first ``images`` test images, scored against the
    ground-truth boxes: the mean energy inside the box and the pointing-game hit rate (see
    :func:`minitorch_attn.explain.localisation_scores`)."""
    count = min(images, len(dataset))
    energy, pointing = [], []
    for start in range(0, count, BATCH):
        stop = min(start + BATCH, count)
        cams = explain.grad_cam(model, dataset.images[start:stop], target=dataset.labels[start:stop])
        scores = explain.localisation_scores(cams, boxes=dataset.boxes[start:stop])
        energy.append(scores["energy"])
        pointing.append(scores["pointing"])
    return {"images": count, "target": "true class", "region": "ground-truth box",
            "energy_in_box": float(np.concatenate(energy).mean()),
            "pointing_game": float(np.concatenate(pointing).mean())}

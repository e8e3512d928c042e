"""Training a backbone: :func:`fit` (epochs of SGD or Adam with a schedule, an eval pass per epoch, history,
checkpoints, resume) and :func:`evaluate`.

Contract
--------
* A **loader** is anything with ``len(loader)`` (batches per epoch) and ``loader.batches(epoch)`` yielding
  ``(x float ndarray (B, C, H, W), y int ndarray (B,))``, a pure function of ``epoch`` (0-based): a resumed
  run then sees exactly the batches an uninterrupted one would (``minitorch_attn.data.DataLoader`` is one).
* **One seed** controls a run: the caller builds the model under ``nn.manual_seed(seed)`` and gives the
  loader the seed of its order and augmentation. Nothing here draws random numbers, so the same seed gives
  the same history, bit for bit, apart from the wall-time fields.
* **History**: one dict per finished epoch, :data:`EPOCH_FIELDS`; ``epoch`` counts from 1, ``lr`` is the
  rate used during the epoch, ``seconds`` is the epoch's wall time (train and eval), ``images_per_second``
  the training pass's throughput.
* **Checkpoint** (``checkpoint=path``): an ``.npz`` written after every epoch, keys ``model.<state key>``,
  ``optimizer.<key>``, ``scheduler.<key>``, ``epoch``, ``history`` (JSON text) and ``classes`` (e.g.
  ``"SGD+CosineAnnealingLR"``); fit resumes from it when it exists, and refuses one whose model, optimizer
  or schedule differs from this run's (a resumed run must be the uninterrupted one). The history JSON
  (``history_path``) is written after every epoch too. Both go to a temporary file in the same folder,
  then are renamed over the old one, so a crash never leaves half a file.
* **Divergence**: a non-finite training loss stops the run before the optimizer steps on it; the history of
  the finished epochs is written and :class:`TrainingDiverged` raised (the last checkpoint stays as it was).
"""
from __future__ import annotations

import json
import math
import pathlib
import time
from collections import OrderedDict

import numpy as np
from tqdm import tqdm

from . import nn, ops
from .files import write_atomic
from .autograd import no_grad
from .nn.module import StateDictError
from .tensor import Tensor

EPOCH_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                "images_per_second")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; ``history`` holds the epochs finished before."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class _NonFiniteLoss(Exception):
    def __init__(self, batch, loss):
        super().__init__(batch, loss)
        self.batch, self.loss = batch, loss


class History:
    """The per-epoch records of a run (``epochs``: a list of dicts with :data:`EPOCH_FIELDS`)."""

    def __init__(self, epochs=(), diverged=None):
        self.epochs = [dict(record) for record in epochs]
        self.diverged = diverged  # the divergence message, if the run stopped on one

    @property
    def final(self):
        """The last epoch's record (None before the first epoch)."""
        return self.epochs[-1] if self.epochs else None

    @property
    def best_val_accuracy(self):
        values = [record["val_accuracy"] for record in self.epochs if record["val_accuracy"] is not None]
        return max(values) if values else None

    def to_dict(self):
        return {"epochs": [dict(record) for record in self.epochs], "best_val_accuracy": self.best_val_accuracy,
                "diverged": self.diverged}

    @classmethod
    def from_dict(cls, payload):
        return cls(payload["epochs"], payload.get("diverged"))

    def __repr__(self):
        return f"History({len(self.epochs)} epochs, best_val_accuracy={self.best_val_accuracy})"


def write_history(path, history):
    write_atomic(path, lambda file: file.write(json.dumps(history.to_dict(), indent=1).encode()))


def save_checkpoint(path, model, optimizer, scheduler, epoch, history):
    """One ``.npz`` with the model's state dict, the optimizer's and the scheduler's, the epoch and the history."""
    arrays = OrderedDict((f"model.{k}", v) for k, v in model.state_dict().items())
    arrays.update((f"optimizer.{k}", v) for k, v in optimizer.state_dict().items())
    if scheduler is not None:
        arrays.update((f"scheduler.{k}", v) for k, v in scheduler.state_dict().items())
    arrays["epoch"] = np.array(epoch)
    arrays["history"] = np.array(json.dumps(history.to_dict()))
    arrays["classes"] = np.array(_classes(optimizer, scheduler))
    write_atomic(path, lambda file: np.savez(file, **arrays))


def _classes(optimizer, scheduler):
    """``"SGD+CosineAnnealingLR"``: what a checkpoint's optimizer and scheduler states belong to."""
    return f"{type(optimizer).__name__}+{type(scheduler).__name__ if scheduler is not None else 'constant'}"


def _section(arrays, prefix):
    return OrderedDict((k[len(prefix):], v) for k, v in arrays.items() if k.startswith(prefix))


def _check_architecture(model, saved, path):
    """A one-line StateDictError when the checkpoint's model state does not fit ``model``."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in saved]
    unexpected = [k for k in saved if k not in ours]
    misshaped = [f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}" for k, v in ours.items()
                 if k in saved and saved[k].shape != v.shape]
    if missing or unexpected or misshaped:
        problems = [f"{len(keys)} {what} (first: {keys[0]})" for what, keys in
                    (("missing keys", missing), ("unexpected keys", unexpected),
                     ("mis-shaped keys, checkpoint vs model", misshaped)) if keys]
        raise StateDictError(f"fit: checkpoint {path} was written for another architecture than this "
                             f"{type(model).__name__}: " + "; ".join(problems))


def load_checkpoint(path, model, optimizer, scheduler):
    """Restore a :func:`save_checkpoint` file into the objects, in place; returns ``(epoch, history)``."""
    with np.load(path, allow_pickle=False) as file:
        arrays = {key: file[key] for key in file.files}
    saved_model = _section(arrays, "model.")
    _check_architecture(model, saved_model, path)
    if str(arrays["classes"]) != _classes(optimizer, scheduler):
        raise ValueError(f"fit: checkpoint {path} was written by {arrays['classes']}, this run uses "
                         f"{_classes(optimizer, scheduler)} (optimizer + schedule)")
    optimizer.load_state_dict(_section(arrays, "optimizer."))
    if scheduler is not None:
        scheduler.load_state_dict(_section(arrays, "scheduler."))
    model.load_state_dict(saved_model)
    return int(arrays["epoch"]), History.from_dict(json.loads(str(arrays["history"])))


# --------------------------------------------------------------------------
# Checks made before any training
# --------------------------------------------------------------------------
def _check_loader(loader, name):
    if not (hasattr(loader, "batches") and hasattr(loader, "__len__")):
        raise TypeError(f"fit: {name} must have len() and batches(epoch), got {type(loader).__name__}")
    if len(loader) < 1:
        raise ValueError(f"fit: {name} has no batches")


def _number_of_classes(model, loader):
    """K of the model's (N, K) logits, from one eval-mode forward of the loader's first image."""
    x, _ = next(iter(loader.batches(0)))
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            logits = model(Tensor(np.asarray(x[:1], model.dtype)))
    finally:
        model.train(was_training)
    if logits.ndim != 2:
        raise ValueError(f"fit: the model must return (N, K) logits, got shape {logits.shape}")
    return logits.shape[1]


def _check_labels(loader, name, classes):
    """Every label of epoch 0 is an int in [0, classes) (labels are the same in every epoch, only reordered)."""
    low, high = None, None
    for _, y in loader.batches(0):
        y = np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"fit: {name} labels must be a 1-d int array per batch, got {y.dtype} {y.shape}")
        if y.size:
            low = y.min() if low is None else min(low, y.min())
            high = y.max() if high is None else max(high, y.max())
    if low is not None and (low < 0 or high >= classes):
        raise ValueError(f"fit: {name} labels must lie in [0, {classes}) for a model with {classes} classes, "
                         f"got labels from {low} to {high}")


def _build_optimizer(model, optimizer, lr, momentum, weight_decay):
    if optimizer == "sgd":
        return nn.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    return nn.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def _build_schedule(optimizer, schedule, epochs, step_size, gamma):
    if schedule == "cosine":
        return nn.CosineAnnealingLR(optimizer, T_max=epochs)
    if schedule == "step":
        return nn.StepLR(optimizer, step_size=step_size, gamma=gamma)
    return None


# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------
def evaluate(model, loader):
    """``{"loss", "accuracy"}`` over ``loader.batches(0)``: mean cross-entropy and top-1 accuracy per image,
    in eval mode (running BN statistics) without a graph; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    try:
        with no_grad():
            for x, y in loader.batches(0):
                logits = model(Tensor(np.asarray(x, model.dtype)))
                total_loss += float(ops.cross_entropy(logits, y).item()) * len(y)
                correct += int((logits.data.argmax(axis=1) == y).sum())
                seen += len(y)
    finally:
        model.train(was_training)
    if not seen:
        raise ValueError("evaluate: the loader gave no images")
    return {"loss": total_loss / seen, "accuracy": correct / seen}


def _train_epoch(model, loader, optimizer, epoch, bar):
    """One pass of SGD/Adam steps; returns ``(mean loss, accuracy, images, seconds)``. A non-finite loss raises
    :class:`_NonFiniteLoss` before the optimizer steps on it."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    started = time.perf_counter()
    for batch, (x, y) in enumerate(loader.batches(epoch)):
        optimizer.zero_grad()
        logits = model(Tensor(np.asarray(x, model.dtype)))
        loss = ops.cross_entropy(logits, y)
        value = float(loss.item())
        if not math.isfinite(value):
            raise _NonFiniteLoss(batch, value)
        loss.backward()
        optimizer.step()
        total_loss += value * len(y)
        correct += int((logits.data.argmax(axis=1) == y).sum())
        seen += len(y)
        bar.update(1)
        bar.set_postfix(OrderedDict(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}",
                                    img_s=f"{seen / (time.perf_counter() - started):.0f}"), refresh=False)
    return total_loss / seen, correct / seen, seen, time.perf_counter() - started


def fit(model, train_loader, val_loader, *, epochs, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
        schedule="cosine", step_size=None, gamma=0.1, checkpoint=None, history_path=None, progress=True):
    """Train ``model`` for ``epochs`` epochs of ``train_loader``, evaluating on ``val_loader`` after each;
    returns the :class:`History` (see the module docstring for the loaders, files and seeds).

    ``optimizer``: ``"sgd"`` (momentum, weight decay) or ``"adam"`` (``momentum`` unused; betas (0.9, 0.999)).
    ``schedule``: ``"cosine"`` (T_max = epochs, down to 0), ``"step"`` (× ``gamma`` every ``step_size``
    epochs) or ``"constant"``, stepped once per epoch. ``val_loader`` may be None (no val fields then).
    ``progress``: tqdm bars per epoch (loss, accuracy, img/s); tqdm shows none when the output is not a
    terminal, and ``progress=False`` shows none anywhere. The model trains on the current backend, in the
    model's dtype (batches are converted to it).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit: model must be a minitorch_attn.nn.Module, got {type(model).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"fit: optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"fit: schedule must be one of {SCHEDULES}, got {schedule!r}")
    if (schedule == "step") != (step_size is not None):
        raise ValueError(f"fit: step_size goes with schedule='step' (and only with it), got schedule={schedule!r}, "
                         f"step_size={step_size!r}")
    _check_loader(train_loader, "train_loader")
    if val_loader is not None:
        _check_loader(val_loader, "val_loader")
    opt = _build_optimizer(model, optimizer, lr, momentum, weight_decay)
    scheduler = _build_schedule(opt, schedule, int(epochs), step_size, gamma)
    classes = _number_of_classes(model, train_loader)
    for loader, name in ((train_loader, "train_loader"), (val_loader, "val_loader")):
        if loader is not None:
            _check_labels(loader, name, classes)

    start, history = 0, History()
    if checkpoint is not None and pathlib.Path(checkpoint).exists():
        start, history = load_checkpoint(checkpoint, model, opt, scheduler)
        if start > epochs:
            raise ValueError(f"fit: checkpoint {checkpoint} is at epoch {start}, past epochs={epochs}")
    disable = None if progress else True  # None: tqdm stays silent when the output is not a terminal
    for epoch in range(start, epochs):
        started = time.perf_counter()
        lr_used = opt.lr
        with tqdm(total=len(train_loader), desc=f"epoch {epoch + 1}/{epochs}", disable=disable,
                  unit="batch", leave=True) as bar:
            try:
                train_loss, train_accuracy, images, train_seconds = _train_epoch(model, train_loader, opt, epoch,
                                                                                 bar)
            except _NonFiniteLoss as error:
                history.diverged = (f"training diverged: loss {error.loss} at epoch {epoch + 1}, batch "
                                    f"{error.batch + 1} (lr {lr_used:g}); the {len(history.epochs)} finished "
                                    f"epochs are in the history")
                if history_path is not None:
                    write_history(history_path, history)
                raise TrainingDiverged(f"fit: {history.diverged}", history) from None
            val = evaluate(model, val_loader) if val_loader is not None else {"loss": None, "accuracy": None}
            bar.set_postfix(OrderedDict(loss=f"{train_loss:.4f}", acc=f"{train_accuracy:.3f}",
                                        img_s=f"{images / train_seconds:.0f}",
                                        val_acc="-" if val["accuracy"] is None else f"{val['accuracy']:.3f}"))
        if scheduler is not None:
            scheduler.step()
        history.epochs.append(dict(zip(EPOCH_FIELDS, (
            epoch + 1, train_loss, train_accuracy, val["loss"], val["accuracy"], lr_used,
            time.perf_counter() - started, images / train_seconds))))
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, opt, scheduler, epoch + 1, history)
        if history_path is not None:
            write_history(history_path, history)
    return history

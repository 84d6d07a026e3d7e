"""Training of one run: a pure ``train_one_epoch`` / ``evaluate`` and the loop that resumes.

The objective, metrics, divergence check and checkpoint codec are ``core.training_common``'s,
shared with the vectorised path (``core.vectorized``)."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable

import torch
from torch import nn

from core.config import RunConfig, lr_at, run_seed
from core.data import PairData, PairSplit, draw_run_pairs
from core.models import build_model
from core.optim import SGD
from core.training_common import (  # noqa: F401 - EpochMetrics, TestMetrics, TrainingDiverged: re-exported
    CheckpointError,
    EpochMetrics,
    Metrics,
    TestMetrics,
    TrainingDiverged,
    check_finite,
    decode_checkpoint,
    encode_checkpoint,
    first_line,
    objective,
    shuffle_generator,
)

#: Pairs per evaluation batch, over all the models evaluated together (a vectorised group splits
#: it among its repetitions): small enough for a batch's activations to stay in cache, which makes
#: the 1000-pair test pass 1.3-1.7x faster than one batch of 1000 on a CPU (1.9-4x for a group of 10).
EVAL_BATCH = 250

#: What ``make_optimizer`` makes.
Optimizer = SGD | torch.optim.Optimizer


def _no_progress_hook() -> None:
    pass


#: Called after every batch, of training and of evaluation. A worker process of
#: ``core.executors.LocalExecutor`` counts the calls in shared memory, so that its driver can tell
#: a worker that trains from one that is hung or stopped (see ``set_progress_hook``).
progress_hook: Callable[[], None] = _no_progress_hook


def set_progress_hook(hook: Callable[[], None] | None) -> None:
    global progress_hook
    progress_hook = hook or _no_progress_hook


class RunInterrupted(Exception):
    """Training stopped on request after a saved epoch; the run can be resumed."""


class DeviceError(ValueError):
    """The requested device does not exist here."""


def resolve_device(name: str = "auto") -> str:
    """``auto`` is CUDA when present, else CPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not (name == "cuda" or name.startswith("cuda:")):
        raise DeviceError(f"unknown device {name!r}: use auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but no CUDA GPU is visible: use --device cpu")
    return name


def seed_epoch(run_seed: int, epoch: int) -> None:
    """Seed torch's global generators (CPU and CUDA) for 1-based ``epoch`` of a run.

    Called at the start of every epoch, so every draw of the global generator during an epoch
    (dropout masks, and anything else a layer draws) depends only on (run seed, epoch): a run
    resumed from a checkpoint draws what an undisturbed one draws. Shuffling and augmentation
    have their own generators; the paper's models draw nothing from the global one while they
    train, so their numbers do not depend on this.
    """
    digest = hashlib.sha256(f"epoch:{run_seed}:{epoch}".encode()).digest()
    torch.manual_seed(int.from_bytes(digest[:7], "big"))


def autocast(device: str, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(
    model: nn.Module,
    optimizer: Optimizer,
    split: PairSplit,
    *,
    batch_size: int,
    aux_weight: float,
    generator: torch.Generator,
    precision: str = "fp32",
) -> dict:
    """One pass over ``split`` in a shuffled order; the losses and accuracy averaged over samples."""
    model.train()
    device = split.x.device.type
    order = torch.randperm(len(split), generator=generator).to(split.x.device)
    sums = Metrics()
    for start in range(0, len(split), batch_size):
        index = order[start : start + batch_size]
        x, target, classes = split.x[index], split.target[index], split.classes[index]
        with autocast(device, precision):
            logits, digit_logits = model(x)
        loss, main = objective(logits, digit_logits, target, classes, aux_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums.add(loss, main, logits, target)
        progress_hook()
    return sums.result(len(split))


@torch.no_grad()
def evaluate(model: nn.Module, split: PairSplit, *, aux_weight: float, precision: str = "fp32") -> dict:
    """Loss (eq. 2 total and main term), comparison accuracy and digit accuracy on ``split``."""
    model.eval()
    device = split.x.device.type
    sums = Metrics()
    for start in range(0, len(split), EVAL_BATCH):
        x = split.x[start : start + EVAL_BATCH]
        target = split.target[start : start + EVAL_BATCH]
        classes = split.classes[start : start + EVAL_BATCH]
        with autocast(device, precision):
            logits, digit_logits = model(x)
        loss, main = objective(logits, digit_logits, target, classes, aux_weight)
        sums.add(loss, main, logits, target, digit_logits, classes)
        progress_hook()
    return sums.result(len(split))


def make_optimizer(config: RunConfig, model: nn.Module) -> Optimizer:
    """``config``'s optimiser over ``model``'s parameters: ``core.optim.SGD`` (``torch.optim.SGD``'s
    arithmetic and state without importing torch._dynamo) or ``torch.optim.Adam``."""
    if config.optimizer == "sgd":
        return SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def save_checkpoint(model: nn.Module, optimizer: Optimizer, epoch: int) -> bytes:
    return encode_checkpoint(epoch, model.state_dict(), optimizer.state_dict())


def checkpoint_problem(config: RunConfig, state: bytes) -> str | None:
    """Why ``state`` cannot resume a run of ``config`` (damaged, not a pairs checkpoint, another
    model's weights, an epoch outside the run), or None when it can. Never unpickles code
    (``weights_only``)."""
    try:
        saved = decode_checkpoint(state, config.epochs)
    except CheckpointError as exc:
        return str(exc)
    try:
        model = build_model(config)
        model.load_state_dict(saved.model)
        optimizer = make_optimizer(config, model)
        optimizer.load_state_dict(saved.optimizer)
    except Exception as exc:  # noqa: BLE001
        return first_line(exc)
    for group in optimizer.param_groups:
        for param in group["params"]:
            for value in optimizer.state.get(param, {}).values():
                if torch.is_tensor(value) and value.dim() and value.shape != param.shape:
                    return (
                        f"optimizer state of shape {tuple(value.shape)} for a parameter of shape {tuple(param.shape)}"
                    )
    return None


def load_checkpoint(state: bytes, model: nn.Module, optimizer: Optimizer) -> int:
    """Restore model and optimiser; returns the last completed epoch."""
    saved = decode_checkpoint(state)
    model.load_state_dict(saved.model)
    optimizer.load_state_dict(saved.optimizer)
    return saved.epoch


def run_training(
    config: RunConfig,
    rep: int,
    *,
    device: str = "cpu",
    data: PairData | None = None,
    data_dir: str | None = None,
    checkpoint: bytes | None = None,
    on_epoch: Callable[[EpochMetrics, bytes], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TestMetrics:
    """Train repetition ``rep`` of ``config`` from scratch or from ``checkpoint``.

    After each epoch ``on_epoch(metrics, checkpoint_bytes)`` is called (persist both together).
    Every random draw of epoch e (shuffling, augmentation, dropout masks) depends on (run seed, e)
    only, so a resumed run ends with the numbers of an uninterrupted one. Raises RunInterrupted
    when ``should_stop()`` turns true after an epoch.
    """
    seed = run_seed(config, rep)
    if data is None:
        data = draw_run_pairs(config, rep, data_dir)
    train, val, test = (_to(split, device) for split in (data.train, data.val, data.test))
    if config.augments:
        from core.augment import augment_generator, augment_split
    torch.manual_seed(seed)
    model = build_model(config).to(device)
    optimizer = make_optimizer(config, model)
    done = load_checkpoint(checkpoint, model, optimizer) if checkpoint else 0

    for epoch in range(done + 1, config.epochs + 1):
        if should_stop():
            raise RunInterrupted(f"stopped before epoch {epoch}")
        started = time.perf_counter()
        lr = lr_at(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        generator = shuffle_generator(seed, epoch)
        seed_epoch(seed, epoch)
        pairs = train
        if config.augments:  # drawn on the CPU from (run seed, epoch), as the vectorised path
            pairs = _to(augment_split(data.train, config, augment_generator(seed, epoch)), device)
        fit = train_one_epoch(
            model,
            optimizer,
            pairs,
            batch_size=config.batch_size,
            aux_weight=config.aux_weight,
            generator=generator,
            precision=config.precision,
        )
        check_finite(fit["loss"], epoch, config.lr)
        held_out = evaluate(model, val, aux_weight=config.aux_weight, precision=config.precision)
        metrics = EpochMetrics.of(epoch, fit, held_out, lr, time.perf_counter() - started)
        if on_epoch is not None:
            on_epoch(metrics, save_checkpoint(model, optimizer, epoch))

    final = evaluate(model, test, aux_weight=config.aux_weight, precision=config.precision)
    return TestMetrics.of(final)


def _to(split: PairSplit, device: str) -> PairSplit:
    return PairSplit(split.x.to(device), split.target.to(device), split.classes.to(device))

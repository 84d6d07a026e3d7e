"""Train the R repetitions of one configuration together, as one vectorised model.

Each repetition keeps its own initialisation (built exactly as ``train.run_training`` builds it),
its own data draw, its own shuffling and its own metrics: the parameters are stacked with
``torch.func.stack_module_state`` and the forward pass is ``core.grouped.grouped_forward`` (grouped
convolutions and batched matmuls, what ``vmap(functional_call)`` computes, faster). The loss is
the sum of the repetitions' mean losses, so each repetition's gradient is its own, and SGD/Adam
update every element independently. The objective, metrics, divergence check and checkpoint codec
are ``core.training_common``'s, as on the one-at-a-time path. Checkpoints are per run and interchangeable with the
one-at-a-time path.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import stack_module_state

from core import train as _train
from core.config import RunConfig, lr_at, run_seed, vectorizable
from core.data import PairData, draw_run_pairs
from core.grouped import grouped_forward
from core.models import DIGIT_STRUCTURES, build_model
from core.train import EVAL_BATCH, RunInterrupted, autocast, make_optimizer
from core.training_common import (
    EpochMetrics,
    Metrics,
    TestMetrics,
    TrainingSums,
    decode_checkpoint,
    divergence,
    encode_checkpoint,
    failure_reason,
    objective,
    shuffle_generator,
)


@dataclass
class _Stacked:
    """Splits of R repetitions stacked on a leading dimension."""

    x: torch.Tensor  # (R, n, 2, 14, 14)
    target: torch.Tensor  # (R, n)
    classes: torch.Tensor  # (R, n, 2)


def _stack(splits: list, device: str) -> _Stacked:
    return _Stacked(
        torch.stack([s.x for s in splits]).to(device),
        torch.stack([s.target for s in splits]).to(device),
        torch.stack([s.classes for s in splits]).to(device),
    )


def epoch_batches(data: _Stacked, seeds: list[int], epoch: int, batch_size: int):
    """The batches of one training epoch of the runs stacked in ``data``, run i shuffled by
    ``seeds[i] + epoch`` as ``core.train`` shuffles one run: (x, target, classes) per batch. The
    epoch is gathered in its order once (one copy of the split), each batch is a view of it."""
    n = data.target.shape[1]
    orders = torch.stack([torch.randperm(n, generator=shuffle_generator(seed, epoch)) for seed in seeds]).to(
        data.x.device
    )
    rows = torch.arange(len(seeds), device=data.x.device)[:, None]
    x, target, classes = data.x[rows, orders], data.target[rows, orders], data.classes[rows, orders]
    for start in range(0, n, batch_size):
        end = start + batch_size
        yield x[:, start:end], target[:, start:end], classes[:, start:end]


class VectorizedRuns:
    """R models of one configuration as stacked parameters with one optimiser."""

    def __init__(self, config: RunConfig, reps: list[int], device: str, checkpoints: list[bytes | None]):
        if not vectorizable(config):
            raise ValueError(
                f"{config.label} {config.options_label()} cannot be vectorised "
                "(batch norm or dropout): train its runs one at a time"
            )
        self.config, self.reps, self.device = config, reps, device
        models, states = [], []
        for rep, state in zip(reps, checkpoints):
            torch.manual_seed(run_seed(config, rep))
            model = build_model(config)
            saved = decode_checkpoint(state) if state else None
            if saved:
                model.load_state_dict(saved.model)
            models.append(model.to(device))
            states.append(saved)
        done = {s.epoch if s else 0 for s in states}
        if len(done) != 1:
            raise ValueError("a vectorised group must start from the same epoch")
        self.done = done.pop()
        params, buffers = stack_module_state(models)
        self.names = list(params)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.base = copy.deepcopy(models[0]).to("meta")
        self.has_digits = config.structure in DIGIT_STRUCTURES
        self.optimizer = make_optimizer(config, _ParamList(list(self.params.values())))
        saved_states = [s for s in states if s is not None]
        if self.done and len(saved_states) == len(states) and saved_states[0].optimizer.get("state"):
            self.optimizer.load_state_dict(_stack_optimizer([s.optimizer for s in saved_states]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return grouped_forward(self.base, self.params, x)

    def losses(self, logits, digits, target, classes) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-repetition (total, main) losses, each of shape (R,)."""
        return objective(logits, digits, target, classes, self.config.aux_weight)

    def train_epoch(self, data: _Stacked, epoch: int) -> dict:
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(config, epoch)
        sums = TrainingSums()
        seeds = [run_seed(config, rep) for rep in self.reps]
        for x, target, classes in epoch_batches(data, seeds, epoch, config.batch_size):
            with autocast(self.device, config.precision):
                logits, digits = self.forward(x)
            loss, main = self.losses(logits, digits, target, classes)
            self.optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            self.optimizer.step()
            sums.add(loss, main, logits, target)
            _train.progress_hook()
        return sums.result(data.target.shape[1])

    @torch.no_grad()
    def evaluate(self, data: _Stacked) -> dict:
        r, n = data.target.shape
        sums = Metrics(r, self.device)
        batch = max(1, EVAL_BATCH // r)
        for start in range(0, n, batch):
            x = data.x[:, start : start + batch]
            target = data.target[:, start : start + batch]
            classes = data.classes[:, start : start + batch]
            with autocast(self.device, self.config.precision):
                logits, digits = self.forward(x)
            loss, main = self.losses(logits, digits, target, classes)
            sums.add(loss, main, logits, target, digits if self.has_digits else None, classes)
            _train.progress_hook()
        return sums.result(n)

    def checkpoint(self, index: int, epoch: int) -> bytes:
        """The one-at-a-time checkpoint format for repetition ``index`` of the group."""
        model = {k: v[index].detach().cpu().clone() for k, v in {**self.params, **self.buffers}.items()}
        return encode_checkpoint(epoch, model, _slice_optimizer(self.optimizer.state_dict(), index))


class _ParamList(torch.nn.Module):
    """Lets ``make_optimizer`` take the stacked tensors like a module's parameters."""

    def __init__(self, tensors: list[torch.Tensor]):
        super().__init__()
        self._tensors = tensors

    def parameters(self, recurse: bool = True):
        return iter(self._tensors)


def _slice_optimizer(state: dict, index: int) -> dict:
    sliced = {}
    for key, values in state["state"].items():
        sliced[key] = {
            name: value[index].clone() if torch.is_tensor(value) and value.dim() > 0 else value
            for name, value in values.items()
        }
    return {"state": sliced, "param_groups": copy.deepcopy(state["param_groups"])}


def _stack_optimizer(states: list[dict]) -> dict:
    stacked = {}
    for key, values in states[0]["state"].items():
        stacked[key] = {
            name: torch.stack([s["state"][key][name] for s in states])
            if torch.is_tensor(value) and value.dim() > 0
            else value
            for name, value in values.items()
        }
    return {"state": stacked, "param_groups": copy.deepcopy(states[0]["param_groups"])}


def run_group(
    config: RunConfig,
    reps: list[int],
    *,
    device: str = "cpu",
    data: list[PairData] | None = None,
    data_dir: str | None = None,
    checkpoints: list[bytes | None] | None = None,
    on_epoch: Callable[[int, EpochMetrics, bytes], None] | None = None,
    on_failed: Callable[[int, str], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[int, TestMetrics]:
    """Train repetitions ``reps`` of ``config`` together; returns test metrics per repetition.

    ``on_epoch(rep, metrics, checkpoint)`` follows every epoch of every repetition. A repetition
    whose loss turns non-finite is reported to ``on_failed(rep, reason)`` and stops reporting;
    the others go on (their gradients do not depend on it).
    """
    if data is None:
        data = [draw_run_pairs(config, rep, data_dir) for rep in reps]
    group = VectorizedRuns(config, reps, device, checkpoints or [None] * len(reps))
    train = _stack([d.train for d in data], device)
    val = _stack([d.val for d in data], device)
    test = _stack([d.test for d in data], device)
    alive = list(range(len(reps)))
    for epoch in range(group.done + 1, config.epochs + 1):
        if should_stop():
            raise RunInterrupted(f"stopped before epoch {epoch}")
        started = time.perf_counter()
        pairs = train
        if config.augments:  # each repetition's own draw, as on the one-at-a-time path
            from core.augment import augment_generator, augment_split

            pairs = _stack(
                [
                    augment_split(d.train, config, augment_generator(run_seed(config, rep), epoch))
                    for d, rep in zip(data, reps)
                ],
                device,
            )
        fit = group.train_epoch(pairs, epoch)
        held_out = group.evaluate(val)
        seconds = (time.perf_counter() - started) / len(reps)
        for i in list(alive):
            error = divergence(fit["loss"][i], epoch, config.lr)
            if error is not None:
                alive.remove(i)
                if on_failed:
                    on_failed(reps[i], failure_reason(error))
                continue
            metrics = EpochMetrics.of(epoch, _run(fit, i), _run(held_out, i), lr_at(config, epoch), seconds)
            if on_epoch:
                on_epoch(reps[i], metrics, group.checkpoint(i, epoch))
        if not alive:
            return {}
    final = group.evaluate(test)
    return {reps[i]: TestMetrics.of(_run(final, i)) for i in alive}


def _run(result: dict, index: int) -> dict:
    """Repetition ``index``'s values of a group's ``Metrics.result``."""
    return {key: values[index] for key, values in result.items()}

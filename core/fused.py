"""Train the repetitions of several configurations together, as one fused grouped model.

Configurations of one *family* (``family_key``: the same tower shapes, and the same batches and
epochs) share their tower calls: every tower layer runs as one grouped convolution over all the
family's repetitions, e.g. for the paper's three structures of one architecture and kernel, the
20 towers of ``independent``'s 10 repetitions in one call and the 20 shared towers of ``shared``
and ``shared-aux`` in another (a grouped convolution needs the same images per group: a tower of
``independent`` sees one image of each pair, a shared tower both). Each configuration keeps its
own head, loss (its ``aux_weight``), optimiser (its learning rate and schedule, momentum, weight
decay, even SGD beside Adam), and each repetition its own initialisation, data, shuffling,
augmentation, metrics and checkpoint, exactly as ``core.vectorized`` builds them: the numbers
equal the unfused path's to float32 rounding, and the checkpoints are interchangeable with it.

The tower weights of a call live in one (G, ...) tensor per layer; each configuration's stacked
parameters are views into it (leaves of autograd, updated in place by their own optimiser), so
the fused call reads them without a copy (``_Joined``).

Runs fuse only when they resume from the same epoch (``core.executors`` groups a task's runs by
their checkpoint's epoch first). Which configurations fuse, and the switch that turns fusion
off, are ``core.families``'.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.config import RunConfig, lr_at, run_seed
from core.data import PairData, draw_run_pairs
from core.families import family_key
from core.grouped import Parts, fused_parts, tower_call
from core.models import DIGIT_STRUCTURES
from core.train import EVAL_BATCH, RunInterrupted, autocast
from core.training_common import (
    EpochMetrics,
    Metrics,
    TestMetrics,
    TrainingSums,
    divergence,
    failure_reason,
    objective,
)
from core.vectorized import VectorizedRuns, _run, _stack, _Stacked, epoch_batches


class _Joined(torch.autograd.Function):
    """``whole`` (G, ...), whose storage the ``parts`` (views of it, autograd leaves) share, as
    an autograd input: forward returns it without a copy, backward hands each part its slice."""

    @staticmethod
    def forward(ctx, whole: torch.Tensor, *parts: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.sizes = [part.shape[0] for part in parts]
        return whole.view_as(whole)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return (None, *grad.split(ctx.sizes))


@dataclass
class _Member:
    """One configuration's repetitions inside the fused model."""

    runs: VectorizedRuns  # its stacked parameters (tower ones: views), optimiser, checkpoints
    parts: Parts
    first: int  # its first row in the fused model's stacked data
    count: int

    @property
    def config(self) -> RunConfig:
        return self.runs.config


@dataclass
class _Call:
    """One grouped tower call: the towers that see the same images per group."""

    images_per_pair: int
    slots: list[tuple[int, str]]  # (member index, tower prefix), in group order
    weights: dict[str, torch.Tensor]  # tower parameter name -> (G, ...) tensor


class FusedRuns:
    """The repetitions of several configurations of one family as one model.

    ``members`` are (config, reps, checkpoints) per configuration, each as ``VectorizedRuns``
    takes them; every checkpoint of every member must be of the same epoch."""

    def __init__(self, members: list[tuple[RunConfig, list[int], list[bytes | None]]], device: str):
        keys = {family_key(config) for config, _, _ in members}
        if None in keys or len(keys) != 1:
            raise ValueError("fused configurations must be of one family (core.fused.family_key)")
        self.device = device
        self.members: list[_Member] = []
        first = 0
        for config, reps, checkpoints in members:
            parts = fused_parts(config.structure)
            assert parts is not None  # family_key checked it
            runs = VectorizedRuns(config, reps, device, checkpoints)
            self.members.append(_Member(runs, parts, first, len(reps)))
            first += len(reps)
        self.total = first
        done = {member.runs.done for member in self.members}
        if len(done) != 1:
            raise ValueError("a fused group must start from the same epoch")
        self.done = done.pop()
        self.config = self.members[0].config  # the family's shared protocol (batch size, ...)
        self.calls = self._share_towers()

    def _share_towers(self) -> list[_Call]:
        """Move every member's tower parameters into one (G, ...) tensor per call and layer,
        each member keeping views of its slice (so its optimiser updates the shared tensor)."""
        calls: dict[int, _Call] = {}
        for index, member in enumerate(self.members):
            call = calls.setdefault(member.parts.images_per_pair, _Call(member.parts.images_per_pair, [], {}))
            call.slots.extend((index, prefix) for prefix in member.parts.towers)
        for call in calls.values():
            index, prefix = call.slots[0]
            names = [name for name, _ in getattr(self.members[index].runs.base, prefix).named_parameters()]
            for name in names:
                tensors = [self.members[i].runs.params[f"{p}.{name}"] for i, p in call.slots]
                whole = torch.cat([t.detach() for t in tensors])
                call.weights[name] = whole
                start = 0
                for (i, p), tensor in zip(call.slots, tensors):
                    view = whole[start : start + tensor.shape[0]]
                    view.requires_grad_(True)
                    start += tensor.shape[0]
                    self._replace(self.members[i], f"{p}.{name}", view)
        return list(calls.values())

    @staticmethod
    def _replace(member: _Member, name: str, view: torch.Tensor) -> None:
        """Put ``view`` in place of the member's parameter ``name``, in its optimiser too."""
        runs = member.runs
        old = runs.params[name]
        runs.params[name] = view
        for group in runs.optimizer.param_groups:
            group["params"] = [view if p is old else p for p in group["params"]]
        if old in runs.optimizer.state:
            runs.optimizer.state[view] = runs.optimizer.state.pop(old)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """x (total R, n, 2, 14, 14), the members' rows in order -> each member's (logits, digits)."""
        features: dict[tuple[int, str], torch.Tensor] = {}
        for call in self.calls:
            images = []
            for index, prefix in call.slots:
                member = self.members[index]
                rows = x[member.first : member.first + member.count]
                images.append(member.parts.images(rows)[member.parts.towers.index(prefix)])
            index, prefix = call.slots[0]
            tower = getattr(self.members[index].runs.base, prefix)
            weights = {name: _Joined.apply(whole, *self._views(call, name)) for name, whole in call.weights.items()}
            out = tower_call(tower, weights, torch.cat(images))
            for slot, value in zip(call.slots, out.split([self.members[i].count for i, _ in call.slots])):
                features[slot] = value
        return [
            member.parts.head(
                member.runs.base, member.runs.params, [features[(index, prefix)] for prefix in member.parts.towers]
            )
            for index, member in enumerate(self.members)
        ]

    def _views(self, call: _Call, name: str) -> list[torch.Tensor]:
        return [self.members[index].runs.params[f"{prefix}.{name}"] for index, prefix in call.slots]

    def _losses(self, outputs, target, classes) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [
            objective(
                logits,
                digits,
                target[m.first : m.first + m.count],
                classes[m.first : m.first + m.count],
                m.config.aux_weight,
            )
            for m, (logits, digits) in zip(self.members, outputs)
        ]

    def train_epoch(self, data: _Stacked, epoch: int) -> dict:
        """One epoch of every run; ``Metrics.result`` over all the runs, members in order."""
        for member in self.members:
            for group in member.runs.optimizer.param_groups:
                group["lr"] = lr_at(member.config, epoch)
        sums = TrainingSums()
        seeds = [run_seed(member.config, rep) for member in self.members for rep in member.runs.reps]
        from core import train as _train

        for x, target, classes in epoch_batches(data, seeds, epoch, self.config.batch_size):
            with autocast(self.device, self.config.precision):
                outputs = self.forward(x)
            losses = self._losses(outputs, target, classes)
            loss = torch.cat([total for total, _ in losses])
            for member in self.members:
                member.runs.optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            for member in self.members:
                member.runs.optimizer.step()
            sums.add(
                loss, torch.cat([main for _, main in losses]), torch.cat([logits for logits, _ in outputs]), target
            )
            _train.progress_hook()
        return sums.result(data.target.shape[1])

    @torch.no_grad()
    def evaluate(self, data: _Stacked) -> list[dict]:
        """Each member's ``Metrics.result`` on ``data``."""
        from core import train as _train

        r, n = data.target.shape
        sums = [Metrics(m.count, self.device) for m in self.members]
        batch = max(1, EVAL_BATCH // r)
        for start in range(0, n, batch):
            x = data.x[:, start : start + batch]
            target = data.target[:, start : start + batch]
            classes = data.classes[:, start : start + batch]
            with autocast(self.device, self.config.precision):
                outputs = self.forward(x)
            for member, metrics, (logits, digits), (loss, main) in zip(
                self.members, sums, outputs, self._losses(outputs, target, classes)
            ):
                rows = slice(member.first, member.first + member.count)
                has_digits = member.config.structure in DIGIT_STRUCTURES
                metrics.add(loss, main, logits, target[rows], digits if has_digits else None, classes[rows])
            _train.progress_hook()
        return [metrics.result(n) for metrics in sums]


def run_fused(
    members: list[tuple[RunConfig, list[int], list[bytes | None]]],
    *,
    device: str = "cpu",
    data: list[list[PairData]] | None = None,
    data_dir: str | None = None,
    on_epoch: Callable[[int, int, EpochMetrics, bytes], None] | None = None,
    on_failed: Callable[[int, int, str], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[tuple[int, int], TestMetrics]:
    """Train the runs of ``members`` ((config, reps, checkpoints) of one family, each checkpoint
    of the same epoch) as one fused model; test metrics per (member index, repetition).

    As ``core.vectorized.run_group`` for each member: ``on_epoch(member, rep, metrics,
    checkpoint)`` after every epoch of every run, ``on_failed(member, rep, reason)`` for a run
    whose loss turned non-finite (it stops reporting; the others go on), ``RunInterrupted``
    when ``should_stop()`` turns true before an epoch. ``data``: each member's PairData per rep.
    """
    if data is None:
        data = [[draw_run_pairs(config, rep, data_dir) for rep in reps] for config, reps, _ in members]
    fused = FusedRuns(members, device)
    flat = [
        (index, rep, pairs)
        for index, ((_, reps, _), own) in enumerate(zip(members, data))
        for rep, pairs in zip(reps, own)
    ]
    train = _stack([pairs.train for _, _, pairs in flat], device)
    val = _stack([pairs.val for _, _, pairs in flat], device)
    test = _stack([pairs.test for _, _, pairs in flat], device)
    alive = list(range(len(flat)))
    offsets = [member.first for member in fused.members]
    epochs = fused.config.epochs
    for epoch in range(fused.done + 1, epochs + 1):
        if should_stop():
            raise RunInterrupted(f"stopped before epoch {epoch}")
        started = time.perf_counter()
        pairs = train
        if any(member.config.augments for member in fused.members):
            from core.augment import augment_generator, augment_split

            pairs = _stack(
                [
                    augment_split(
                        own.train, members[index][0], augment_generator(run_seed(members[index][0], rep), epoch)
                    )
                    if members[index][0].augments
                    else own.train
                    for index, rep, own in flat
                ],
                device,
            )
        fit = fused.train_epoch(pairs, epoch)
        held_out = fused.evaluate(val)
        seconds = (time.perf_counter() - started) / len(flat)
        for row in list(alive):
            index, rep, _ = flat[row]
            member = fused.members[index]
            config, own = member.config, row - offsets[index]
            error = divergence(fit["loss"][row], epoch, config.lr)
            if error is not None:
                alive.remove(row)
                if on_failed:
                    on_failed(index, rep, failure_reason(error))
                continue
            metrics = EpochMetrics.of(epoch, _run(fit, row), _run(held_out[index], own), lr_at(config, epoch), seconds)
            if on_epoch:
                on_epoch(index, rep, metrics, member.runs.checkpoint(own, epoch))
        if not alive:
            return {}
    final = fused.evaluate(test)
    return {
        (flat[row][0], flat[row][1]): TestMetrics.of(_run(final[flat[row][0]], row - offsets[flat[row][0]]))
        for row in alive
    }

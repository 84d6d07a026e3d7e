"""The training core shared by the one-at-a-time path (``core.train``) and the vectorised one
(``core.vectorized``): the objective (eq. 1/2), the metrics, the divergence check and the
checkpoint codec, each written once.

Tensors come either as one run's batch (``logits`` of shape (n, 2)) or with a leading dimension of
R repetitions trained together (``logits`` (R, n, 2)); in the second case every quantity is per
repetition, of shape (R,). The training pass of R runs is summed by ``TrainingSums`` (once per
epoch, in float64); everything else keeps one arithmetic for both forms.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class CheckpointError(ValueError):
    """Bytes that are not a readable pairs checkpoint (the message says why, in one line)."""


@dataclass
class EpochMetrics:
    """What one epoch of one run records (accuracies are fractions in [0, 1])."""

    epoch: int
    train_loss: float
    train_main_loss: float
    train_acc: float
    val_loss: float
    val_main_loss: float
    val_acc: float
    val_digit_acc: float | None
    lr: float
    seconds: float

    def as_row(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, epoch: int, fit: dict, held_out: dict, lr: float, seconds: float) -> EpochMetrics:
        """From one run's ``Metrics.result`` of the training pass and of the validation split."""
        return cls(
            epoch=epoch,
            train_loss=fit["loss"],
            train_main_loss=fit["main_loss"],
            train_acc=fit["acc"],
            val_loss=held_out["loss"],
            val_main_loss=held_out["main_loss"],
            val_acc=held_out["acc"],
            val_digit_acc=held_out["digit_acc"],
            lr=lr,
            seconds=seconds,
        )


@dataclass
class TestMetrics:
    test_loss: float
    test_main_loss: float
    test_acc: float
    test_digit_acc: float | None

    def as_row(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, final: dict) -> TestMetrics:
        """From one run's ``Metrics.result`` on the test split."""
        return cls(
            test_loss=final["loss"],
            test_main_loss=final["main_loss"],
            test_acc=final["acc"],
            test_digit_acc=final["digit_acc"],
        )


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the samples; per repetition when there is a leading R dimension."""
    if target.dim() == 1:
        return F.cross_entropy(logits.float(), target)
    r, n = target.shape
    return (
        F.cross_entropy(logits.float().reshape(r * n, -1), target.reshape(-1), reduction="none").reshape(r, n).mean(1)
    )


def objective(
    logits: torch.Tensor,
    digit_logits: torch.Tensor | None,
    target: torch.Tensor,
    classes: torch.Tensor,
    aux_weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss of eq. 2, main cross-entropy of eq. 1); equal when there is no digit head.

    Shapes: ``logits`` (..., n, 2), ``digit_logits`` (..., n, 2, 10), ``target`` (..., n),
    ``classes`` (..., n, 2), where ``...`` is nothing (one run: scalar losses) or R (R runs:
    losses of shape (R,), whose sum has each run's own gradient).
    """
    main = _cross_entropy(logits, target)
    if digit_logits is None:
        return main, main
    aux = _cross_entropy(digit_logits[..., 0, :], classes[..., 0]) + _cross_entropy(
        digit_logits[..., 1, :], classes[..., 1]
    )
    return main + aux_weight * aux, main


class Metrics:
    """Sums over the batches of one pass: loss (eq. 2), main loss (eq. 1), comparison accuracy and
    digit accuracy, weighted by the samples of each batch. ``reps`` is None for one run (Python
    floats) or R for R runs trained together (tensors of shape (R,) on ``device``)."""

    def __init__(self, reps: int | None = None, device: str | torch.device = "cpu"):
        self.reps = reps
        zero = (lambda: 0.0) if reps is None else (lambda: torch.zeros(reps, device=device))
        self.total, self.main, self.correct, self.digit_correct = zero(), zero(), zero(), zero()
        self.has_digits = False

    @torch.no_grad()
    def add(
        self,
        loss: torch.Tensor,
        main: torch.Tensor,
        logits: torch.Tensor,
        target: torch.Tensor,
        digit_logits: torch.Tensor | None = None,
        classes: torch.Tensor | None = None,
    ) -> None:
        b = target.shape[-1]
        hits = logits.argmax(-1) == target
        if self.reps is None:
            self.total += loss.item() * b
            self.main += main.item() * b
            self.correct += hits.sum().item()
        else:
            self.total += loss.detach() * b
            self.main += main.detach() * b
            self.correct += hits.sum(-1)
        if digit_logits is not None and classes is not None:
            self.has_digits = True
            digit_hits = digit_logits.argmax(-1) == classes
            if self.reps is None:
                self.digit_correct += digit_hits.sum().item()
            else:
                self.digit_correct += digit_hits.sum((-2, -1))

    def result(self, n: int) -> dict:
        """Means over the ``n`` samples: floats for one run, lists of R floats for R runs."""
        values = {
            "loss": self.total / n,
            "main_loss": self.main / n,
            "acc": self.correct / n,
            "digit_acc": self.digit_correct / (2 * n) if self.has_digits else None,
        }
        if self.reps is None:
            return values
        return {
            key: value.tolist() if isinstance(value, torch.Tensor) else [None] * self.reps
            for key, value in values.items()
        }

    def per_run(self, n: int) -> list[dict]:
        """``result(n)`` as one dict per run."""
        result = self.result(n)
        if self.reps is None:
            return [result]
        return [{key: values[i] for key, values in result.items()} for i in range(self.reps)]


def shuffle_generator(run_seed: int, epoch: int) -> torch.Generator:
    """The generator that draws the shuffled order of 1-based ``epoch`` of a run: seeded by
    (run seed + epoch) only, so a resumed run shuffles as an undisturbed one (both paths)."""
    return torch.Generator().manual_seed(run_seed + epoch)


class TrainingSums:
    """The training pass of R runs trained together, summed as ``Metrics`` sums it (loss, main
    loss, accuracy; ``result`` in its format) but with no arithmetic per batch: each batch's
    values are kept (detached; the batches of a pass are small) and reduced once, in float64 as
    the one-at-a-time path's Python floats are, at the end of the epoch. Per batch that saves the
    ~8 small tensor operations that ``Metrics.add`` costs (with ``epoch_batches``, 8-12% of a
    small model's step), and on a GPU it never waits for the device."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.mains: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, main: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        """One batch: losses (R,), logits (R, b, 2), target (R, b)."""
        self.losses.append(loss.detach())
        self.mains.append(main.detach())
        self.logits.append(logits.detach())
        self.targets.append(target)

    @torch.no_grad()
    def result(self, n: int) -> dict:
        """``Metrics.result(n)`` of the same batches: lists of R floats."""
        sizes = torch.tensor([t.shape[-1] for t in self.targets], dtype=torch.float64, device=self.losses[0].device)

        def mean(values: list[torch.Tensor]) -> list[float]:
            return ((torch.stack(values).double() * sizes[:, None]).sum(0) / n).tolist()

        correct = (torch.cat(self.logits, 1).argmax(-1) == torch.cat(self.targets, 1)).sum(-1)
        return {
            "loss": mean(self.losses),
            "main_loss": mean(self.mains),
            "acc": (correct.double() / n).tolist(),
            "digit_acc": [None] * len(self.losses[0]),
        }


def divergence(loss: float, epoch: int, lr: float) -> TrainingDiverged | None:
    """The error of a run whose training loss of ``epoch`` is not finite, or None."""
    if math.isfinite(loss):
        return None
    return TrainingDiverged(f"training loss became {loss} at epoch {epoch}: lower --lr (now {lr})")


def check_finite(loss: float, epoch: int, lr: float) -> None:
    """Raise TrainingDiverged when the training loss of ``epoch`` is NaN or infinite."""
    error = divergence(loss, epoch, lr)
    if error is not None:
        raise error


def failure_reason(error: BaseException) -> str:
    """How a failed run's error is recorded: ``TrainingDiverged: training loss became nan ...``."""
    return f"{type(error).__name__}: {error}"


@dataclass
class Checkpoint:
    """One run's state after ``epoch`` completed epochs: the model's and the optimiser's state dicts."""

    epoch: int
    model: dict
    optimizer: dict


def encode_checkpoint(epoch: int, model: dict, optimizer: dict) -> bytes:
    """The checkpoint format, the same for both paths (so their checkpoints are interchangeable)."""
    buffer = io.BytesIO()
    torch.save({"epoch": epoch, "model": model, "optimizer": optimizer}, buffer)
    return buffer.getvalue()


def decode_checkpoint(state: bytes, epochs: int | None = None) -> Checkpoint:
    """Read ``encode_checkpoint``'s bytes; never unpickles code (``weights_only``). Raises
    CheckpointError when they are damaged, not a pairs checkpoint, or (given ``epochs``, the run's
    length) of an epoch outside 1-``epochs``."""
    try:
        saved = torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the answer
        raise CheckpointError(first_line(exc)) from exc
    if not isinstance(saved, dict) or not {"epoch", "model", "optimizer"} <= set(saved):
        raise CheckpointError("not a pairs checkpoint (no epoch, model and optimizer)")
    epoch = saved["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1 or (epochs is not None and epoch > epochs):
        raise CheckpointError(
            f"its epoch {epoch!r} is not one of 1-{epochs}"
            if epochs is not None
            else f"its epoch {epoch!r} is not a positive whole number"
        )
    return Checkpoint(epoch, saved["model"], saved["optimizer"])


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 160 characters."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."

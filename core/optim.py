"""SGD for the training paths: ``torch.optim.SGD``'s update and state, without its base class.

Making any ``torch.optim.Optimizer`` imports ``torch._dynamo`` (1.2-1.7 s on a 2-core CPU, in
every worker process before its first step; ``Optimizer.__init__`` wraps its methods with
``torch._disable_dynamo``). ``SGD`` runs the same arithmetic, torch's functional
``torch.optim.sgd.sgd`` called as ``torch.optim.SGD.step`` calls it, takes its defaults from
``torch.optim.SGD``'s signature, and reads and writes its ``state_dict`` format, so checkpoints
move between the two both ways and the numbers are torch's to the bit (tests/test_optim.py).
Adam stays ``torch.optim.Adam`` (its functional form is wrapped for dynamo too).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.sgd import sgd

#: ``torch.optim.SGD``'s hyperparameters and their defaults, as its param groups hold them.
SGD_DEFAULTS: dict[str, Any] = {
    name: parameter.default
    for name, parameter in inspect.signature(torch.optim.SGD.__init__).parameters.items()
    if parameter.default is not inspect.Parameter.empty
}


class SGD:
    """The parts of ``torch.optim.SGD`` the training paths use: ``param_groups`` (one group; its
    ``lr`` set per epoch), ``state``, ``zero_grad``, ``step``, ``state_dict``, ``load_state_dict``."""

    def __init__(self, params: Iterable[torch.Tensor], *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD needs lr, momentum and weight decay >= 0, got {lr}, {momentum}, {weight_decay}")
        group = {**SGD_DEFAULTS, "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        self.param_groups: list[dict[str, Any]] = [{**group, "params": list(params)}]
        self.state: dict[torch.Tensor, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none or param.grad is None:
                    param.grad = None
                else:
                    param.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            momentum = group["momentum"]
            buffers = [self.state.get(p, {}).get("momentum_buffer") for p in params] if momentum else []
            sgd(
                params,
                [p.grad for p in params],
                buffers,
                weight_decay=group["weight_decay"],
                momentum=momentum,
                lr=group["lr"],
                dampening=group["dampening"],
                nesterov=group["nesterov"],
                maximize=group["maximize"],
                has_sparse_grad=False,
                foreach=group["foreach"],
                fused=group["fused"],
            )
            if momentum:
                for param, buffer in zip(params, buffers):
                    self.state.setdefault(param, {})["momentum_buffer"] = buffer

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Optimizer.state_dict``'s format: parameters as their indices."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            for param in group["params"]:
                index.setdefault(id(param), len(index))
            groups.append(
                {**{k: v for k, v in group.items() if k != "params"}, "params": [index[id(p)] for p in group["params"]]}
            )
        return {"state": {index[id(p)]: dict(values) for p, values in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict`` of this class or of ``torch.optim.SGD`` (with torch's checks)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(saved["params"]) != len(group["params"]) for saved, group in zip(saved_groups, self.param_groups)):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"
            )
        by_index = {
            saved_index: param
            for saved, group in zip(saved_groups, self.param_groups)
            for saved_index, param in zip(saved["params"], group["params"])
        }
        state: dict[torch.Tensor, dict[str, Any]] = {}
        for key, values in state_dict["state"].items():
            param = by_index.get(key)
            if param is None:
                continue
            state[param] = {
                name: value.to(dtype=param.dtype, device=param.device).clone() if torch.is_tensor(value) else value
                for name, value in values.items()
            }
        self.state = state
        self.param_groups = [
            {**SGD_DEFAULTS, **{k: v for k, v in saved.items() if k != "params"}, "params": group["params"]}
            for saved, group in zip(saved_groups, self.param_groups)
        ]

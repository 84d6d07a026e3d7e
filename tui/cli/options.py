"""The options of the ``pairs`` commands. The hyperparameters' come from ``RunConfig``'s fields
(``core.config.params``: flag, help, default, choices): a command names the groups it takes
(``Setup``, ``Grid``, ``Preset``, ``Base``) and ``config_flags`` puts their options in its
signature; a report takes the protocol filters with ``protocol_choice``."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from core import api, structures
from core.config import Hyperparameter as Hp
from core.config import RunConfig, params
from core.protocol import PROTOCOL_PARAMS, ProtocolChoice
from core.report import FORMATS

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="SQLite database (default: $PAIRS_DB, else ./runs.db).", show_default=False),
]
Multi = list[str] | None


def _completer(choices):
    """Shell completion of one value of a list option (the part after the last comma)."""

    def complete(incomplete: str) -> list[str]:
        head, _, tail = incomplete.rpartition(",")
        prefix = f"{head}," if head else ""
        return [prefix + str(c) for c in choices if str(c).lower().startswith(tail.lower())]

    return complete


def _hp(name: str) -> Hp:
    return next(hp for hp in params() if hp.name == name)


complete_structure = _completer(_hp("structure").param.choices)
complete_arch = _completer(_hp("arch").param.choices)
complete_format = _completer(FORMATS)


def _completion(hp: Hp):
    """Completion of a text field with choices (``--structure``, ``--arch``, ``--optimizer``)."""
    if hp.type is not str or hp.param.choices is None:
        return None
    return {"structure": complete_structure, "arch": complete_arch}.get(hp.name) or _completer(hp.param.choices)


def _multi_help(hp: Hp) -> str:
    # \\[: not Rich markup
    return f"{hp.help} Repeat or comma-separate for several. \\[default: {hp.shown_default}]"


def multi_option(hp: Hp) -> Any:
    """A flag taking several values (repeated or comma-separated), as text: ``--lr 0.1,0.01``."""
    decls = [hp.flag] if hp.param.flag else []
    info = typer.Option(*decls, help=_multi_help(hp), show_default=False, autocompletion=_completion(hp))
    if callable(hp.param.help):  # live text (a structure registered later is listed)
        structures.on_change(lambda: setattr(info, "help", _multi_help(hp)))
    return Annotated[Multi, info]


def single_option(hp: Hp) -> Any:
    """A flag taking one value, of the field's type (``--train-pairs 500``)."""
    decls = [hp.flag] if hp.param.flag else []
    return Annotated[hp.type, typer.Option(*decls, help=hp.help, autocompletion=_completion(hp))]


@dataclass(frozen=True)
class Flags:
    """Marks a parameter of a command that stands for a group of ``RunConfig``'s flags; the
    command receives that group's values as a dict (field name -> the flag's value)."""

    #: setup (structure, arch, kernel), grid (the protocol's several-valued flags), preset
    #: (those of ``pairs grid``) or base (the one-valued flags: data and pair counts)
    group: str

    def select(self, config: type[RunConfig]) -> list[Hp]:
        keep: Callable[[Hp], bool] = {
            "setup": lambda hp: not hp.param.protocol,
            "grid": lambda hp: hp.param.protocol and hp.param.grid,
            "preset": lambda hp: hp.param.protocol and hp.param.grid and hp.param.preset,
            "base": lambda hp: not hp.param.grid,
        }[self.group]
        return [hp for hp in params(config) if keep(hp)]

    def parameter(self, hp: Hp) -> inspect.Parameter:
        if self.group == "base":
            return inspect.Parameter(
                hp.name, inspect.Parameter.KEYWORD_ONLY, default=hp.default, annotation=single_option(hp)
            )
        return inspect.Parameter(hp.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=multi_option(hp))


Setup = Annotated[dict, Flags("setup")]
Grid = Annotated[dict, Flags("grid")]
Preset = Annotated[dict, Flags("preset")]
Base = Annotated[dict, Flags("base")]


def _flags_of(annotation) -> Flags | None:
    return next((m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Flags)), None)


def config_flags(config: type[RunConfig] = RunConfig):
    """Give a command the flags of ``config``'s fields in place of its ``Setup``/``Grid``/
    ``Preset``/``Base`` parameters (each then receives a dict of its flags' values)."""

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        parameters, groups = [], {}
        for p in signature.parameters.values():
            flags = _flags_of(p.annotation)
            if flags is None:
                parameters.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
                continue
            chosen = flags.select(config)
            groups[p.name] = [hp.name for hp in chosen]
            parameters += [flags.parameter(hp) for hp in chosen]
        names = [p.name for p in parameters]
        if len(set(names)) != len(names):
            raise TypeError(f"{command.__name__}: a RunConfig field has the name of one of its own parameters")

        @functools.wraps(command)
        def wrapper(**kwargs):
            for group, fields in groups.items():
                kwargs[group] = {name: kwargs.pop(name) for name in fields}
            return command(**kwargs)

        del wrapper.__wrapped__
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


def grid_options(values: dict) -> dict:
    """The flags given (several values each), for ``api.plan``."""
    return {k: v for k, v in values.items() if v}


# -- report options: the protocol filters -------------------------------------------------
PROTOCOL_PANEL = "Protocol (which runs to show; default: every protocol, the paper's first)"


def complete_protocol(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of --protocol: the labels and ids of the --db's protocols."""
    try:
        with api.open_store(ctx.params.get("db"), create=False) as store:
            protocols = api.protocols_in(store)
    except Exception:  # noqa: BLE001 - completion never fails loudly
        return []
    words = [w for p in protocols for w in (p.label, p.id)]
    return [w for w in dict.fromkeys(words) if w.lower().startswith(incomplete.lower())]


ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        help="Show one protocol: its label (`paper`, `2ep sgd b4 lr .01/15x.1`) or its "
        "id (or the id's first digits), as the tables' headings show them.",
        show_default=False,
        autocompletion=complete_protocol,
        rich_help_panel=PROTOCOL_PANEL,
    ),
]


def _filter(hp: Hp) -> Any:
    """A protocol flag of ``pairs queue``, in the Protocol panel of a report, without the
    queue's default: given, it keeps the protocols with one of its values."""
    info = copy.copy(multi_option(hp).__metadata__[0])
    info.help = f"{hp.filter_help} Keeps the protocols with this value (several: any of them)."
    info.rich_help_panel = PROTOCOL_PANEL
    return Annotated[Multi, info]


#: The protocol flags: the several-valued ones of ``pairs queue``, then its one-valued ones.
PROTOCOL_FILTERS = [hp for hp in PROTOCOL_PARAMS.values() if hp.param.grid] + [
    hp for hp in PROTOCOL_PARAMS.values() if not hp.param.grid
]


def protocol_choice(command):
    """Give a report command the protocol flags of ``pairs queue`` and ``--protocol``; the
    command receives them as one ``choice: ProtocolChoice`` argument."""
    signature = inspect.signature(command, eval_str=True)
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values() if p.name != "choice"]
    extra = [inspect.Parameter("protocol", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ProtocolOpt)]
    extra += [
        inspect.Parameter(hp.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_filter(hp))
        for hp in PROTOCOL_FILTERS
    ]

    @functools.wraps(command)
    def wrapper(**kwargs):
        options = {hp.name: kwargs.pop(hp.name, None) for hp in PROTOCOL_FILTERS}
        choice = ProtocolChoice.from_options(kwargs.pop("protocol", None), options)
        return command(choice=choice, **kwargs)

    del wrapper.__wrapped__
    wrapper.__signature__ = signature.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *extra]}
    return wrapper


# -- the other options --------------------------------------------------------------------
StructureOpt = multi_option(_hp("structure"))
RepsOpt = Annotated[int, typer.Option(help="Repetitions (new weights and new data each).")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="Where full MNIST lives (default: $PYTORCH_DATA_DIR, else ./data).", show_default=False),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(help="Worker processes (default: one per core, at most one per queued run).", show_default=False),
]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")]
VectorizeOpt = Annotated[
    bool,
    typer.Option(help="Train a configuration's repetitions together as one vectorised model (same numbers, faster)."),
]
#: --executor's choices: the executors of core.execution.EXECUTORS, when this module is imported
Executor = Enum("Executor", {name: name for name in api.EXECUTORS}, type=str)  # type: ignore[misc]
_EXECUTOR_HELP = [f"{spec.name} ({spec.help})" for spec in api.EXECUTORS.values()]
ExecutorOpt = Annotated[
    Executor,
    typer.Option(
        help=(
            " or ".join([", ".join(_EXECUTOR_HELP[:-1]), _EXECUTOR_HELP[-1]])
            if len(_EXECUTOR_HELP) > 1
            else _EXECUTOR_HELP[0]
        )
        + "."
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(help="Ray cluster: auto or HOST:PORT (default: start a local Ray instance).", show_default=False),
]
StallTimeoutOpt = Annotated[
    float,
    typer.Option(
        min=1,
        max=86_400,
        help="Seconds without progress "
        "after which a worker is taken for hung, killed and "
        "its runs resumed from their checkpoints (or ten times "
        "its longest pause between batches if longer; five "
        "times both before a task's first batch). Local "
        "executor.",
    ),
]
MaxRetriesOpt = Annotated[
    int,
    typer.Option(
        min=0,
        help="Times a run whose worker (or node) is lost is tried again from its last checkpoint before it fails.",
    ),
]
FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.", autocompletion=complete_format)
]

"""The queue form: setups (several values each, expanding to their product) and protocol."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.segment import Segment
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.strip import Strip
from textual.widgets import Button, Footer, Header, Input, Label, SelectionList, Static
from textual.widgets._toggle_button import ToggleButton
from textual.widgets.option_list import OptionDoesNotExist
from textual.worker import get_current_worker

from core import api
from core.config import (
    ARCHITECTURES,
    DEFAULT_REPS,
    KERNELS,
    PAPER_STRUCTURES,
    STRUCTURES,
    ConfigError,
    Hyperparameter,
    RunConfig,
    check_pair_counts,
    params,
)
from core.errors import DataError
from core.store import StoreError
from tui.literal import clean, literal, literal_block
from tui.screens.base import PairsScreen
from tui.widgets.banner import DbBanner

DEFAULTS = RunConfig()

#: The setup's lists (several values each: their product is queued).
LISTS = ("structure", "arch", "kernel")
#: What a form value can be refused with (a bad value; more digits than the data has).
INVALID = (ConfigError, DataError)


def form_params(config: type[RunConfig] = RunConfig) -> list[Hyperparameter]:
    """The text fields of the form, from ``config``'s fields: the paper's protocol (the
    several-valued ones, then data and pair counts), then the options beyond the paper."""
    protocol = [hp for hp in params(config) if hp.param.protocol]
    return sorted(protocol, key=lambda hp: (hp.param.extension, not hp.param.grid))


def scalar_fields(config: type[RunConfig] = RunConfig) -> tuple[tuple[str, str, str], ...]:
    """Text fields of the form: (name, label, default). Grid fields accept comma-separated
    values."""
    return (
        ("reps", "Repetitions", str(DEFAULT_REPS)),
        *((hp.name, hp.param.label, hp.form_default) for hp in form_params(config)),
    )


#: Text fields of RunConfig's form: (name, label, default).
SCALAR_FIELDS = scalar_fields()


@dataclass
class Plan:
    """What the form asks for, or what is wrong with it (field name -> message)."""

    configs: list[RunConfig] = field(default_factory=list)
    reps: int = 0
    preset: str | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.configs)


def _base_config(config: type[RunConfig], fields: dict) -> RunConfig:
    base = config(**fields)
    check_pair_counts(base.data, base.train_pairs, base.test_pairs)
    return base


def _base(values: dict[str, str], errors: dict[str, str], config: type[RunConfig] = RunConfig) -> RunConfig:
    """The base configuration (data and pair counts: the one-valued fields); problems go to
    ``errors`` by field."""
    fields = {}
    base_params = [hp for hp in form_params(config) if not hp.param.grid]
    for hp in base_params:
        text = values[hp.name].strip()
        try:
            fields[hp.name] = hp.parse(text)
        except ValueError:
            errors[hp.name] = f"{hp.name.replace('_', '-')} must be {hp.kind}, got {text!r}"
    if len(fields) < len(base_params):
        return config()
    try:
        return _base_config(config, fields)
    except INVALID as exc:
        alone = {}
        for name, value in fields.items():
            try:
                _base_config(config, {name: value})
            except INVALID as own:
                alone[name] = str(own)
        errors.update(alone or {"val_pairs": str(exc)})  # alone fine: their combination is not
        return config()


def make_plan(values: dict[str, str], lists: dict[str, list], config: type[RunConfig] = RunConfig) -> Plan:
    """Validate every field on its own (to mark it), then the whole form."""
    plan = Plan()
    try:
        plan.reps = int(values["reps"].strip())
        api.check_reps(plan.reps)
    except INVALID as exc:
        plan.errors["reps"] = str(exc).replace("--reps", "repetitions")
    except ValueError:
        plan.errors["reps"] = f"repetitions must be an integer, got {values['reps']!r}"
    base = _base(values, plan.errors, config)
    grid_scalars = [hp.name for hp in form_params(config) if hp.param.grid]
    for name in grid_scalars:
        try:
            api.plan({name: values[name]}, base)
        except INVALID as exc:
            plan.errors[name] = str(exc)
    for name in LISTS:
        if not lists[name]:
            plan.errors[name] = f"choose at least one {name}"
    if plan.errors:
        return plan
    options = {name: values[name] for name in grid_scalars}
    everything = set(lists["structure"]) == set(PAPER_STRUCTURES) and all(
        len(lists[n]) == len(all_values) for n, all_values in (("arch", ARCHITECTURES), ("kernel", KERNELS))
    )
    try:
        if everything:
            plan.preset = "paper"
            plan.configs = api.plan_preset("paper", options, base, plan.reps)
        else:
            grid = {
                **options,
                "structure": lists["structure"],
                "arch": lists["arch"],
                "kernel": [str(k) for k in lists["kernel"]],
            }
            plan.configs = api.plan(grid, base, plan.reps)
    except INVALID as exc:
        plan.errors["form"] = str(exc)
    return plan


class ChoiceList(SelectionList):
    """A SelectionList whose boxes read without colour: ``✓`` chosen, blank not."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        segments = list(strip)
        if len(segments) < 3 or segments[1].text != ToggleButton.BUTTON_INNER:
            return strip
        try:
            selection = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:
            return strip
        chosen = selection.value in self._selected
        segments[1] = Segment("✓" if chosen else " ", segments[1].style)
        return Strip(segments, strip.cell_length)


class QueueScreen(PairsScreen):
    """Choose setups and protocol; see how many new runs that is; queue them."""

    BINDINGS = [
        Binding("ctrl+s", "queue", "Queue", priority=True),
        Binding("ctrl+g", "paper_preset", "Paper", priority=True),
        Binding("ctrl+r", "reset", "Defaults", priority=True),
        Binding("escape", "leave_field", "Leave field", show=False),
    ]
    #: Keys act on the form from the start (Space toggles, Down moves), not on the scroll.
    AUTO_FOCUS = "#q-structure"

    def __init__(self, config: type[RunConfig] = RunConfig) -> None:
        super().__init__(id="queue")
        #: The RunConfig class whose fields the form shows (a subclass may add some).
        self.config = config
        self.form_fields = scalar_fields(config)
        self.plan = Plan()
        self.preview_text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield DbBanner()
        with VerticalScroll(id="queue-form"):
            with Horizontal(id="queue-lists"):
                yield ChoiceList(
                    *((s, s, s == DEFAULTS.structure) for s in STRUCTURES),
                    id="q-structure",
                    classes="choice",
                )
                yield ChoiceList(
                    *((f"{a} {'-'.join(map(str, ch))}", a, a == DEFAULTS.arch) for a, ch in ARCHITECTURES.items()),
                    id="q-arch",
                    classes="choice",
                )
                yield ChoiceList(
                    *((f"{k}x{k}", k, k == DEFAULTS.kernel) for k in KERNELS),
                    id="q-kernel",
                    classes="choice",
                )
            with Grid(id="queue-fields"):
                for name, label, default in self.form_fields:
                    yield Label(label, classes="field-label")
                    yield Input(default, id=f"q-{name}", compact=True, validate_on=[], classes="field")
        with Vertical(id="queue-bar"):  # below the scrolling form: always in sight
            yield Static("", id="queue-preview")
            yield Static("", id="queue-errors")
            with Horizontal(id="queue-buttons"):
                yield Button("Queue (^s)", id="queue-go", variant="primary", compact=True)
                yield Button("Paper grid (^g)", id="queue-paper", compact=True)
                yield Button("Defaults (^r)", id="queue-reset", compact=True)
        yield Footer(compact=True, show_command_palette=False)  # ^p still opens it

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#q-structure").border_title = "Structures"
        self.query_one("#q-arch").border_title = "Architectures"
        self.query_one("#q-kernel").border_title = "Kernels"
        self.update_preview()

    # -- reading the form --------------------------------------------------------------------
    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#q-{name}", Input).value for name, *_ in self.form_fields}

    def lists(self) -> dict[str, list]:
        return {name: list(self.query_one(f"#q-{name}", SelectionList).selected) for name in LISTS}

    def set_value(self, name: str, value: str) -> None:
        self.query_one(f"#q-{name}", Input).value = value

    def mark(self, plan: Plan) -> None:
        for name, *_ in self.form_fields:
            self.query_one(f"#q-{name}", Input).set_class(name in plan.errors, "invalid-field")
        for name in LISTS:
            self.query_one(f"#q-{name}").set_class(name in plan.errors, "invalid-field")
        errors = self.query_one("#queue-errors", Static)
        errors.update(literal_block("\n".join(f"✗ {clean(msg)}" for msg in plan.errors.values())))
        errors.display = bool(plan.errors)
        self.query_one("#queue-go", Button).disabled = not plan.ok

    # -- preview -----------------------------------------------------------------------------
    def reload(self) -> None:
        self.stale = False
        self.update_preview()

    def update_preview(self) -> None:
        try:
            values, lists = self.values(), self.lists()
        except NoMatches:  # a change event that arrived while the form is mounting or closing
            return
        self.plan = make_plan(values, lists, self.config)
        self.mark(self.plan)
        if not self.plan.ok:
            self.show_preview("nothing to queue: fix the marked fields")
            return
        self.show_preview(f"{self.describe(self.plan)}: counting new runs…")
        self._count(self.plan)

    @staticmethod
    def describe(plan: Plan) -> str:
        preset = " (the paper's grid)" if plan.preset else ""
        return f"{len(plan.configs)} configuration(s){preset} x {plan.reps} reps"

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _count(self, plan: Plan) -> None:
        worker = get_current_worker()
        total = len(plan.configs) * plan.reps
        try:
            if self.app.db.exists():
                new = self.app.db.read(lambda s: s.count_new(plan.configs, plan.reps))
                note = ""
            else:
                new, note = total, " (creates the database)"
            text = (
                f"{self.describe(plan)} = {total} runs: adds [b]{new}[/b] new run(s)"
                f"{note}; {total - new} already in the database"
            )
        except StoreError as exc:
            text = literal(f"cannot count: {exc}")
        if not worker.is_cancelled:
            self.app.call_from_thread(self.show_preview, text)

    def show_preview(self, text: str | Text) -> None:
        self.preview_text = str(text)
        self.query_one("#queue-preview", Static).update(text)
        self.loads += 1

    def on_input_changed(self, event: Input.Changed) -> None:
        self.update_preview()

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        self.update_preview()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {
            "queue-go": self.action_queue,
            "queue-paper": self.action_paper_preset,
            "queue-reset": self.action_reset,
        }
        if event.button.id in actions:
            actions[event.button.id]()

    # -- actions -----------------------------------------------------------------------------
    def action_leave_field(self) -> None:
        """Out of the text field, so that 1-4 switch screens again."""
        go = self.query_one("#queue-go", Button)
        (self.query_one("#q-structure") if go.disabled else go).focus()

    def action_paper_preset(self) -> None:
        """The paper's grid: the paper's structures, every architecture and kernel (protocol
        kept)."""
        for name in LISTS:
            self.query_one(f"#q-{name}", SelectionList).select_all()
        structures = self.query_one("#q-structure", SelectionList)
        for structure in STRUCTURES:
            if structure not in PAPER_STRUCTURES:
                structures.deselect(structure)
        self.notify("paper grid: 3 structures x 6 architectures x 2 kernels; ^s queues it")

    def action_reset(self) -> None:
        for name, _, default in self.form_fields:
            self.set_value(name, default)
        defaults = {"structure": DEFAULTS.structure, "arch": DEFAULTS.arch, "kernel": DEFAULTS.kernel}
        for name, value in defaults.items():
            selection = self.query_one(f"#q-{name}", SelectionList)
            selection.deselect_all()
            selection.select(value)

    def action_queue(self) -> None:
        plan = make_plan(self.values(), self.lists(), self.config)
        self.plan = plan
        self.mark(plan)
        if not plan.ok:
            reasons = "; ".join(plan.errors.values()) or "nothing to queue"
            self.notify(clean(f"not queued: {reasons}"), severity="error", markup=False)
            return
        self._queue(plan)

    @work(thread=True, group="queue", exit_on_error=False)
    def _queue(self, plan: Plan) -> None:
        try:
            added = self.app.db.write(lambda s: api.queue(s, plan.configs, plan.reps))
        except StoreError as exc:
            self.app.call_from_thread(self.notify, clean(f"not queued: {exc}"), severity="error", markup=False)
            return
        total = len(plan.configs) * plan.reps
        self.app.call_from_thread(
            self.queued,
            f"queued {added} new run(s) ({total - added} already there); "
            "start workers on the Experiments screen (1, then w)",
        )

    def queued(self, message: str) -> None:
        self.notify(message, title="Queued")
        self.app.db_error = None
        self.update_preview()
        self.app.data_written()

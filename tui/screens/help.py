"""The help screen: what each screen shows and the keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# pairs console

Queue configurations of the digit-comparison study, start local workers, watch the curves
live and read the paper's tables. Everything comes from the database (`--db`, `$PAIRS_DB`,
`./runs.db`): runs started here, by `pairs run` in another terminal or by a worker on another
machine all show up within a second.

## Screens

- `1` **Experiments**: every configuration with its runs done / running / queued / failed, the
  current epoch and its validation and test accuracy (mean ± std of the done runs); the worker
  pool; failures with their error. `m` shows the highlighted setup's layers (**Model**).
- `2` **Queue**: structures, architectures, kernels (their product is queued) and the protocol;
  a live count of the new runs it adds.
- `3` **Plots**: train loss, validation loss and accuracy per epoch of the selected configuration:
  each repetition a faint line, the mean on top, mean ± std as two thin bounds, the epoch of
  the learning-rate step marked; the legend under the plots.
- `4` **Tables**: Tables II-IV (mean ± std, n, best in bold) and the best setups on the test set
  with Welch p-values, of one protocol at a time (shown above the tabs; `p` steps through them);
  `v` the paper's numbers beside ours.
- `5` **Compare** (`c` on Experiments): the marked setups, or the best of each structure, overlaid
  per metric with their ±std bounds; the legend (n, final mean ± std) under the plots.

## Keys

| Where | Key | Does |
|---|---|---|
| everywhere | `1` `2` `3` `4` | switch screen (in a text field press `Esc` first) |
| | `?` / `F1` | this help |
| | `d` | dark / light theme |
| | `Ctrl+P` | command palette (every action by name) |
| | `q` / `Ctrl+Q` | quit (asks what to do with running workers) |
| Experiments | `/` | filter (words match setup, protocol and status: `shared A5 running`) |
| | `s`, click a header | sort by the next column / that column |
| | `Enter` | plots of the highlighted configuration |
| | `w` / `x` | start / stop local workers (`pairs work --workers N` in a subprocess) |
| | `r` | queue failed runs again |
| | `m` | the Model view: layers, output shapes, parameters (`Esc` back) |
| | `Home` / `End` | first / last configuration |
| | `Space` | mark / unmark the highlighted setup for Compare (` ●` after its name) |
| | `c` | Compare the marked setups (none marked: the best of each structure) |
| Queue | `Ctrl+S` | queue the form (marked fields are never sent) |
| | `Ctrl+G` | the paper's grid: every structure, architecture and kernel |
| | `Ctrl+R` | back to the defaults |
| Plots | `[` / `]` | previous / next configuration |
| | `l` | losses on a log scale (again: linear) |
| Tables | `p` / `P` | next / previous protocol (numbers of two protocols are never mixed) |
| | `m` / `l` / `c` | export the table on screen to Markdown / LaTeX / CSV in the current folder |
| | `v` | the paper's mean ± std and Δ in paper σ beside each cell (again: without) |
| Compare | `b` | the best of each structure / the marked setups |
| | `a` | overlay every protocol (the legend names each) / one protocol at a time |
| | `p` / `P` | next / previous protocol of the setups compared |
| | `l` | losses on a log scale |
| | `Esc` | back to Experiments |

Stopping workers sends them SIGINT: they finish the current epoch, put unfinished runs back in
the queue and exit; a later start resumes those runs from their last checkpoint.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss()

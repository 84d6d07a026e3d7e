"""Regenerate the SVG screenshots of ``pairs-tui`` used by the README (docs/tui.md).

A made-up database of the paper's grid (10 repetitions, 30 epochs): most setups done, some
training, some queued, one failure; fixed timestamps and seeds, so the pictures are stable.

    python docs/screens/make_screens.py
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import tempfile
from pathlib import Path

from core import api
from core.store import run_id

HERE = Path(__file__).resolve().parent
SIZE = (120, 36)
FIXED = 1_700_000_000.0
LEVEL = {"independent": 0.80, "shared": 0.87, "shared-aux": 0.93}


def build(path: Path) -> None:
    rng = random.Random(7)
    configs = api.plan_preset("paper", {}, api.base_config(), 10)
    with api.open_store(path) as store:
        api.queue(store, configs, 10)
        epochs, updates = [], []
        for index, config in enumerate(configs):
            level = LEVEL[config.structure] + 0.01 * int(config.arch[1]) - 0.02 * (config.kernel == 3)
            done = 10 if index < 30 else (6 if index < 33 else 0)
            running = 2 if 30 <= index < 33 else 0
            for rep in range(done + running):
                last = config.epochs if rep < done else 17
                noise = rng.gauss(0, 0.015)
                for epoch in range(1, last + 1):
                    shape = 1 - math.exp(-epoch / 5)
                    acc = min(0.999, 0.5 + (level - 0.5 + noise) * shape)
                    loss = 0.7 * math.exp(-epoch / 6) + 0.15 + rng.gauss(0, 0.01)
                    epochs.append(
                        {
                            "run_id": run_id(config, rep),
                            "epoch": epoch,
                            "train_loss": loss * 0.8,
                            "train_main_loss": loss * 0.8,
                            "train_acc": acc + 0.03,
                            "val_loss": loss,
                            "val_main_loss": loss,
                            "val_acc": acc,
                            "val_digit_acc": 0.95,
                            "lr": config.lr,
                            "seconds": 2.0,
                            "recorded_at": FIXED,
                        }
                    )
                status = "done" if rep < done else "running"
                updates.append(
                    (
                        status,
                        level + noise + rng.gauss(0, 0.01),
                        0.2 + rng.random() * 0.05,
                        "here:1",
                        run_id(config, rep),
                    )
                )
        with store.transaction() as db:
            db["epochs"].insert_all(epochs, batch_size=2000)
            db.conn.executemany(
                "UPDATE runs SET status = ?, test_acc = ?, test_loss = ?, worker = ?, "
                "started_at = 1.7e9, finished_at = 1.7e9, attempts = 1 WHERE id = ?",
                updates,
            )
            failed = run_id(configs[35], 0)
            db.execute(
                "UPDATE runs SET status = 'failed', attempts = 1, error = ? WHERE id = ?",
                ["Traceback (most recent call last): ...\nRuntimeError: CUDA out of memory", failed],
            )
            db.execute("UPDATE configs SET created_at = ?", [FIXED])
            db.execute("UPDATE runs SET queued_at = ?", [FIXED])


async def shoot() -> None:
    from tui.app import make_app

    app = make_app("runs.db", workers=4)
    async with app.run_test(size=SIZE) as pilot:

        async def ready(check) -> None:
            for _ in range(200):
                if check():
                    break
                await pilot.pause(0.05)
            await pilot.pause(0.3)

        await ready(lambda: app.screen.id == "experiments" and app.screen.loads)
        await pilot.press("s", "s")  # sort by running runs
        app.save_screenshot("experiments.svg", str(HERE))
        await pilot.press("2", "ctrl+g")
        await ready(lambda: "adds" in app.screen.preview_text)
        app.save_screenshot("queue.svg", str(HERE))
        await pilot.press("escape", "1")
        await ready(lambda: app.screen.id == "experiments")
        app.screen.query_one("#exp-table").focus()
        app.selected_config = api.base_config(structure="shared-aux", arch="A4", kernel=5).id
        await pilot.press("3")
        await ready(
            lambda: (
                app.screen.id == "plots"
                and app.screen.curves is not None
                and app.screen.curves["config_id"] == app.selected_config
            )
        )
        app.save_screenshot("plots.svg", str(HERE))
        await pilot.press("1")
        await ready(lambda: app.screen.id == "experiments")
        app.screen.query_one("#exp-table").focus()
        await pilot.press("m")  # the Model view of the highlighted setup
        await ready(lambda: app.screen.id == "model")
        app.save_screenshot("model.svg", str(HERE))
        await pilot.press("escape")
        await ready(lambda: app.screen.id == "experiments")
        await pilot.press("c")  # nothing marked: the best setup of each structure
        await ready(
            lambda: (
                app.screen.id == "compare"
                and app.screen.data is not None
                and app.screen.data.best
                and app.screen.source == "best"
            )
        )
        await pilot.pause(1.0)
        app.save_screenshot("compare.svg", str(HERE))
        await pilot.press("escape")
        await ready(lambda: app.screen.id == "experiments")
        await pilot.press("4")
        await ready(lambda: app.screen.id == "tables" and app.screen.loads)
        app.screen.query_one("#tables-tabs").active = "tab-shared-aux"
        await pilot.pause(0.3)
        app.save_screenshot("tables.svg", str(HERE))
        await pilot.press("v")  # the paper's mean ± std and Δ beside each cell
        await pilot.pause(0.5)
        app.save_screenshot("tables-paper.svg", str(HERE))
        await pilot.press("v")
        await pilot.pause(0.3)
        app.screen.query_one("#tables-tabs").active = "tab-best"
        await pilot.pause(0.3)
        app.save_screenshot("best.svg", str(HERE))
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        app.save_screenshot("help.svg", str(HERE))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        build(Path("runs.db"))
        asyncio.run(shoot())
    print(f"wrote {', '.join(sorted(p.name for p in HERE.glob('*.svg')))} to {HERE}")


if __name__ == "__main__":
    main()

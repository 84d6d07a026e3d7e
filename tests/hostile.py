"""A corpus of hostile strings (markup, ANSI/OSC escapes, C0/C1 controls, bidi overrides) and a
real database that holds them where a shared database could: runs.error, host, worker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from test_tui_support import AUX_A1, INDEPENDENT_A1, build_fixture_db

from core.store import run_id

#: Each of these, shown by the program, must appear literally (control characters escaped).
HOSTILE = (
    "[/oops]",  # a closing tag with no opening: crashes markup
    "[bold red blink reverse]LOUD[/]",  # styles
    "[link=https://evil.example]click[/link]",  # an OSC 8 hyperlink via markup
    "[@click=app.quit]quit[/]",  # a Textual action link
    "\x1b[2J\x1b[Hcleared",  # clear the screen
    "\x1b]0;owned title\x07",  # set the terminal title
    "\x1b]52;c;ZXZpbA==\x07",  # write the clipboard (OSC 52)
    "\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\",  # a raw OSC 8 hyperlink
    "\x9b31mC1 CSI",  # an 8-bit CSI
    "bell\x07 back\x08 nul\x00 del\x7f cr\r",  # other C0 controls and DEL
    "bidi \u202egnp.exe",  # a right-to-left override
)
#: What the escapes look like once shown (a sample checked in the output).
VISIBLE = ("[/oops]", "[bold red blink reverse]LOUD[/]", "\\x1b]52;c;ZXZpbA==", "\\x1b[2J", "\\u202e")
ERROR = " | ".join(HOSTILE)
HOST = "[/oops]\x1b]0;host\x07"
WORKER = "\x1b[2J[link=https://evil.example]w[/link]"


def hostile_db(path: Path) -> Path:
    """The TUI fixture database with the hostile strings in a failure and a running run."""
    build_fixture_db(path)
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE runs SET error = ? WHERE id = ?", [ERROR, run_id(AUX_A1, 2)])
        db.execute("UPDATE runs SET host = ?, worker = ? WHERE id = ?", [HOST, WORKER, run_id(INDEPENDENT_A1, 2)])
        db.execute("UPDATE runs SET host = ? WHERE status = 'done'", [HOST])
    db.close()
    return path


def has_control(text: str) -> bool:
    """Whether text holds an ESC, a C1 control or another control besides newline and tab."""
    return any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in text)

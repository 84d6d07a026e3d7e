"""Data shown literally: strings from a database, a config, a host name or an error message.

Such a string is never Rich or Textual markup (``[/oops]`` would crash the renderer, ``[link=…]``
would make a hyperlink) and its control characters never reach the terminal (ESC would clear the
screen, set the title or write the clipboard with OSC 52). ``literal`` turns any value into a
``rich.text.Text`` with every control character replaced by a visible escape (``\\x1b``);
``clean`` does the same for plain text (CSV, Markdown, a log line). Use them for every value read
from outside the program.
"""

from __future__ import annotations

import re

from rich.text import Text

#: C0 controls (tab and newline included: a table cell is one line), DEL, C1 controls, and the
#: Unicode bidirectional overrides (which reorder what the terminal shows).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: The same, but keeping newlines and tabs (multi-line text such as a rendered CSV).
_CONTROL_IN_BLOCK = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean(value: object) -> str:
    """``str(value)`` with every control character written as a visible escape (one line)."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(_escape, text)


def clean_block(value: object) -> str:
    """Like ``clean`` but keeping newlines and tabs: for multi-line output (CSV, Markdown)."""
    text = "" if value is None else str(value)
    return _CONTROL_IN_BLOCK.sub(_escape, text.replace("\r\n", "\n"))


def literal(value: object, style: str = "") -> Text:
    """A ``Text`` that shows ``value`` exactly (never markup), control characters escaped."""
    return Text(clean(value), style=style)


def literal_block(value: object, style: str = "") -> Text:
    """A multi-line ``Text`` (newlines kept) that shows ``value`` exactly."""
    return Text(clean_block(value), style=style)


def join(*parts: str | Text) -> Text:
    """Text pieces (``Text`` as they are, ``str`` taken literally) joined into one ``Text``."""
    out = Text()
    for part in parts:
        out.append(part if isinstance(part, Text) else literal(part))
    return out

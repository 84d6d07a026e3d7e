"""A structure's layers drawn as a diagram like the paper's Figs 1-3, as Rich text.

The layers, shapes and parameter counts come from ``core.config.model_layers`` (no torch): the
Model screen and ``pairs models --layers`` both draw with :func:`model_diagram`.
"""

from __future__ import annotations

from rich.text import Text

from core import structures
from core.config import Layer, RunConfig, model_layers

NAME, SHAPE, PARAMS = 17, 9, 7
WIDTH = NAME + SHAPE + PARAMS + 2 + 4  # three columns, two gaps, the box's sides and padding


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _row(layer: Layer) -> Text:
    params = f"{layer.params:,}" if layer.params else "-"
    return Text.assemble(
        " ",
        (f"{layer.name:<{NAME}.{NAME}}", "bold" if layer.params else ""),
        " ",
        (f"{shape_text(layer.shape):>{SHAPE}}", "cyan"),
        " ",
        (f"{params:>{PARAMS}}", "yellow" if layer.params else "dim"),
        " ",
    )


def _box(title: str, layers: list[Layer], note: str = "") -> list[Text]:
    inner = WIDTH - 2
    params = sum(layer.params for layer in layers)
    head = f" {title} · {params:,} params{note} "[:inner]
    lines = [Text.assemble("┌", (head, "bold"), "─" * max(inner - len(head), 0), "┐")]
    for layer in layers:
        lines.append(Text.assemble("│", _row(layer), "│"))
    lines.append(Text("└" + "─" * inner + "┘"))
    return lines


def _centered(text: str, width: int, style: str = "") -> Text:
    return Text(f"{text:^{width}}", style=style)


def model_diagram(config: RunConfig, *, width: int = 80) -> Text:
    """The layers of ``config``'s structure: the tower(s) with their inputs, the digit head and
    the comparison head, each layer with its output shape (one image) and parameters, and the
    total, which is ``pairs models``' count."""
    layers = model_layers(config)
    parts: dict[str, list[Layer]] = {}
    for layer in layers:
        parts.setdefault(layer.part, []).append(layer)
    side = 2 * WIDTH + 2 if "tower 1" in parts and width >= 2 * WIDTH + 2 else WIDTH
    lines: list[Text] = [
        Text(f"{config.label}: {structures.get(config.structure).description}", style="bold"),
        Text("each layer: its output for one image, its trainable parameters", style="dim"),
    ]
    image = "image 1x14x14"
    if "tower 1" in parts:
        left, right = _box("tower 1", parts["tower 1"]), _box("tower 2", parts["tower 2"])
        if width >= 2 * WIDTH + 2:
            lines.append(Text(f"{'image 1 (1x14x14)':^{WIDTH}}  {'image 2 (1x14x14)':^{WIDTH}}"))
            lines.append(Text(f"{'│':^{WIDTH}}  {'│':^{WIDTH}}"))
            lines += [Text.assemble(a, "  ", b) for a, b in zip(left, right)]
            lines.append(Text(f"{'│':^{WIDTH}}  {'│':^{WIDTH}}"))
            lines.append(Text(" " * (WIDTH // 2) + "└" + "─" * (WIDTH + 1) + "┘"))
        else:  # too narrow for the two side by side: one under the other
            lines += [
                _centered(f"image 1 ({image[6:]})", WIDTH),
                _centered("│", WIDTH),
                *left,
                _centered(f"image 2 ({image[6:]})", WIDTH),
                _centered("│", WIDTH),
                *right,
            ]
    else:
        lines.append(_centered("image 1, image 2 (1x14x14 each)", WIDTH))
        lines.append(_centered("│ │", WIDTH))
        lines += _box("shared tower", parts["tower"])
    for part in ("digit head", "comparison head"):
        if part in parts:
            two = part == "digit head" or "digit head" not in parts and "tower" in parts
            lines.append(_centered("│ │" if two else "│", side))
            box = _box(part, parts[part])
            if side > WIDTH:
                pad = " " * ((side - WIDTH) // 2)
                box = [Text(pad) + line for line in box]
            lines += box
    total = sum(layer.params for layer in layers)
    lines.append(
        Text.assemble(
            ("total ", "bold"), (f"{total:,}", "bold yellow"), " trainable parameters (as pairs models counts them)"
        )
    )
    return Text("\n").join(lines)

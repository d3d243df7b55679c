"""A difference map (see :mod:`tutor.checking.diffmap`) as Rich text for `check -v` and the
app's Checks tab: one character per cell (two when the map is narrow, so cells look
square), row starts on the left, the columns' range on top, a legend below. Fits 80
columns: at most 32 cells wide."""

from __future__ import annotations

from rich.text import Text

SHADES = "·░▒▓█"
LEGEND = ("within tolerance", "≤10×", "≤100×", "≤1000×", "more")
STYLES = ("dim", "yellow", "dark_orange", "red", "bold red")


def _valid(m) -> bool:
    try:
        rows = m["levels"]
        return (isinstance(rows, list) and rows and all(isinstance(r, str) for r in rows)
                and len(m["row_starts"]) == len(rows))
    except (KeyError, TypeError):
        return False


def map_text(m: dict | None) -> Text | None:
    """The map as Text, or None when there is none (or it is not one we can read)."""
    if not _valid(m):
        return None
    rows, size, cell = m["levels"], m.get("size") or [0, 0], m.get("cell") or [1, 1]
    wide = 2 if max(len(r) for r in rows) <= 16 else 1
    label_w = max(len(str(s)) for s in m["row_starts"])
    t = Text()
    t.append(f"where it differs (rows: {m.get('rows')})\n")
    notes = []
    if m.get("at"):
        names = m.get("at_names")
        if isinstance(names, list) and len(names) == len(m["at"]):
            where = ", ".join(f"{n} {i}" for n, i in zip(names, m["at"]))
            notes.append(f"at {where} of shape {tuple(m.get('shape') or [])}")
        else:  # a map recorded before the names were kept
            notes.append(f"slice [{', '.join(map(str, m['at']))}, :, :] of shape "
                         f"{tuple(m.get('shape') or [])}")
    if list(cell) != [1, 1]:
        notes.append(f"one cell = up to {cell[0]}×{cell[1]} values, the worst shown")
    if notes:
        t.append("; ".join(notes) + "\n", "dim")
    ncols = len(rows[0]) * wide
    last = f"{int(size[1]) - 1}" if size else ""
    ruler = "0" + last.rjust(max(ncols - 1, len(last)))
    t.append(" " * (label_w + 1) + ruler + f"  columns: {m.get('cols')}\n", "dim")
    for start, row in zip(m["row_starts"], rows):
        t.append(str(start).rjust(label_w) + " ", "dim")
        for ch in row:
            lv = min(max(int(ch), 0), len(SHADES) - 1) if ch.isdigit() else len(SHADES) - 1
            t.append(SHADES[lv] * wide, STYLES[lv])
        t.append("\n")
    for lv, (shade, words) in enumerate(zip(SHADES, LEGEND)):
        t.append(shade, STYLES[lv])
        # no space after a shade that a bound follows, so the legend fits 50 columns
        gap = " " if words[0].isalpha() else ""
        t.append(f"{gap}{words}" + ("  " if lv < len(SHADES) - 1 else ""), "dim")
    t.append("\n(× the tolerance; inf/NaN for a finite value: █)", "dim")
    return t

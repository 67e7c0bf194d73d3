"""RESULTS.md holds one top-level section per benchmark; each rewrites only its own."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(text: str) -> None:
    """Replace the section whose ``# `` heading starts ``text`` (or append it)."""
    heading = text.splitlines()[0].rstrip()
    old = RESULTS.read_text() if RESULTS.exists() else ""
    lines = old.splitlines(keepends=True)
    begin = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if begin is None:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text
    else:
        end = next((i for i in range(begin + 1, len(lines)) if lines[i].startswith("# ")),
                   len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:begin]) + text.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    RESULTS.write_text(new)

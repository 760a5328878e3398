"""Plain-text tables for the terminal: columns padded to their widest cell."""

from __future__ import annotations


def aligned(rows: list[tuple[str, ...]], left: int) -> list[str]:
    """Rows as columns padded to their widest cell: the first `left` columns flush left, the rest right."""
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if n < left else cell.rjust(w) for n, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]

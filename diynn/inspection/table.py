"""Plain-text tables and the number formats the inspection reports print."""

from __future__ import annotations


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """Columns padded to their widest cell, a rule under the headers.

    Args:
        headers: one title per column.
        rows: the cells, each row as long as `headers`.
        right: the indices of the columns aligned to the right (numbers).

    Returns:
        text: the table, lines joined by newlines, without trailing spaces.
    """
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        padded = [
            str(cell).rjust(width) if index in right else str(cell).ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), "-" * len(line(["-" * width for width in widths])), *map(line, rows)])


def byte_size(count: int) -> str:
    """A number of bytes in binary units: 512 B, 1.5 KiB, 3.2 MiB."""
    value, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def quantity(count: int) -> str:
    """A large count with an SI prefix: 950, 12.3 K, 4.5 M, 1.2 G."""
    for prefix, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.1f} {prefix}"
    return str(count)

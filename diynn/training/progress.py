"""The progress bar: tqdm's widget in a Jupyter kernel where ipywidgets is installed, tqdm's text
bar on a terminal, none elsewhere (a log file or a saved notebook gets no stream of redraws)."""

from __future__ import annotations

import importlib.util
import sys


def _widgets() -> bool:
    return "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None


def progress_bar(iterable=None, show: bool | None = None, **options):
    """`tqdm(iterable, **options)`, or None when no bar should be drawn. show: None (default) draws
    one on a terminal or as a Jupyter widget, True forces one (text where no widget can be shown),
    False draws none; without tqdm installed there is none."""
    if show is False or (show is None and not (sys.stderr.isatty() or _widgets())):
        return None
    try:
        if _widgets():
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
    except ImportError:  # the bar is a convenience, not a requirement
        return None
    return tqdm(iterable, **options)

"""What genbench prints: consoles that never read user text as markup or emoji codes.

Every line that carries user text (file names, labels, errors) goes through
:func:`error` or :func:`warning`, which escape it, so ``vae[latent_dim=4]`` keeps its
brackets and ``cuda:abc`` stays text.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.text import Text


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, emoji=False, highlight=False)


def error(line: str) -> Text:
    return Text.assemble(("genbench: error:", "red"), " ", str(line))


def warning(line: str) -> Text:
    return Text.assemble(("genbench: warning:", "yellow"), " ", str(line))


__all__ = ["console", "error", "escape", "warning"]

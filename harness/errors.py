"""Errors that reach the user as one-line messages instead of tracebacks."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input; the CLI prints it and exits with status 2."""

    exit_code = 2

    def __init__(self, *lines: str):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


class ConfigErrors(UserError):
    """Every problem found in one suite file, reported together."""


def shown(value, limit: int = 120) -> str:
    """A value as JSON for a one-line message, cut to ``limit`` characters."""
    import json

    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A '; did you mean ...?' suffix, or a list of what is valid."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    if not choices:
        return "; none are available"
    if len(choices) <= 12:
        return "; valid: " + ", ".join(choices)
    return f"; valid: {', '.join(choices[:12])}, ... ({len(choices)} in all)"


def install_hint(extra: str) -> str:
    """How to install an extra of genbench, as this genbench was installed: into a clone's
    ``.venv`` by ``./install.sh`` (an editable install), or from a package index."""
    from pathlib import Path

    name, _, rest = extra.partition("[")
    root = Path(__file__).resolve().parents[1]  # the clone, when harness/ is this package
    if name == "genbench" and rest and (root / "install.sh").is_file() and (root / "pyproject.toml").is_file():
        return f"pip install -e '{root}[{rest}' (genbench is installed from that clone)"
    return f"pip install '{extra}'"

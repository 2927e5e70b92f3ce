"""Command-line values shared by several commands."""

from __future__ import annotations

from .errors import UserError

MAX_SET_CHARS, MAX_SET_DEPTH = 10_000, 8  # an option value is a number, a word or a short list


def parse_set(item: str) -> tuple[str, object]:
    """``NAME=VALUE`` with VALUE read as YAML, bounded in size and nesting; one line if not."""
    from .results import readback

    name, sep, value = item.partition("=")
    shown = item if len(item) <= 60 else item[:57] + "..."
    if not sep or not name.strip():
        raise UserError(f"--set {shown!r}: write NAME=VALUE, e.g. --set sample_steps=50")
    if len(value) > MAX_SET_CHARS:
        raise UserError(f"--set {name.strip()}: the value has {len(value):,} characters; at most {MAX_SET_CHARS:,}")
    try:
        parsed = readback.parse_yaml(value)
    except readback.BadFile as err:
        raise UserError(f"--set {shown!r}: the value is {err}") from None
    if _depth(parsed) > MAX_SET_DEPTH:
        raise UserError(f"--set {name.strip()}: the value is nested more than {MAX_SET_DEPTH} levels deep")
    return name.strip(), parsed


def _depth(value) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    return 1 + max(map(_depth, value), default=0) if isinstance(value, list) else 0

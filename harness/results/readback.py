"""Every file genbench reads back from a results folder goes through this one reader.

A results folder is data other people send you. Each file is parsed with bounded work
(its size, nesting, the digits of a number, YAML aliases; a number must fit a float)
and then checked field by field against its schema in :mod:`schema`. A field that fails
is left out with one warning naming the file and the field, so the rest of the folder
still reports. A run record is the exception: its numbers are the report, so a record
that fails is skipped whole (:func:`record.load_record`).

``tuning.csv`` and ``check.json`` are written, never read back: ``genbench report``
rebuilds them from the records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import yaml

from ..errors import shown
from . import schema, yamlfile

MAX_BYTES = 64 * 2**20  # a record with a long history is well under 1 MB
MAX_DEPTH = 64          # genbench writes at most 6 levels
MAX_DIGITS = 330        # a float's range needs 309


class BadFile(ValueError):
    """A file that cannot be used at all: what is wrong, without the file's name."""


def _int(text: str) -> int:
    digits = len(text.lstrip("+-"))
    if digits > MAX_DIGITS:
        raise BadFile(f"a number with {digits:,} digits")
    return _fits(int(text))


def _fits(value: int) -> int:
    try:
        float(value)
    except OverflowError:
        raise BadFile(f"the integer {str(value)[:12]}... is too large for a float") from None
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadFile(f"the number {text[:24]} is outside a float's range")
    return value


def parse_json(text: str):
    """Strict JSON with bounded numbers; NaN and Infinity (which genbench never writes) read as null."""
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=lambda _: None)
    except RecursionError:
        raise BadFile("nested too deeply") from None
    except json.JSONDecodeError as err:
        raise BadFile(f"not valid JSON ({err.msg} at line {err.lineno}; truncated?)") from None


def parse_yaml(text: str):
    """Safe YAML (no object tags, aliases bounded) whose numbers fit a float."""
    try:
        data, _ = yamlfile.parse(text)
    except yamlfile.TooLarge as err:
        raise BadFile(str(err)) from None
    except RecursionError:
        raise BadFile("nested too deeply") from None
    except yaml.MarkedYAMLError as err:
        line = f" at line {err.problem_mark.line + 1}" if err.problem_mark else ""
        raise BadFile(f"not valid YAML ({err.problem or 'syntax error'}{line})") from None
    except ValueError as err:  # an integer past Python's 4,300 digits, a bad date
        raise BadFile("a number with more than 4,300 digits" if "digits" in str(err)
                      else f"not valid YAML ({str(err)[:80]})") from None
    except yaml.YAMLError as err:
        raise BadFile(f"not valid YAML ({str(err)[:80]})") from None
    _check_numbers(data, 0)
    return data


def _check_numbers(data, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadFile("nested too deeply")
    if isinstance(data, dict):
        for value in data.values():
            _check_numbers(value, depth + 1)
    elif isinstance(data, list):
        for value in data:
            _check_numbers(value, depth + 1)
    elif isinstance(data, int) and not isinstance(data, bool):
        _fits(data)


def read(path: Path, parse: Callable[[str], object], max_bytes: int = MAX_BYTES):
    """A file's parsed content; BadFile says why not (the caller names the file)."""
    try:
        if path.stat().st_size > max_bytes:
            raise BadFile(f"larger than {max_bytes // 2**20} MB")
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise BadFile(f"cannot be read ({err.strerror or type(err).__name__})") from None
    except UnicodeDecodeError:
        raise BadFile("not UTF-8 text") from None
    return parse(text)


def read_mapping(path: Path, parse: Callable[[str], object], fields: dict[str, schema.Field],
                 warnings: list[str]) -> dict:
    """A mapping file checked against ``fields``: {} if it is missing or unusable, and
    without each field that fails its check; one warning per problem, naming the file."""
    if not path.is_file():
        return {}
    try:
        data = read(path, parse)
    except BadFile as err:
        warnings.append(f"{path}: {err}; reporting without it")
        return {}
    if not isinstance(data, dict):
        warnings.append(f"{path}: expected a mapping, found {type(data).__name__}; reporting without it")
        return {}
    out = {}
    for key, value in data.items():
        field = fields.get(key)
        if field is not None and not field.check(value):
            warnings.append(f"{path}: field '{key}' must be {field.what}, found {shown(value, 40)}; left out")
        else:
            out[key] = value
    return out


def suite(out: Path, warnings: list[str]) -> dict:
    """A results folder's resolved suite.yaml, checked."""
    return read_mapping(out / "suite.yaml", parse_yaml, schema.SUITE_FIELDS, warnings)


def env(out: Path, warnings: list[str]) -> dict:
    """A results folder's env.json, checked."""
    return read_mapping(out / "env.json", parse_json, schema.ENV_FIELDS, warnings)

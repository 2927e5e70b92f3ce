"""Reading a YAML file safely: bounded work, and the line of every value for messages.

``yaml.safe_load`` refuses tags that build objects, but not aliases: a few hundred bytes of
nested aliases expand to billions of values, and anything that walks the data (a line
map, validation) would take all memory. Here the node graph is composed once (aliases
share nodes, so that is cheap), its expanded size counted with memoisation, and the file
refused past a limit before anything walks it.
"""

from __future__ import annotations

import re

import yaml

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 100_000   # values in the file with every alias expanded; real suites have hundreds


class TooLarge(ValueError):
    """The file is larger, expanded, than a suite file may be."""


class Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` and ``5e12`` as numbers (YAML 1.2 does; PyYAML's
    YAML 1.1 resolver wants a dot and a signed exponent, and gives strings)."""


Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                             list("-+0123456789"))


def parse(text: str):
    """The file's data and a line map, after bounding the work that aliases can multiply.

    The node graph is composed once (aliases share nodes, so this is cheap); its size
    with every alias expanded is counted with memoisation before anything walks it.
    """
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        size = _expanded_size(node, {}, set())
        if size > MAX_NODES:
            raise TooLarge(f"expands through YAML aliases to more values than the limit of {MAX_NODES:,}; "
                            f"write the values out or use fewer aliases")
        return loader.construct_document(node), line_map(node)
    finally:
        loader.dispose()


def _expanded_size(node, sizes: dict, active: set) -> int:
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise TooLarge(f"a YAML alias refers to a value that contains it (line {node.start_mark.line + 1})")
    active.add(key)
    total = 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, sizes, active) + _expanded_size(v, sizes, active)
            if total > MAX_NODES:
                break  # the exact size does not matter past the limit
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _expanded_size(item, sizes, active)
            if total > MAX_NODES:
                break
    active.discard(key)
    sizes[key] = total
    return total


def line_map(node, path=(), out=None) -> dict:
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[path + (key.value,)] = key.start_mark.line + 1
            line_map(value, path + (key.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            line_map(item, path + (i,), out)
    return out

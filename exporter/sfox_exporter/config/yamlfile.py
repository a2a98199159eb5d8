"""YAML documents read as Prometheus reads its own, with none of YAML 1.1's silent surprises.

PyYAML's safe loader keeps the last of two equal keys without a word, so a second `accounts:` (or a
second `basic_auth_users:` in the web config) would silently drop everything the first one said. It
also reads numbers by YAML 1.1's rules, by which `below: 010` is 8 (octal) and `1:30` is 90 (base
60): a threshold that is not the one written. PyYAML has no option for either, so its safe loader
is extended by these checks (a safety property no library gives):
- a key given twice in one mapping is an error (merge keys, `<<`, keep their meaning: a key written
  beside a merge overrides the merged one, as YAML says);
- an integer with a leading zero, or a number with ':', is an error: write it plainly, or quote text;
- `1e3` and `1.5e3` are floats (as in YAML 1.2), not the strings YAML 1.1 makes of them;
- an integer too long for Python to read is an error, not a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from sfox_exporter.config.validate import shown

__all__ = ["YAMLError", "safe_load", "where"]

YAMLError = yaml.YAMLError
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2's floats with an exponent (`1e3`, `1.5e3`): YAML 1.1 reads them only with a dot and a signed exponent.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the safe loader refuses it with its own message
            if key in seen:
                raise ConstructorError("while reading a mapping", node.start_mark,
                                       f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_plain_int(self, node: ScalarNode) -> int:
        _refuse_yaml11_spelling(node, octal=True)
        try:
            return int(super().construct_yaml_int(node))
        except ValueError:  # more digits than int() reads (4300)
            raise ConstructorError(None, None, "a number far too long", node.start_mark) from None

    def construct_plain_float(self, node: ScalarNode) -> float:
        _refuse_yaml11_spelling(node, octal=False)
        return float(super().construct_yaml_float(node))


def _refuse_yaml11_spelling(node: ScalarNode, *, octal: bool) -> None:
    digits = str(node.value).replace("_", "").lstrip("+-")
    octal = octal and len(digits) > 1 and digits[0] == "0" and digits[1].isdigit()
    if octal or ":" in digits:
        how = "an octal number in YAML 1.1: write it without the leading zero" if octal else \
            "a base-60 number in YAML 1.1: write it without ':'"
        raise ConstructorError(None, None, f"{shown(str(node.value))} is {how}, or quote it if it is text",
                               node.start_mark)


_Loader.add_constructor(_INT_TAG, _Loader.construct_plain_int)
_Loader.add_constructor(_FLOAT_TAG, _Loader.construct_plain_float)
_Loader.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_FLOAT, list("-+0123456789"))


def where(error: YAMLError) -> str:
    """" at line L, column C" of the problem an error names, for its one line; "" when it names none."""
    mark = getattr(error, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def safe_load(text: str) -> Any:
    """The document in `text`, as yaml.safe_load reads it, with the checks above."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader

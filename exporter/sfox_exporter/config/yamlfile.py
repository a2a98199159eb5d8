"""YAML documents read as Prometheus reads its own: a key given twice in one mapping is an error.

PyYAML's safe loader keeps the last of two equal keys without a word, so a second `accounts:` (or a
second `basic_auth_users:` in the web config) would silently drop everything the first one said.
PyYAML has no option for this, so the safe loader is extended by one check. Merge keys (`<<`) keep
their meaning: a key written out beside a merge overrides the merged one, as YAML says.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

__all__ = ["YAMLError", "safe_load"]

YAMLError = yaml.YAMLError
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
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


def safe_load(text: str) -> Any:
    """The document in `text`, as yaml.safe_load reads it, but refusing a key given twice."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader

"""Rejected patch prefixes, shared by every sample of one repair.

Once the completion engine rejects a patch prefix (an identifier no known name starts with),
every text that extends it is rejected too, without asking the engine again.
"""

from __future__ import annotations


class RejectedPrefixTrie:
    """A character trie; a node marked `_END` ends a rejected prefix."""

    _END = "\x00end"

    def __init__(self) -> None:
        self._root: dict[str, dict] = {}  # type: ignore[type-arg]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, rejected: str) -> None:
        node = self._root
        for char in rejected:
            if self._END in node:
                return  # a shorter prefix already rejects this one
            node = node.setdefault(char, {})
        if self._END not in node:
            node[self._END] = {}
            self._size += 1

    def rejects(self, text: str) -> bool:
        """True when `text` starts with a rejected prefix."""
        node = self._root
        for char in text:
            if self._END in node:
                return True
            child = node.get(char)
            if child is None:
                return False
            node = child
        return self._END in node

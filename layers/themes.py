"""The theme tree of the CIM data catalogue (CJJ/T 315-2022), as a lazily loaded registry.

The six top-level themes and their standard sub-themes ship in `layers/data/themes.json`; a store adds its users'
sub-themes on top (`LayerStore.add_theme`). A theme is named by its path of ids (`planning_control/control_lines`)
or, equivalently, by its path of Chinese or English titles (`规划管控/重要控制线`); a few nodes also answer to other common titles (`行政区划` for `行政区`).

    >>> from layers import themes
    >>> themes.builtin().get("规划管控/重要控制线").path
    'planning_control/control_lines'
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Any

from pydantic import BaseModel

from layers.errors import LayerInputError, ThemeNotFoundError
from layers.types import LIBRARY_LEVELS, LibraryLevel

_THEME_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class Theme(BaseModel, frozen=True):
    """One node of the theme tree."""

    path: str
    zh: str
    en: str
    level: LibraryLevel
    builtin: bool = True
    aliases: tuple[str, ...] = ()

    @property
    def parent(self) -> str | None:
        """Path of the parent theme, None for a top-level theme."""
        return self.path.rsplit("/", 1)[0] if "/" in self.path else None

    @property
    def depth(self) -> int:
        """0 for a top-level theme."""
        return self.path.count("/")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return self.model_dump(mode="json")


class ThemeRegistry:
    """Themes by path, with lookup by id path or title path."""

    def __init__(self, themes: Iterable[Theme]) -> None:
        self._themes: dict[str, Theme] = {t.path: t for t in themes}

    def __iter__(self) -> Iterator[Theme]:
        return iter(sorted(self._themes.values(), key=lambda t: t.path))

    def __len__(self) -> int:
        return len(self._themes)

    def __contains__(self, path: object) -> bool:
        try:
            self.get(str(path))
        except ThemeNotFoundError:
            return False
        return True

    def get(self, path: str) -> Theme:
        """The theme at a path of ids, Chinese titles or English titles (mixing is allowed).

        Raises:
            ThemeNotFoundError: no such theme; the message lists the top-level themes or the siblings.
        """
        exact = self._themes.get(path)
        if exact is not None:  # an id path as stored in the catalogue: no walk (a city lists thousands of layers)
            return exact
        parts = [p.strip() for p in str(path).strip().strip("/").split("/") if p.strip()]
        if not parts:
            raise ThemeNotFoundError("empty theme path; pass e.g. --theme planning_control/control_lines")
        current = ""
        for part in parts:
            candidates = [t for t in self._themes.values() if t.parent == (current or None)]
            match = next((t for t in candidates if part in (t.path.rsplit("/", 1)[-1], t.zh, *t.aliases)
                          or part.casefold() == t.en.casefold()), None)
            if match is None:
                known = ", ".join(f"{t.path.rsplit('/', 1)[-1]} ({t.zh})" for t in sorted(candidates, key=lambda t: t.path))
                where = f"under {current!r}" if current else "at the top level"
                raise ThemeNotFoundError(
                    f"theme {path!r}: no theme {part!r} {where}; known: {known or 'none'} "
                    f"(add one with `cim layers add-theme`)"
                )
            current = match.path
        return self._themes[current]

    def children(self, path: str | None = None) -> list[Theme]:
        """Direct children of a theme (the top-level themes when `path` is None)."""
        parent = self.get(path).path if path else None
        return sorted((t for t in self._themes.values() if t.parent == parent), key=lambda t: t.path)

    def top(self, path: str) -> Theme:
        """The top-level theme a theme belongs to."""
        return self._themes[self.get(path).path.split("/", 1)[0]]

    def new_child(self, parent: str, theme_id: str, zh: str, en: str, level: str | None = None) -> Theme:
        """A user sub-theme under `parent`, validated (not yet added: the store records it).

        Raises:
            ThemeNotFoundError: the parent does not exist.
            LayerInputError: the id is not a safe identifier, exists already, or the level is unknown.
        """
        base = self.get(parent)
        if not _THEME_ID.match(theme_id):
            raise LayerInputError(
                f"theme id {theme_id!r} is not a safe identifier; use lower-case letters, digits and _ "
                f"starting with a letter (e.g. shelters)"
            )
        path = f"{base.path}/{theme_id}"
        if path in self._themes:
            raise LayerInputError(f"theme {path!r} exists already")
        if level is not None and level not in LIBRARY_LEVELS:
            raise LayerInputError(f"library level {level!r} is not one of {', '.join(LIBRARY_LEVELS)}")
        return Theme(path=path, zh=zh, en=en, level=level or base.level, builtin=False)  # type: ignore[arg-type]

    def with_themes(self, extra: Iterable[Theme]) -> ThemeRegistry:
        """A new registry with more themes."""
        return ThemeRegistry([*self._themes.values(), *extra])


def _walk(nodes: list[dict[str, Any]], parent: str, level: str | None) -> Iterator[Theme]:
    for node in nodes:
        path = f"{parent}/{node['id']}" if parent else node["id"]
        node_level = node.get("level", level)
        yield Theme(path=path, zh=node["zh"], en=node["en"], level=node_level,
                    aliases=tuple(node.get("aliases", ())))
        yield from _walk(node.get("children", []), path, node_level)


@functools.cache
def builtin() -> ThemeRegistry:
    """The standard theme tree shipped with the package (read once, on first use)."""
    text = resources.files("layers").joinpath("data/themes.json").read_text(encoding="utf-8")
    return ThemeRegistry(_walk(json.loads(text)["themes"], "", None))


__all__ = ["Theme", "ThemeRegistry", "builtin"]

"""The viewer's layer tree for thousands of layers: entries, theme summaries and the filter.

A city's "one map" holds thousands of layers (one city: 2,372 in 135 classes). The page cannot list, let alone draw,
them all: it gets the themes with their layer counts and the layers that start visible, and asks for a theme's layers
when the theme is opened, or for the layers that match a filter (`/viewer/layers`). The filter matches a layer's
title, name, department and theme titles, and the pinyin of its title: full (`jianzhuwu`) or initials (`jzw`), so a
planner types `jzw` for 建筑物.

    >>> from tiles.layertree import LayerIndex
    >>> index = LayerIndex(store.list(), store.themes())                  # doctest: +SKIP
    >>> [e["name"] for e in index.entries(index.match("jzw"), base="")]   # doctest: +SKIP
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from layers.models import LayerInfo
from layers.themes import ThemeRegistry
from tiles.styles import layer_style

INITIALLY_VISIBLE_MAX = 50  # with more layers than this a caller's layers all start hidden (the planner picks)
# top-level CIM catalogue themes (CJJ/T 315-2022), in the standard's order
TOP_THEMES = ("spatiotemporal_base", "resource_survey", "planning_control", "construction_projects",
              "public_topics", "iot_sensing")
_HAN = re.compile(r"[\u3400-\u9fff]")


def theme_group(theme: str) -> str:
    """The tree group of a theme path: its top-level CIM theme, or `other`."""
    top = theme.split("/", 1)[0]
    return top if top in TOP_THEMES else "other"


@functools.lru_cache(maxsize=20000)
def _char_pinyin(ch: str) -> str:
    from pypinyin import lazy_pinyin

    return lazy_pinyin(ch)[0].lower()


def pinyin_keys(text: str) -> tuple[str, str]:
    """(full pinyin, initials) of the Chinese characters of `text`, lowercase, other characters kept as they are:
    `建筑物 footprints` -> (`jianzhuwu footprints`, `jzw footprints`). Each character takes its most common reading
    (a per-character table: phrase-level segmentation of 2,372 titles took 3.4 s, this takes milliseconds)."""
    if not _HAN.search(text):
        return "", ""
    full, initials = [], []
    for ch in text:
        if _HAN.match(ch):
            p = _char_pinyin(ch)
            full.append(p)
            initials.append(p[:1])
        else:
            full.append(ch.lower())
            initials.append(ch.lower())
    return "".join(full), "".join(initials)


@dataclass
class _Item:
    info: LayerInfo
    group: str
    theme_zh: str
    theme_en: str
    haystack: str  # lowercase text the filter searches


@dataclass
class LayerIndex:
    """Every store layer with what the tree and the filter need, made once per server (pinyin takes time).

    Args:
        layers: the store's layers.
        themes: the store's theme registry (titles of theme paths).
    """

    layers: Sequence[LayerInfo]
    themes: ThemeRegistry
    _items: dict[str, _Item] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for info in self.layers:
            zh, en = self._theme_titles(info.theme)
            words = [info.title, info.name, info.department, zh, en, *pinyin_keys(info.title),
                     *pinyin_keys(info.department)]
            self._items[info.name] = _Item(info, theme_group(info.theme), zh, en,
                                           " ".join(w for w in words if w).casefold())

    def _theme_titles(self, path: str) -> tuple[str, str]:
        try:
            t = self.themes.get(path)
            return t.zh, t.en
        except Exception:  # noqa: BLE001 (a theme unknown to the registry keeps its path as title)
            return path, path

    def names(self, visible: Callable[[LayerInfo], bool]) -> list[str]:
        """Names of the layers a caller may see (`visible(info)`), in catalogue order."""
        return [n for n, it in self._items.items() if visible(it.info)]

    def match(self, names: Iterable[str], text: str) -> list[str]:
        """The names whose title, name, department, theme or pinyin contain every word of `text`."""
        words = [w for w in text.casefold().split() if w]
        return [n for n in names if all(w in self._items[n].haystack for w in words)]

    def in_theme(self, names: Iterable[str], theme: str) -> list[str]:
        """The names whose theme is `theme` or below it."""
        prefix = theme.rstrip("/") + "/"
        return [n for n in names if self._items[n].info.theme == theme or self._items[n].info.theme.startswith(prefix)]

    def themes_of(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """One summary per theme path: `{"path", "group", "zh", "en", "count"}`, in the standard's order."""
        out: dict[str, dict[str, Any]] = {}
        for n in names:
            it = self._items[n]
            s = out.get(it.info.theme)
            if s is None:
                s = out[it.info.theme] = {"path": it.info.theme, "group": it.group, "zh": it.theme_zh,
                                          "en": it.theme_en, "count": 0}
            s["count"] += 1
        order = {g: i for i, g in enumerate(TOP_THEMES)}
        return sorted(out.values(), key=lambda s: (order.get(s["group"], len(order)), s["path"]))

    def entry(self, name: str, base: str, *, visible_default: bool = True, style: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        """The tree entry of a layer: what the page needs to list it and to draw it (`cim.layerKinds.vector`).

        Its look (colour, alpha, widths, extrusion) is `tiles.styles.layer_style`, the one the style documents
        (`/styles`) and WMS draw; `style` is the layer's stored style document, if any (its classes are applied
        in the page)."""
        it = self._items[name]
        info = it.info
        look = layer_style({"name": name, "geometry_type": info.geometry_type, "feature_count": info.feature_count},
                           info.field_names(), style)
        return {"id": f"layer:{name}", "kind": "vector", "name": name, "title": info.title, "group": it.group,
                "theme": info.theme, "theme_title": info.theme_title, "security": info.security,
                "department": info.department, "version": info.version, "geometry": look.geometry,
                "color": list(look.color), "fill_alpha": look.fill_alpha, "line_width": look.line_width,
                "point_radius": look.point_radius, "extruded": look.extruded, "height_field": look.height_field,
                "fields": info.field_names(), "feature_count": info.feature_count,
                "visible": visible_default and look.visible,
                "url": f"{base}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt", "style": style}

    def entries(self, names: Iterable[str], base: str, *, visible_default: bool = True,
                styles: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        styles = styles or {}
        return [self.entry(n, base, visible_default=visible_default, style=styles.get(n)) for n in names]


__all__ = ["INITIALLY_VISIBLE_MAX", "LayerIndex", "TOP_THEMES", "pinyin_keys", "theme_group"]

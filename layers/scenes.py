"""Scenes (场景配置, CJJ/T 315-2022 §4.3.4): a named view of the one map that anybody allowed can reopen.

A scene is the layers that are on (with their opacity and, optionally, a style of their own), the camera, the time
and the mode of the viewer (2D/3D, comparison). Scenes are documents of the store's document file
(`layers.docstore`), listed in `/catalog` to the callers who may see every layer the scene shows, and opened by URL
(`/?scene=NAME`).

    >>> from layers.scenes import Scene, save_scene
    >>> save_scene(docs, Scene(name="planning", title="规划审查", layers=[...], camera=...))   # doctest: +SKIP
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, field_validator

from layers.errors import LayerInputError
from layers.styles import LayerStyle

if TYPE_CHECKING:
    from layers.docstore import DocumentStore

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Camera(BaseModel):
    """Where the viewer looks from: lon/lat (degrees) of the centre, zoom, pitch and bearing (degrees)."""

    longitude: float = Field(ge=-180, le=180)
    latitude: float = Field(ge=-90, le=90)
    zoom: float = Field(ge=0, le=24)
    pitch: float = Field(0.0, ge=0, le=85)
    bearing: float = 0.0


class SceneLayer(BaseModel):
    """A layer of the scene by its tree id (`layer:NAME`, `model:MODEL:PART`, `map:NAME`)."""

    id: str
    visible: bool = True
    opacity: float = Field(1.0, ge=0, le=1)
    style: LayerStyle | None = None  # the scene's own style of this layer (else the layer's stored style)


class Scene(BaseModel):
    """A named scene (the document stored and served)."""

    version: int = 1
    name: str
    title: str = ""
    title_en: str = ""
    description: str = ""
    layers: list[SceneLayer] = Field(default_factory=list)
    camera: Camera | None = None
    time: str | None = None  # ISO 8601 instant the scene shows (time-aware panels read it)
    mode: Literal["2d", "3d"] = "2d"
    compare: dict[str, Any] | None = None  # {"mode": "swipe"|"side"|"quad", "screens": [[ids], ...]}
    owner: str | None = None
    updated_at: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"scene name {v!r} must be lowercase letters, digits, '_' or '-' (at most 63)")
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def names(self) -> list[str]:
        """The tree ids the scene shows or mentions."""
        ids = [lyr.id for lyr in self.layers]
        for screen in (self.compare or {}).get("screens") or []:
            ids.extend(x for x in screen if isinstance(x, str))
        return ids


def save_scene(docs: DocumentStore, scene: Scene | dict[str, Any], owner: str | None = None) -> Scene:
    """Store a scene (replacing one of the same name). `owner` is the key id that saved it (None: the operator).

    Raises:
        LayerInputError: the document is not a valid scene.
    """
    from layers.docstore import now

    try:
        s = scene if isinstance(scene, Scene) else Scene.model_validate(scene)
    except ValueError as exc:
        raise LayerInputError(f"not a valid scene: {exc}") from exc
    s = s.model_copy(update={"owner": owner, "updated_at": now()})
    docs.put_scene(s.name, s.to_dict(), owner)
    return s


def load_scene(docs: DocumentStore, name: str) -> Scene:
    """A stored scene. Raises `DocumentNotFoundError`."""
    return Scene.model_validate(docs.scene(name))


__all__ = ["Camera", "Scene", "SceneLayer", "load_scene", "save_scene"]

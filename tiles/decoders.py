"""The decoders a browser needs for our compressed tiles, served by `cim serve` so that no client fetches them off
the host.

deck.gl's bundle (pydeck's wheel, loaders.gl 4.4.3) carries the meshopt decoder (the default compression) inside
it, but fetches the Draco decoder (`--compression draco`) from www.gstatic.com and the Basis Universal module that
reads KTX2 textures (`--textures ktx2`; loaders.gl reads KTX2 with the `KTX2File` of its *encoder* build) from
unpkg.com. The same files ship in the npm packages `@loaders.gl/draco` and `@loaders.gl/textures` (same version as
the bundle; `bin/setup` installs them): they are found, in order, in the folder `$CIM_DECODERS` or in the
`node_modules` of the current folder or of this checkout. CesiumJS carries its own decoders in its build
(`ThirdParty/draco_decoder.wasm`, `ThirdParty/basis_transcoder.wasm`), served by whoever serves CesiumJS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

_ROOT = Path(__file__).resolve().parents[1]


class Decoder(NamedTuple):
    """One file of a decoder: its npm package and folder, and its media type."""

    package: str
    folder: str
    media_type: str


# loaders.gl's library names (its `modules` option is keyed by them)
DECODERS: dict[str, Decoder] = {
    "draco_wasm_wrapper.js": Decoder("@loaders.gl/draco", "dist/libs", "text/javascript; charset=utf-8"),
    "draco_decoder.wasm": Decoder("@loaders.gl/draco", "dist/libs", "application/wasm"),
    "basis_encoder.js": Decoder("@loaders.gl/textures", "dist/libs", "text/javascript; charset=utf-8"),
    "basis_encoder.wasm": Decoder("@loaders.gl/textures", "dist/libs", "application/wasm"),
    "basis_transcoder.js": Decoder("@loaders.gl/textures", "dist/libs", "text/javascript; charset=utf-8"),
    "basis_transcoder.wasm": Decoder("@loaders.gl/textures", "dist/libs", "application/wasm"),
}


def decoder_path(name: str) -> Path | None:
    """The file of decoder `name` (a key of `DECODERS`), or None when it is not installed (or not a decoder)."""
    dec = DECODERS.get(name)
    if dec is None:
        return None
    env = os.environ.get("CIM_DECODERS")
    if env:
        candidates = [Path(env) / name]
    else:
        candidates = [base / "node_modules" / dec.package / dec.folder / name for base in (Path.cwd(), _ROOT)]
    return next((p for p in candidates if p.is_file()), None)


def available_decoders() -> list[str]:
    """The names of the decoders that are installed (`decoder_path` finds them), in `DECODERS` order."""
    return [name for name in DECODERS if decoder_path(name) is not None]


__all__ = ["DECODERS", "Decoder", "available_decoders", "decoder_path"]

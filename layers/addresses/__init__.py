"""Standard addresses (标准地址, GB/T 35639-2017), geocoding and the 一标三实 links of a city's registries.

    >>> from layers.addresses import Geocoder, addresses_from_layer, save_addresses
    >>> with LayerStore("city.duckdb") as store:                       # doctest: +SKIP
    ...     table, skipped = addresses_from_layer(store, "buildings")
    ...     save_addresses(store, table)                              # the layer `addresses`, versioned
    ...     gc = Geocoder.from_store(store)
    ...     gc.geocode("大同胜利街三十四号2单元501").to_dict()
    ...     gc.reverse(113.30, 40.09).to_dict()

Modules, in data-flow order: `text` (normalisation, Chinese numerals) -> `gazetteer` (GB/T 2260 + the store's
divisions) -> `parser` (text -> components) -> `model` (the standard-address table and its layer) -> `geocoder`
(index, forward, reverse, suggestions) -> `links` (一标三实 registries) and `batch` (files). See docs/addresses.md.
Names are imported lazily so that importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "normalise": "text", "chinese_to_int": "text", "int_to_chinese": "text",
    "Division": "gazetteer", "Gazetteer": "gazetteer",
    "AddressParser": "parser", "ParsedAddress": "parser",
    "AddressTable": "model", "addresses_from_footprints": "model", "addresses_from_layer": "model",
    "compose": "model", "build_address_layer": "model", "import_address_file": "model", "AddressBuild": "model", "load_addresses": "model", "read_address_file": "model", "save_addresses": "model",
    "Geocoder": "geocoder", "GeocodeResult": "geocoder", "ReverseResult": "geocoder",
    "LinkReport": "links", "building_links": "links", "link_counts": "links", "link_registry": "links",
    "REGISTRIES": "links",
    "GeocodeReport": "batch", "geocode_file": "batch",
    "AddressError": "errors", "AddressInputError": "errors", "AddressesNotFoundError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"layers.addresses.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'layers.addresses' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)

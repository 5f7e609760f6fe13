/* Layer kinds of the viewer (cim.layerKinds): how a layer-tree entry becomes a deck.gl layer.

   Kinds here: `map` (XYZ image tiles as BitmapLayers), `3dtiles` (a model's layer tileset), `vector` (MVT tiles of a
   store layer). Flat layers are drawn at the terrain's height (`ctx.ground`) without writing depth, so they meet the
   3D Tiles (which carry ellipsoidal heights) in 2D and lie under the buildings in 3D. A feature adds a kind with
   `cim.layerKinds.mykind = {create(entry, ctx) {...}}`. */
(function () {
  'use strict';
  const D = globalThis.deck;
  const FLAT = {depthCompare: 'always', depthWriteEnabled: false};

  // a map tile outside the data is a 404 by design (docs/http-api.md): an empty tile, not an error
  const tileError = err => { if (!/\(404\)/.test(String(err && err.message || err))) console.error(err); };

  cim.layerKinds.map = {
    create(entry, ctx) {
      const z = ctx.ground;
      return new D.TileLayer({
        id: entry.id, data: cim.withKey(entry.url), minZoom: 0, maxZoom: 20, tileSize: 256,
        extent: entry.extent || undefined, maxRequests: 8, onTileError: tileError,
        renderSubLayers: props => {
          const {west, south, east, north} = props.tile.bbox;
          return new D.BitmapLayer(props, {
            data: null, image: props.data,
            bounds: [[west, south, z], [west, north, z], [east, north, z], [east, south, z]],
            parameters: FLAT
          });
        }
      });
    }
  };

  cim.layerKinds['3dtiles'] = {
    create(entry) {
      return new D.Tile3DLayer({
        id: entry.id, data: cim.withKey(entry.url), pickable: true, pointSize: 2,
        loadOptions: {worker: false, '3d-tiles': {loadGLTF: true}}
      });
    }
  };

  cim.layerKinds.vector = {
    create(entry, ctx) {
      const color = entry.color;
      const polygon = entry.geometry === 'polygon';
      const dense = (entry.feature_count || 0) > 2000;
      const z = ctx.ground;
      const props = {
        id: entry.id, data: cim.withKey(entry.url), pickable: true, autoHighlight: true,
        highlightColor: [255, 255, 0, 70], minZoom: 0, maxZoom: 18, binary: false,
        loaders: [cim.mvt.loader], loadOptions: {worker: false},
        getFillColor: color.concat([polygon ? 40 : 220]), getLineColor: color.concat([255]),
        lineWidthMinPixels: polygon ? 1 : 2, getLineWidth: 1,
        pointRadiusMinPixels: dense ? 2 : 4, getPointRadius: dense ? 1.5 : 3,
        stroked: true, filled: true,
        renderSubLayers: sub => {
          if (sub.modelMatrix && sub.coordinateOrigin) {
            // MVT sub-layers are CARTESIAN (tile units scaled by modelMatrix); the origin's z is in metres (measured)
            sub.coordinateOrigin = [sub.coordinateOrigin[0], sub.coordinateOrigin[1], z];
          }
          return new D.GeoJsonLayer(sub);
        }
      };
      if (entry.extruded) {
        const field = entry.height_field;
        Object.assign(props, {extruded: true, wireframe: true, getElevation: f => f.properties[field],
          getFillColor: color.concat([150]), material: false});
      } else {
        props.parameters = FLAT;
      }
      return new D.MVTLayer(props);
    }
  };

  /** Where a kind draws: base maps, then terrain, flat vectors, 3D models, extruded vectors, then features' layers. */
  cim.layerOrder = entry => {
    if (entry.kind === 'map') return 0;
    if (entry.kind === '3dtiles') return entry.part === 'terrain' ? 1 : 3;
    if (entry.kind === 'vector') return entry.extruded ? 4 : 2;
    return entry.order == null ? 5 : entry.order;
  };
})();

/* Layer kinds of the viewer (cim.layerKinds): how a layer-tree entry becomes a deck.gl layer.

   Kinds here: `map` (XYZ image tiles: on meshes lying on the DEM, else BitmapLayers), `3dtiles` (a model's layer
   tileset), `vector` (MVT tiles of a store layer). Flat vector layers are drawn without writing depth, so they lie
   under the buildings in 3D (draped ones depth-tested: a hill hides them). With a DEM on the server, base maps and vector layers lie on it (terrain.js: every
   vertex at the terrain's height there); without one, at the terrain's mid height (`ctx.ground`), where they meet
   the 3D Tiles (which carry ellipsoidal heights). A feature adds a kind with
   `cim.layerKinds.mykind = {create(entry, ctx) {...}}`. */
(function () {
  'use strict';
  const D = globalThis.deck;
  const FLAT = {depthCompare: 'always', depthWriteEnabled: false};
  // a photograph on a mesh keeps its colours: deck.gl's default lights with only the ambient term at full
  // strength (`material: false` still shades a SimpleMeshLayer: the grey of an orthophoto came out at 0.65)
  const UNLIT = {ambient: 1, diffuse: 0, shininess: 1, specularColor: [0, 0, 0]};

  // a map tile outside the data is a 404 by design (docs/http-api.md): an empty tile, not an error
  const tileError = err => { if (!/\(404\)/.test(String(err && err.message || err))) console.error(err); };

  cim.layerKinds.map = {
    create(entry, ctx) {
      const z = ctx.ground;
      if (cim.terrain.available && entry.drape !== false) return drapedMap(entry);
      return new D.TileLayer({
        id: entry.id, data: cim.withKey(entry.url), minZoom: 0, maxZoom: 20, tileSize: 256,
        extent: entry.extent || undefined, maxRequests: 8, onTileError: tileError, zRange: [z, z],
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

  /** The heights a draped layer's tiles span (the DEM's valid heights and the page's ground). A TileLayer culls
      its tiles in 3D by boxes at its `zRange` (default 0 m): a city 1,000 m up lost its flat layers at pitch 60. */
  function drapedZRange() {
    const t = cim.terrain.config, g = cim.config.ground || 0;
    return t && t.range ? [Math.min(g, t.range[0] + t.offset), Math.max(g, t.range[1] + t.offset)] : [g, g];
  }

  /** A base map lying on the DEM (terrain.js `tileMesh`): each image tile on a 32 x 32 grid of DEM heights, drawn
      first with depth (a hill hides the map behind it; the terrain model, drawn later, wins over it where both are
      shown). Without a DEM base maps stay flat at the page's ground. */
  function drapedMap(entry) {
    return new D.TileLayer({
      id: entry.id, data: entry.url, minZoom: 0, maxZoom: 20, tileSize: 256, extent: entry.extent || undefined,
      maxRequests: 8, onTileError: tileError, zRange: drapedZRange(),
      getTileData: async ({index: {x, y, z}, signal}) => {
        const url = entry.url.replace('{z}', z).replace('{x}', x).replace('{y}', y);
        const resp = await fetch(cim.withKey(url), {signal});
        if (resp.status === 404) return null;  // outside the data (docs/http-api.md)
        if (!resp.ok) throw new Error(`${resp.status} ${url}`);
        const [image, ground] = await Promise.all([createImageBitmap(await resp.blob()), cim.terrain.tileMesh(z, x, y, 32)]);
        return ground ? {image, ...ground} : null;
      },
      renderSubLayers: props => {
        const d = props.data;
        if (!d) return null;
        return new D.SimpleMeshLayer({id: props.id, opacity: props.opacity,
          data: [0], mesh: d.mesh, texture: d.image, _instanced: false, getPosition: [0, 0, 0],
          getColor: [255, 255, 255], material: UNLIT, coordinateSystem: D.COORDINATE_SYSTEM.LNGLAT_OFFSETS,
          coordinateOrigin: d.origin, parameters: {depthCompare: 'less-equal', depthWriteEnabled: true}
        });
      }
    });
  }

  /** loaders.gl options of the model layers: Draco and KTX2 (Basis) decoders from this server (tiles.decoders:
      the bundle would fetch them from www.gstatic.com and unpkg.com), keyed by loaders.gl's library names.
      loaders.gl 4.4.3 decodes EXT_mesh_features before KHR_draco_mesh_compression, so a Draco tile's feature ID
      accessor has no data yet and the whole tile fails ("assert failed: gltf"); its EXT_structural_metadata step
      throws on a BOOLEAN column ("Not implemented") and fails the tile too: both steps are left out (its
      `excludeExtensions` drops a name whose value is false); picking.js reads `_FEATURE_ID_0` and the picked row
      of the property table itself. */
  function tileLoadOptions() {
    const decoders = cim.config.decoders || {};
    const modules = {};
    for (const [name, url] of Object.entries(decoders)) modules[name] = new URL(url, location.href).href;
    const local = Object.keys(modules).length ? {useLocalLibraries: true, modules} : {};
    return {worker: false, '3d-tiles': {loadGLTF: true},
            gltf: {excludeExtensions: {EXT_mesh_features: false, EXT_structural_metadata: false}},
            ...local};
  }

  /** Give a Deck's device compressed textures that sample (deck.gl's `onDeviceInitialized`). luma.gl 9.3 uploads a
      compressed texture (KTX2 transcoded by loaders.gl: ASTC, BC1, ETC...) as a mutable WebGL texture and stops its
      mip chain at the block size (4 x 4), so the 2 x 2 and 1 x 1 levels are never given; with the glTF sampler's
      mipmap filter such a texture is incomplete and WebGL samples it as black. Capping the texture's
      TEXTURE_MAX_LEVEL at the levels it has makes it complete (CesiumJS draws the same tiles textured). */
  cim.completeCompressedTextures = device => {
    if (device.type !== 'webgl' || device.__cimCompressed) return;
    device.__cimCompressed = true;
    const gl = device.gl, create = device.createTexture.bind(device);
    device.createTexture = props => {
      const texture = create(props);
      if (texture.compressed && texture.glTarget && texture.mipLevels > 0) {
        gl.bindTexture(texture.glTarget, texture.handle);
        gl.texParameteri(texture.glTarget, gl.TEXTURE_MAX_LEVEL, texture.mipLevels - 1);
        gl.bindTexture(texture.glTarget, null);
      }
      return texture;
    };
  };

  cim.layerKinds['3dtiles'] = {
    create(entry) {
      return new D.Tile3DLayer({
        id: entry.id, data: cim.withKey(entry.url), pickable: true, pointSize: 2,
        loadOptions: tileLoadOptions(),
        // section.js cuts the models: its extension on every model layer, the planes given by map.js
        ...(cim.section ? {extensions: [cim.section.extension], ...cim.section.layerProps(entry)} : {})
      });
    }
  };

  /** Colour, size and elevation accessors of a stored layer style (layers.styles.LayerStyle, docs/viewer.md). */
  function styleAccessors(style, entry) {
    const classes = style.classes || [];
    const last = classes.length - 1;
    const field = style.field;
    const valueOf = style.kind === 'choropleth'
      ? f => { const v = (style.choropleth || {}).values || {}; const x = v[String(f.id)]; return x == null ? null : x; }
      : f => (f.properties || {})[field];
    const classOf = f => {
      const v = valueOf(f);
      if (v === null || v === undefined) return null;
      if (style.kind === 'unique') return classes.find(c => c.value === v || String(c.value) === String(v)) || null;
      const x = Number(v);
      if (!Number.isFinite(x)) return null;
      for (let i = 0; i <= last; i++) {
        const c = classes[i];
        const lo = c.min == null ? -Infinity : c.min, hi = c.max == null ? Infinity : c.max;
        if ((lo <= x && x < hi) || (i === last && x === hi)) return c;
      }
      return null;
    };
    const dflt = style.default_color;
    return {
      classOf,
      fill: style.kind === 'single' || !classes.length ? () => dflt : f => { const c = classOf(f); return c ? c.color : dflt; },
      size: f => { const c = classOf(f); return c && c.size != null ? c.size : style.point_size; },
      stroke: style.stroke_color, strokeWidth: style.stroke_width,
      extrude: style.extrude_field || (entry.extruded ? entry.height_field : null)
    };
  }
  cim.styleAccessors = styleAccessors;

  cim.layerKinds.vector = {
    create(entry, ctx) {
      const style = entry.style;
      if (style && style.kind === 'heatmap') return heatmapLayer(entry, style);
      // the look is the server's (tiles.styles.layer_style): the same as /styles documents and WMS images
      const color = entry.color;
      const polygon = entry.geometry === 'polygon';
      const alpha = entry.fill_alpha != null ? entry.fill_alpha : (polygon ? 40 : 220);
      const radius = entry.point_radius || 4;
      const z = ctx.ground;
      const props = {
        id: entry.id, data: cim.withKey(entry.url), pickable: true, autoHighlight: true,
        highlightColor: [255, 255, 0, 70], minZoom: 0, maxZoom: 18, binary: false,
        loaders: [cim.mvt.loader], loadOptions: {worker: false},
        getFillColor: color.concat([alpha]), getLineColor: color.concat([255]),
        lineWidthMinPixels: entry.line_width || (polygon ? 1 : 2), getLineWidth: 1,
        pointRadiusMinPixels: radius, getPointRadius: radius * 0.75,
        stroked: true, filled: true,
        renderSubLayers: sub => {
          if (sub.modelMatrix && sub.coordinateOrigin) {
            // MVT sub-layers are CARTESIAN (tile units scaled by modelMatrix); the origin's z is in metres (measured)
            sub.coordinateOrigin = [sub.coordinateOrigin[0], sub.coordinateOrigin[1], z];
          }
          return new D.GeoJsonLayer(sub);
        }
      };
      let extrude = entry.extruded ? entry.height_field : null;
      if (style) {
        const a = styleAccessors(style, entry);
        const version = style.updated_at || JSON.stringify(style.classes || []).length + style.kind;
        Object.assign(props, {getFillColor: a.fill, getLineColor: entry.geometry === 'line' ? a.fill : a.stroke,
          lineWidthMinPixels: a.strokeWidth, opacity: style.opacity,
          updateTriggers: {getFillColor: version, getLineColor: version, getPointRadius: version, getLineWidth: version}});
        if (style.kind === 'graduated_size') {
          Object.assign(props, {pointRadiusUnits: 'pixels', getPointRadius: a.size, pointRadiusMinPixels: 0});
          if (entry.geometry === 'line') Object.assign(props, {lineWidthUnits: 'pixels', getLineWidth: a.size, lineWidthMinPixels: 0});
        } else if (entry.geometry === 'point') {
          Object.assign(props, {pointRadiusUnits: 'pixels', getPointRadius: style.point_size, pointRadiusMinPixels: 0});
        }
        extrude = style.extrude_field || null;
      }
      props.zRange = [z, z];  // tiles culled by boxes at the ground (deck.gl's default is 0 m; drapedLayer: the DEM's)
      if (extrude) {
        Object.assign(props, {extruded: true, wireframe: true, getElevation: f => f.properties[extrude],
          material: false});
      } else {
        props.parameters = FLAT;
        if (cim.terrain.available && entry.drape !== false) return drapedLayer(entry, props);
      }
      return new D.MVTLayer(props);
    }
  };

  /** A flat vector layer lying on the terrain (terrain.js): its MVT tiles with every vertex at the DEM's height,
      drawn after the terrain and before the 3D models, without writing depth. Everything is depth-tested, so a
      hill hides what lies behind it; it beats the terrain surfaces it lies on through deck.gl's per-layer polygon
      offset (drawn later: pulled towards the camera). A polygon's fill is drawn from its pieces cut along a grid
      (terrain.js `fillPieces`, a sub-layer `<tile>-fill` of its own), so it follows hills inside the polygon; its
      outline from the rings as they are. */
  function drapedLayer(entry, props) {
    const {loaders, loadOptions, binary, renderSubLayers, data, ...rest} = props;
    rest.parameters = {depthCompare: 'less-equal', depthWriteEnabled: false};
    return new D.TileLayer(Object.assign(rest, {
      data: entry.url, tileSize: 512, maxRequests: 6, extent: entry.extent || undefined, zRange: drapedZRange(),
      getTileData: async ({index: {x, y, z}, signal}) => {
        const url = entry.url.replace('{z}', z).replace('{x}', x).replace('{y}', y);
        const resp = await fetch(cim.withKey(url), {signal});
        if (resp.status === 204 || resp.status === 404) return [];
        if (!resp.ok) throw new Error(`${resp.status} ${url}`);
        return cim.terrain.drape(cim.mvt.parse(await resp.arrayBuffer()), z, x, y);
      },
      renderSubLayers: sub => {
        const fills = (sub.data || []).filter(f => f.fill && f.fill.coordinates.length)
          .map(f => ({type: 'Feature', id: f.id, properties: f.properties, geometry: f.fill}));
        return [new D.GeoJsonLayer(sub, {_subLayerProps: {'polygons-fill': {visible: false}}}),
          fills.length ? new D.GeoJsonLayer(sub, {id: `${sub.id}-fill`, data: fills, stroked: false}) : null];
      }
    }));
  }

  /** A heat map of a point layer: its points from the features API (at most 10,000), weighted by a field. */
  function heatmapLayer(entry, style) {
    const hm = style.heatmap || {};
    const url = `${cim.config.base}/collections/${encodeURIComponent(entry.name)}/items?limit=10000`;
    const data = cim.fetchJson(url).then(doc => doc.features.filter(f => f.geometry && f.geometry.type === 'Point'));
    return new D.HeatmapLayer({
      id: entry.id, data, radiusPixels: hm.radius_px || 30, intensity: hm.intensity || 1,
      colorRange: (hm.colors || []).map(c => c.slice(0, 3)), opacity: style.opacity,
      getPosition: f => f.geometry.coordinates,
      getWeight: hm.weight_field ? f => Number(f.properties[hm.weight_field]) || 0 : 1,
      parameters: FLAT
    });
  }

  /** Where a kind draws: base maps, then terrain, flat vectors, 3D models, extruded vectors, then features' layers. */
  cim.layerOrder = entry => {
    if (entry.kind === 'map') return 0;
    if (entry.kind === '3dtiles') return entry.part === 'terrain' ? 1 : 3;
    if (entry.kind === 'vector') return entry.extruded ? 4 : 2;
    return entry.order == null ? 5 : entry.order;
  };
})();

/* Terrain under the flat layers (贴地): heights from the server's DEM as Terrain-RGB tiles (/maps/{dem}/...,
   height = -10000 + (R * 65536 + G * 256 + B) * 0.1 m, docs/http-api.md), so vector features lie on the terrain the
   3D models stand on instead of floating at one height (cim.config.terrain, made by tiles.viewer.terrain_config).

   `cim.terrain.drape(features, z, x, y)` turns the features of vector tile z/x/y (tile-local coordinates 0..1, y
   down, as mvt.js decodes them) into lon/lat features whose every vertex carries the DEM height there: bilinear
   between the four nearest pixel centres of the DEM at the vector tile's zoom or the DEM's deepest, across DEM tile
   edges (a vector tile's buffer reaches into its neighbours' DEM tiles), plus the config's `offset`
   (the geoid undulation of a model built on EGM96 heights). Lines and polygon rings are densified first (a vertex
   at least every 1/64 of the tile: about two DEM pixels), so they follow valleys and ridges between their own
   vertices; a polygon's fill is cut along a grid of the same step into pieces (`fill` of the draped feature),
   whose cell corners get heights as well, so the fill follows hills inside the polygon. A DEM tile is fetched once and shared by
   every layer. Beyond the DEM's data (outside its extent, or on nodata near its edge) a vertex takes the height of
   the nearest data inward from its place clamped into the extent (`surface`): the surface goes on at the edge's
   heights, no wall down to the page's ground. Inside, the server encodes the
   DEM's nodata as 0 m: a pixel of exactly 0 m is nodata when 0 m lies more than 10 m outside the DEM's valid
   heights (the config's `range`; a DEM reaching down to sea level keeps its 0 m pixels). The bilinear height then
   uses the valid pixels among the four (weights renormalized); a vertex with none of the four valid gets its height
   along its line or ring, linearly between the nearest vertices on either side that have one (or the one side's),
   and a point, or a line without any valid vertex, the page's ground. Without a DEM `cim.terrain.available` is
   false. */
(function () {
  'use strict';
  const cfg = cim.config.terrain || null;
  const STEP = 1 / 64;
  const tiles = new Map();  // 'z/x/y' -> Promise<{cols, rows, heights: Float32Array} | null>
  const ground = () => cim.config.ground || 0;
  const MARGIN = 10;  // metres: how far outside the DEM's valid heights 0 m must lie to mean nodata
  const zeroIsNodata = !!(cfg && cfg.range && (cfg.range[0] - MARGIN > 0 || cfg.range[1] + MARGIN < 0));

  const lonOf = (x, n) => x / n * 360 - 180;
  const latOf = (y, n) => Math.atan(Math.sinh(Math.PI * (1 - 2 * y / n))) * 180 / Math.PI;

  /** True when DEM tile z/x/y touches the DEM's extent (the server answers 404 elsewhere). */
  function touches(z, x, y) {
    const e = cfg.extent;
    if (!e) return true;
    const n = 2 ** z;
    return lonOf(x, n) <= e[2] && lonOf(x + 1, n) >= e[0] && latOf(y + 1, n) <= e[3] && latOf(y, n) >= e[1];
  }

  function demTile(z, x, y) {
    const key = `${z}/${x}/${y}`;
    if (!tiles.has(key)) {
      const url = cfg.url.replace('{z}', z).replace('{x}', x).replace('{y}', y);
      tiles.set(key, !touches(z, x, y) ? Promise.resolve(null) : fetch(cim.withKey(url)).then(async resp => {
        if (!resp.ok) return null;
        const bitmap = await createImageBitmap(await resp.blob(), {premultiplyAlpha: 'none', colorSpaceConversion: 'none'});
        const cols = bitmap.width, rows = bitmap.height;
        const ctx = new OffscreenCanvas(cols, rows).getContext('2d', {willReadFrequently: true});
        ctx.drawImage(bitmap, 0, 0);
        const px = ctx.getImageData(0, 0, cols, rows).data;
        const heights = new Float32Array(cols * rows);
        for (let i = 0, j = 0; i < heights.length; i++, j += 4) {
          const code = px[j] * 65536 + px[j + 1] * 256 + px[j + 2];
          heights[i] = zeroIsNodata && code === 100000 ? NaN : -10000 + code * 0.1;  // 100000: 0 m
        }
        return {cols, rows, heights};
      }).catch(err => { console.error(err); return null; }));
    }
    return tiles.get(key);
  }

  /** A function (u, v) -> height in metres (NaN where the DEM has no tile or no valid pixel among the four) over
      tile z/x/y (u, v in tile units, v down; outside 0..1 too: vector tiles carry a buffer beyond their edges),
      once the DEM tiles around `uv` (the points that will be asked) are loaded. Bilinear between the four nearest
      pixel centres of the DEM at zoom min(z, maxzoom), whichever DEM tiles they are in; nodata pixels left out
      and the weights of the others renormalized. */
  async function sampler(z, x, y, uv) {
    if (!cfg) return () => NaN;
    const dz = Math.min(z, cfg.maxzoom);
    const scale = 2 ** (z - dz);  // vector tiles deeper than the DEM read the deepest DEM tiles covering them
    const size = 256;  // the server's tile size (tiles/raster.py TILE_SIZE)
    const pixel = (u, v) => [((x + u) / scale) * size - 0.5, ((y + v) / scale) * size - 0.5];  // centres at +0.5
    const keys = new Map();
    for (const [u, v] of uv) {
      const [cx, cy] = pixel(u, v);
      for (const c of [Math.floor(cx), Math.floor(cx) + 1]) {
        for (const r of [Math.floor(cy), Math.floor(cy) + 1]) {
          const tx = Math.floor(c / size), ty = Math.floor(r / size);
          keys.set(`${tx}/${ty}`, [tx, ty]);
        }
      }
    }
    const loaded = new Map();
    await Promise.all([...keys].map(async ([key, [tx, ty]]) => { loaded.set(key, await demTile(dz, tx, ty)); }));
    const offset = cfg.offset || 0;
    const at = (c, r) => {
      const tx = Math.floor(c / size), ty = Math.floor(r / size);
      const t = loaded.get(`${tx}/${ty}`);
      return t ? t.heights[(r - ty * size) * t.cols + (c - tx * size)] : NaN;
    };
    return (u, v) => {
      const [cx, cy] = pixel(u, v);
      const c0 = Math.floor(cx), r0 = Math.floor(cy), fx = cx - c0, fy = cy - r0;
      let sum = 0, weight = 0;
      for (const [c, r, w] of [[c0, r0, (1 - fx) * (1 - fy)], [c0 + 1, r0, fx * (1 - fy)],
        [c0, r0 + 1, (1 - fx) * fy], [c0 + 1, r0 + 1, fx * fy]]) {
        const hv = at(c, r);
        if (w > 0 && Number.isFinite(hv)) { sum += hv * w; weight += w; }
      }
      if (weight > 0) return offset + sum / weight;
      return fx === 0 && fy === 0 ? offset + at(c0, r0) : NaN;  // on a pixel centre: that pixel alone
    };
  }

  const EDGE_PX = 8;  // DEM pixels: how far inside its extent's edge a nodata place still takes an edge height

  /** Like `sampler`, and beyond the DEM's data as well: a place outside the DEM's extent, or on nodata within
      EDGE_PX DEM pixels of the extent's edge (the edge pixels of a warped DEM are nodata where the warp reads half
      outside the data, and a DEM in another CRS does not fill its lon/lat box), takes the height at the place
      clamped into the extent and then moved inward one DEM pixel at a time (at most EDGE_PX) until one has data.
      So the surface goes on outward from the DEM's edge at the edge's heights instead of dropping to the page's
      ground (a wall in 3D), and, being a function of the place only, neighbouring tiles meet. NaN: nodata further
      inside (a hole), or no data found near the edge. */
  async function surface(z, x, y, uv) {
    const e = cfg && cfg.extent;
    const h = await sampler(z, x, y, uv);
    if (!e) return h;
    const n = 2 ** z;
    const uOf = lon => (lon + 180) / 360 * n - x;
    const vOf = lat => (1 - Math.log(Math.tan(Math.PI / 4 + lat * Math.PI / 360)) / Math.PI) / 2 * n - y;
    const [uw, ue, vn, vs] = [uOf(e[0]), uOf(e[2]), vOf(e[3]), vOf(e[1])];
    const px = 2 ** (z - Math.min(z, cfg.maxzoom)) / 256;  // one DEM pixel in this tile's units
    const reach = EDGE_PX * px;
    const within = (u, v) => u >= uw && u <= ue && v >= vn && v <= vs;
    /** The places to try for (u, v) beyond the data, or null for a hole further inside. */
    const walk = (u, v) => {
      const cu = Math.min(Math.max(u, uw), ue), cv = Math.min(Math.max(v, vn), vs);
      const du = cu - uw < reach ? 1 : ue - cu < reach ? -1 : 0;
      const dv = cv - vn < reach ? 1 : vs - cv < reach ? -1 : 0;
      if (!du && !dv) return null;
      const out = [];
      for (let k = 0; k <= EDGE_PX; k++) out.push([cu + du * k * px, cv + dv * k * px]);
      return out;
    };
    const need = uv.flatMap(([u, v]) => (within(u, v) && Number.isFinite(h(u, v)) ? [] : walk(u, v) || []));
    const edge = need.length ? await sampler(z, x, y, need) : h;
    return (u, v) => {
      if (within(u, v)) {
        const a = h(u, v);
        if (Number.isFinite(a)) return a;
      }
      for (const [wu, wv] of walk(u, v) || []) {
        const b = edge(wu, wv);
        if (Number.isFinite(b)) return b;
      }
      return NaN;
    };
  }

  function densify(line) {
    const out = [];
    for (let i = 0; i < line.length; i++) {
      const p = line[i];
      if (i > 0) {
        const q = line[i - 1];
        const n = Math.floor(Math.hypot(p[0] - q[0], p[1] - q[1]) / STEP);
        for (let k = 1; k <= n; k++) {
          const t = k / (n + 1);
          out.push([q[0] + (p[0] - q[0]) * t, q[1] + (p[1] - q[1]) * t]);
        }
      }
      out.push(p);
    }
    return out;
  }

  /** `ring` (tile units) clipped to one side of the line u = bound (axis 0) or v = bound (axis 1): the side
      >= bound when `above`, else <= bound (Sutherland-Hodgman; the result of a concave ring may run along the
      line in zero-width bridges, which triangulate to nothing). */
  function clipRing(ring, axis, bound, above) {
    const out = [];
    const inside = p => (above ? p[axis] >= bound : p[axis] <= bound);
    for (let i = 0, n = ring.length; i < n; i++) {
      const p = ring[i], q = ring[(i + 1) % n];
      const pin = inside(p);
      if (pin) out.push(p);
      if (pin !== inside(q)) {
        const t = (bound - p[axis]) / (q[axis] - p[axis]);
        const r = [p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t];
        r[axis] = bound;
        out.push(r);
      }
    }
    return out;
  }

  function area(ring) {
    let a = 0;
    for (let j = 0, n = ring.length, k = n - 1; j < n; k = j++) a += (ring[k][0] - ring[j][0]) * (ring[j][1] + ring[k][1]);
    return Math.abs(a) / 2;
  }

  /** A polygon's fill (its densified rings in tile units, the first the outer) cut along the grid of STEP cells:
      the pieces, each [outer, ...holes], with the cells' corners inside the polygon as vertices. Triangulated piece
      by piece, the fill follows the terrain inside the polygon too (one triangulation between its rings is planar
      across it and sinks under every hill inside it). */
  function fillPieces(rings) {
    const tiny = STEP * STEP * 1e-6;
    let v0 = Infinity, v1 = -Infinity;
    for (const p of rings[0]) { v0 = Math.min(v0, p[1]); v1 = Math.max(v1, p[1]); }
    const pieces = [];
    for (let r = Math.floor(v0 / STEP); r * STEP < v1; r++) {
      const top = r * STEP, bottom = top + STEP;
      const band = rings.map(ring => clipRing(clipRing(ring, 1, top, true), 1, bottom, false));
      if (band[0].length < 3) continue;
      let u0 = Infinity, u1 = -Infinity;
      for (const p of band[0]) { u0 = Math.min(u0, p[0]); u1 = Math.max(u1, p[0]); }
      for (let c = Math.floor(u0 / STEP); c * STEP < u1; c++) {
        const left = c * STEP, right = left + STEP;
        const cut = ring => (ring.length < 3 ? ring : clipRing(clipRing(ring, 0, left, true), 0, right, false));
        const outer = cut(band[0]);
        const outerArea = outer.length < 3 ? 0 : area(outer);
        if (outerArea < tiny) continue;
        const holes = band.slice(1).map(cut).filter(h => h.length >= 3 && area(h) >= tiny);
        if (holes.some(h => area(h) >= outerArea - tiny)) continue;  // a hole covers the whole piece
        pieces.push([outer, ...holes]);
      }
    }
    return pieces;
  }

  /** [lon, lat, h] of a line or ring's vertices [lon, lat, h or NaN, inside the DEM's extent, [u, v]]: outside
      the extent the page's ground; inside, a vertex without a height (nodata all around) gets one linearly along
      the line (tile-unit distance) between the nearest vertices with a height, or the nearest one's. */
  function along(vs) {
    const known = vs.map((v, i) => (Number.isFinite(v[2]) ? i : -1)).filter(i => i >= 0);
    const dist = [0];
    for (let i = 1; i < vs.length; i++) {
      dist.push(dist[i - 1] + Math.hypot(vs[i][4][0] - vs[i - 1][4][0], vs[i][4][1] - vs[i - 1][4][1]));
    }
    let k = 0;
    return vs.map((v, i) => {
      if (Number.isFinite(v[2])) return [v[0], v[1], v[2]];
      if (!v[3]) return [v[0], v[1], ground()];
      if (!known.length) return [v[0], v[1], ground()];
      while (k < known.length && known[k] < i) k++;
      const before = k > 0 ? known[k - 1] : -1, after = k < known.length ? known[k] : -1;
      if (before < 0) return [v[0], v[1], vs[after][2]];
      if (after < 0) return [v[0], v[1], vs[before][2]];
      const t = (dist[i] - dist[before]) / (dist[after] - dist[before] || 1);
      return [v[0], v[1], vs[before][2] + (vs[after][2] - vs[before][2]) * t];
    });
  }

  /** GeoJSON features in lon/lat with DEM heights from features of vector tile z/x/y in tile units (mvt.js). */
  async function drape(features, z, x, y) {
    // densified geometries in tile units first, to know which DEM tiles they need
    const flat = features.map(f => {
      const g = f.geometry;
      let c;
      if (g.type === 'Point' || g.type === 'MultiPoint') c = g.coordinates;
      else if (g.type === 'LineString') c = densify(g.coordinates);
      else if (g.type === 'MultiLineString' || g.type === 'Polygon') c = g.coordinates.map(densify);
      else c = g.coordinates.map(poly => poly.map(densify));
      return c;
    });
    const fills = features.map((f, i) => {
      const t = f.geometry.type;
      if (t === 'Polygon') return fillPieces(flat[i]);
      if (t === 'MultiPolygon') return flat[i].flatMap(fillPieces);
      return null;
    });
    const uv = [];
    const collect = c => { if (typeof c[0] === 'number') uv.push(c); else c.forEach(collect); };
    flat.forEach(collect);
    fills.forEach(c => c && collect(c));
    const n = 2 ** z;
    const e = cfg && cfg.extent;
    const inside = (lon, lat) => !e || (lon >= e[0] && lon <= e[2] && lat >= e[1] && lat <= e[3]);
    const h = await surface(z, x, y, uv);
    const point = c => {
      const lon = lonOf(x + c[0], n), lat = latOf(y + c[1], n);
      const height = h(c[0], c[1]);
      return [lon, lat, Number.isFinite(height) ? height : ground()];
    };
    const line = c => along(c.map(p => {
      const lon = lonOf(x + p[0], n), lat = latOf(y + p[1], n);
      return [lon, lat, h(p[0], p[1]), inside(lon, lat), p];
    }));
    const place = (type, c) => {
      if (type === 'Point') return point(c);
      if (type === 'MultiPoint') return c.map(point);
      if (type === 'LineString') return line(c);
      if (type === 'MultiLineString' || type === 'Polygon') return c.map(line);
      return c.map(poly => poly.map(line));
    };
    // a fill piece's vertex on nodata gets the mean height of the piece's others; a piece with none is left out
    // (a gap over the DEM's nodata, as the terrain model and base maps leave one)
    const fillPiece = rings => {
      const placed = rings.map(ring => ring.map(c => {
        const lon = lonOf(x + c[0], n), lat = latOf(y + c[1], n);
        const height = h(c[0], c[1]);
        return [lon, lat, Number.isFinite(height) || inside(lon, lat) ? height : ground()];
      }));
      const all = placed.flat(), known = all.filter(p => Number.isFinite(p[2]));
      if (!known.length) return null;
      if (known.length < all.length) {
        const mean = known.reduce((a, p) => a + p[2], 0) / known.length;
        for (const p of all) if (!Number.isFinite(p[2])) p[2] = mean;
      }
      return placed;
    };
    return features.map((f, i) => {
      const out = {type: 'Feature', id: f.id, properties: f.properties,
        geometry: {type: f.geometry.type, coordinates: place(f.geometry.type, flat[i])}};
      if (fills[i]) {
        const coordinates = fills[i].map(fillPiece).filter(Boolean);
        // not enumerable: `drawn()` and picking hand out the features as they are, without their fill pieces
        Object.defineProperty(out, 'fill', {value: {type: 'MultiPolygon', coordinates}});
      }
      return out;
    });
  }

  /** A mesh of map tile z/x/y lying on the DEM, for a base map's image (layers.js): a grid of (n + 1)^2 vertices
      over the tile, each at the DEM's height there as `drape` gives it (beyond the DEM's edge the edge's height,
      far from any data the page's ground), positions in degrees from `origin` (the tile's north-west corner; LNGLAT_OFFSETS keeps float32
      offsets precise) and metres up, texture coordinates (0, 0) at the image's top left. Cells touching a vertex
      without a height (the DEM's nodata) are left out, as the terrain model leaves out its nodata. Returns
      {origin, mesh} (a loaders.gl mesh for deck.gl's SimpleMeshLayer) or null when no cell is left. */
  async function tileMesh(z, x, y, n) {
    const count = 2 ** z;
    const e = cfg && cfg.extent;
    const inside = (lon, lat) => !e || (lon >= e[0] && lon <= e[2] && lat >= e[1] && lat <= e[3]);
    const uv = [];
    for (let j = 0; j <= n; j++) for (let i = 0; i <= n; i++) uv.push([i / n, j / n]);
    const lonlat = uv.map(([u, v]) => [lonOf(x + u, count), latOf(y + v, count)]);
    const h = await surface(z, x, y, uv);
    const origin = [lonOf(x, count), latOf(y, count), 0];
    const position = new Float32Array(uv.length * 3), texCoords = new Float32Array(uv.length * 2);
    const valid = new Uint8Array(uv.length);
    let lo = Infinity, hi = -Infinity;
    uv.forEach(([u, v], k) => {
      const [lon, lat] = lonlat[k];
      let height = h(u, v);
      valid[k] = 1;
      if (!Number.isFinite(height)) {
        valid[k] = inside(lon, lat) ? 0 : 1;  // a hole in the DEM is left out; far off it, the page's ground
        height = ground();
      }
      position.set([lon - origin[0], lat - origin[1], height], 3 * k);
      texCoords.set([u, v], 2 * k);
      if (valid[k]) { lo = Math.min(lo, height); hi = Math.max(hi, height); }
    });
    const indices = [];
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < n; i++) {
        const a = j * (n + 1) + i, b = a + 1, c = a + n + 1, d = c + 1;
        if (valid[a] && valid[b] && valid[c] && valid[d]) indices.push(a, c, b, b, c, d);
      }
    }
    if (!indices.length) return null;
    const west = 0, east = lonOf(x + 1, count) - origin[0], south = latOf(y + 1, count) - origin[1], north = 0;
    return {origin, mesh: {header: {vertexCount: uv.length, boundingBox: [[west, south, lo], [east, north, hi]]},
      mode: 4, attributes: {POSITION: {value: position, size: 3}, TEXCOORD_0: {value: texCoords, size: 2}},
      indices: {value: Uint32Array.from(indices), size: 1}}};
  }

  /** The features a draped layer draws now (its visible tiles' GeoJSON with the heights used): for tests and
      users' scripts. */
  function drawn(id) {
    const deckgl = cim.viewer && cim.viewer.deck;
    if (!deckgl || !deckgl.layerManager) return [];
    return deckgl.layerManager.getLayers()
      .filter(l => l.id.startsWith(`${id}-`) && !l.id.endsWith('-fill') && l.parent && l.parent.id === id
        && l.props.visible && Array.isArray(l.props.data))
      .flatMap(l => l.props.data);
  }

  /** The DEM height the page drapes at lon/lat (metres), or NaN outside the DEM. */
  async function heightAt(lon, lat) {
    if (!cfg) return NaN;
    const z = cfg.maxzoom, n = 2 ** z;
    const fx = (lon + 180) / 360 * n;
    const fy = (1 - Math.log(Math.tan(Math.PI / 4 + lat * Math.PI / 360)) / Math.PI) / 2 * n;
    const x = Math.floor(fx), y = Math.floor(fy);
    return (await sampler(z, x, y, [[fx - x, fy - y]]))(fx - x, fy - y);
  }

  cim.terrain = {available: !!cfg, config: cfg, drape, sampler, heightAt, drawn, tileMesh};
})();

/* Picking 3D features by their feature ID (EXT_mesh_features): a click on a model finds the triangle under the
   cursor in the tile's own mesh, reads its `_FEATURE_ID_0`, and the feature's row of the tile's property table
   (EXT_structural_metadata): the building's ID and attributes, as the model carries them, for L2 blocks, LOD2 roofs
   and singulated oblique meshes alike. The picked feature's triangles are drawn again in a highlight colour.

   deck.gl's Tile3DLayer picks a whole tile (one scenegraph), so the page casts the ray of the clicked pixel itself
   against the triangles of the selected tiles of every visible model (terrain included: it hides what is behind
   it), each in the tile's METER_OFFSETS frame where the scenegraph draws it (modelMatrix x glTF position, metres
   east/north/up of the tile's origin). */
(function () {
  'use strict';
  const D = globalThis.deck;
  const A = 6378137.0, E2 = 0.00669438002290;  // CGCS2000 / GRS80 ellipsoid
  let highlight = null;   // {id, layerId, origin, triangles: Float64Array (n*9)}
  const cache = new WeakMap(); // tile content -> transformed primitives

  cim.addText({zh: {feature3d: '三维要素', featureId: '要素编号'}, en: {feature3d: '3D feature', featureId: 'feature ID'}});

  /** [lon, lat, h] of metres east, north, up from `origin` (the inverse of `offsets`). */
  function place(o, origin) {
    const lat = origin[1] * Math.PI / 180;
    const s = Math.sin(lat), w = Math.sqrt(1 - E2 * s * s);
    const n = A / w, m = A * (1 - E2) / (w * w * w);
    return [origin[0] + o[0] / ((n + origin[2]) * Math.cos(lat)) * 180 / Math.PI,
      origin[1] + o[1] / (m + origin[2]) * 180 / Math.PI, o[2] + origin[2]];
  }
  /** Metres east, north, up of [lon, lat, h] from `origin` (local tangent plane; centimetres over a tile). */
  function offsets(p, origin) {
    const lat = origin[1] * Math.PI / 180;
    const s = Math.sin(lat), w = Math.sqrt(1 - E2 * s * s);
    const n = A / w, m = A * (1 - E2) / (w * w * w);
    return [(p[0] - origin[0]) * Math.PI / 180 * (n + origin[2]) * Math.cos(lat),
      (p[1] - origin[1]) * Math.PI / 180 * (m + origin[2]), p[2] - origin[2]];
  }

  // 4x4 column-major matrix helpers (glTF node transforms)
  function mul(a, b) {
    const o = new Float64Array(16);
    for (let c = 0; c < 4; c++) {
      for (let r = 0; r < 4; r++) {
        o[4 * c + r] = a[r] * b[4 * c] + a[4 + r] * b[4 * c + 1] + a[8 + r] * b[4 * c + 2] + a[12 + r] * b[4 * c + 3];
      }
    }
    return o;
  }
  /** A glTF node's local matrix: `matrix`, or translation x rotation (quaternion) x scale. */
  function nodeMatrix(node) {
    if (node.matrix && node.matrix.length === 16) return Float64Array.from(node.matrix);
    const [tx, ty, tz] = node.translation || [0, 0, 0];
    const [qx, qy, qz, qw] = node.rotation || [0, 0, 0, 1];
    const [sx, sy, sz] = node.scale || [1, 1, 1];
    return Float64Array.from([
      (1 - 2 * (qy * qy + qz * qz)) * sx, 2 * (qx * qy + qz * qw) * sx, 2 * (qx * qz - qy * qw) * sx, 0,
      2 * (qx * qy - qz * qw) * sy, (1 - 2 * (qx * qx + qz * qz)) * sy, 2 * (qy * qz + qx * qw) * sy, 0,
      2 * (qx * qz + qy * qw) * sz, 2 * (qy * qz - qx * qw) * sz, (1 - 2 * (qx * qx + qy * qy)) * sz, 0,
      tx, ty, tz, 1]);
  }
  // a normalized integer attribute's scale (glTF 2.0 3.11; KHR_mesh_quantization)
  function unit(acc) {
    if (!acc.normalized) return 1;
    const v = acc.value;
    if (v instanceof Uint8Array) return 1 / 255;
    if (v instanceof Uint16Array) return 1 / 65535;
    if (v instanceof Int8Array) return 1 / 127;
    if (v instanceof Int16Array) return 1 / 32767;
    return 1;
  }
  /** [[mesh, matrix]] of the default scene's nodes (loaders.gl resolves indices into objects; both are read). */
  function meshNodes(gltf) {
    const nodeOf = n => (typeof n === 'number' ? gltf.nodes[n] : n);
    const meshOf = m => (typeof m === 'number' ? gltf.meshes[m] : m);
    let scene = gltf.scene !== undefined && gltf.scene !== null ? gltf.scene : 0;
    if (typeof scene === 'number') scene = (gltf.scenes || [])[scene];
    const out = [];
    const walk = (node, parent) => {
      node = nodeOf(node);
      if (!node) return;
      const m = mul(parent, nodeMatrix(node));
      if (node.mesh !== undefined && node.mesh !== null) out.push([meshOf(node.mesh), m]);
      for (const child of node.children || []) walk(child, m);
    };
    const I = Float64Array.from([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
    if (scene && scene.nodes) scene.nodes.forEach(n => walk(n, I));
    else (gltf.meshes || []).forEach(mesh => out.push([mesh, I]));  // no scene: every mesh as it is
    return out;
  }

  /** The tile's primitives with their vertices in the tile's METER_OFFSETS frame: content.modelMatrix x the node's
      matrix x the glTF position (dequantized: KHR_mesh_quantization keeps positions as integers on a grid whose
      step and origin are the node's scale and translation, EXT_meshopt_compression is decoded by loaders.gl). */
  function primitives(content) {
    let out = cache.get(content);
    if (out) return out;
    out = [];
    const gltf = content.gltf;
    for (const [mesh, nm] of meshNodes(gltf)) {
      const M = mul(content.modelMatrix, nm);
      for (const prim of (mesh && mesh.primitives) || []) {
        const acc = prim.attributes.POSITION;
        const pos = acc && acc.value;
        const fidAttr = prim.attributes._FEATURE_ID_0;
        const ext = prim.extensions && prim.extensions.EXT_mesh_features;
        if (!pos) continue;
        const k = unit(acc);
        const n = Math.floor(pos.length / 3);
        const world = new Float64Array(n * 3);
        for (let i = 0; i < n; i++) {
          const x = pos[3 * i] * k, y = pos[3 * i + 1] * k, z = pos[3 * i + 2] * k;
          world[3 * i] = M[0] * x + M[4] * y + M[8] * z + M[12];
          world[3 * i + 1] = M[1] * x + M[5] * y + M[9] * z + M[13];
          world[3 * i + 2] = M[2] * x + M[6] * y + M[10] * z + M[14];
        }
        const idx = prim.indices ? prim.indices.value : Uint32Array.from({length: n}, (_, i) => i);
        const fi = ext && fidAttr ? (ext.featureIds.find(f => f.attribute === 0) || ext.featureIds[0]) : null;
        out.push({world, idx, fid: fi ? fidAttr.value : null, table: fi ? fi.propertyTable : null,
          nullId: fi ? fi.nullFeatureId : undefined});
      }
    }
    cache.set(content, out);
    return out;
  }

  // closest point on triangle abc to p (Ericson, Real-Time Collision Detection 5.1.5); returns squared distance
  function dist2(p, w, ia, ib, ic) {
    const ax = w[3 * ia], ay = w[3 * ia + 1], az = w[3 * ia + 2];
    const abx = w[3 * ib] - ax, aby = w[3 * ib + 1] - ay, abz = w[3 * ib + 2] - az;
    const acx = w[3 * ic] - ax, acy = w[3 * ic + 1] - ay, acz = w[3 * ic + 2] - az;
    const apx = p[0] - ax, apy = p[1] - ay, apz = p[2] - az;
    const d1 = abx * apx + aby * apy + abz * apz, d2 = acx * apx + acy * apy + acz * apz;
    let qx, qy, qz;
    const bpx = p[0] - w[3 * ib], bpy = p[1] - w[3 * ib + 1], bpz = p[2] - w[3 * ib + 2];
    const d3 = abx * bpx + aby * bpy + abz * bpz, d4 = acx * bpx + acy * bpy + acz * bpz;
    const cpx = p[0] - w[3 * ic], cpy = p[1] - w[3 * ic + 1], cpz = p[2] - w[3 * ic + 2];
    const d5 = abx * cpx + aby * cpy + abz * cpz, d6 = acx * cpx + acy * cpy + acz * cpz;
    const vc = d1 * d4 - d3 * d2, vb = d5 * d2 - d1 * d6, va = d3 * d6 - d5 * d4;
    if (d1 <= 0 && d2 <= 0) { qx = ax; qy = ay; qz = az; }
    else if (d3 >= 0 && d4 <= d3) { qx = w[3 * ib]; qy = w[3 * ib + 1]; qz = w[3 * ib + 2]; }
    else if (vc <= 0 && d1 >= 0 && d3 <= 0) { const v = d1 / (d1 - d3); qx = ax + v * abx; qy = ay + v * aby; qz = az + v * abz; }
    else if (d6 >= 0 && d5 <= d6) { qx = w[3 * ic]; qy = w[3 * ic + 1]; qz = w[3 * ic + 2]; }
    else if (vb <= 0 && d2 >= 0 && d6 <= 0) { const v = d2 / (d2 - d6); qx = ax + v * acx; qy = ay + v * acy; qz = az + v * acz; }
    else if (va <= 0 && (d4 - d3) >= 0 && (d5 - d6) >= 0) {
      const v = (d4 - d3) / ((d4 - d3) + (d5 - d6));
      qx = w[3 * ib] + v * (w[3 * ic] - w[3 * ib]); qy = w[3 * ib + 1] + v * (w[3 * ic + 1] - w[3 * ib + 1]);
      qz = w[3 * ib + 2] + v * (w[3 * ic + 2] - w[3 * ib + 2]);
    } else {
      const den = 1 / (va + vb + vc), v = vb * den, u = vc * den;
      qx = ax + abx * v + acx * u; qy = ay + aby * v + acy * u; qz = az + abz * v + acz * u;
    }
    return (p[0] - qx) ** 2 + (p[1] - qy) ** 2 + (p[2] - qz) ** 2;
  }

  // EXT_structural_metadata component types: DataView getter and size in bytes (3D Metadata binary table format)
  const GET = {INT8: ['getInt8', 1], UINT8: ['getUint8', 1], INT16: ['getInt16', 2], UINT16: ['getUint16', 2],
    INT32: ['getInt32', 4], UINT32: ['getUint32', 4], INT64: ['getBigInt64', 8], UINT64: ['getBigUint64', 8],
    FLOAT32: ['getFloat32', 4], FLOAT64: ['getFloat64', 8]};
  const utf8 = new TextDecoder();

  function element(bytes, type, i) {
    const [get, size] = GET[type] || [];
    if (!get || !bytes || (i + 1) * size > bytes.byteLength) return null;
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)[get](i * size, true);
    return typeof v === 'bigint' ? Number(v) : v;
  }

  /** Row `id` of one property-table column, read from its buffer views (loaders.gl gives each view's bytes as
      `data`). The viewer leaves loaders.gl's own decoding of EXT_structural_metadata out (layers.js): 4.4.3 throws
      on a BOOLEAN column and so failed the whole tile. Single values of SCALAR, STRING, BOOLEAN and ENUM (what
      tiles.gltf writes); other types give null. */
  function cell(gltf, schema, def, entry, id) {
    const view = i => { const v = gltf.bufferViews && gltf.bufferViews[i]; return v && v.data; };
    const values = view(entry.values);
    if (!values || def.array) return null;
    switch (def.type) {
      case 'STRING': {
        const offsets = view(entry.stringOffsets), type = entry.stringOffsetType || 'UINT32';
        const a = element(offsets, type, id), b = element(offsets, type, id + 1);
        return a == null || b == null ? null : utf8.decode(values.subarray(a, b));
      }
      case 'BOOLEAN': return (id >> 3) < values.length ? ((values[id >> 3] >> (id & 7)) & 1) === 1 : null;
      case 'ENUM': {
        const e = schema && schema.enums && schema.enums[def.enumType];
        const v = e ? element(values, e.valueType || 'UINT16', id) : null;
        const found = v == null ? null : e.values.find(x => x.value === v);
        return found ? found.name : null;
      }
      case 'SCALAR': return element(values, def.componentType, id);
      default: return null;
    }
  }

  function propertyRow(gltf, tableIndex, id) {
    const meta = gltf.extensions && gltf.extensions.EXT_structural_metadata;
    const table = meta && meta.propertyTables && meta.propertyTables[tableIndex];
    if (!table) return {};
    const cls = meta.schema && meta.schema.classes && meta.schema.classes[table.class];
    const out = {};
    for (const [name, prop] of Object.entries(table.properties || {})) {
      const def = cls && cls.properties && cls.properties[name];
      let v = prop.data != null ? prop.data[id] : (def ? cell(gltf, meta.schema, def, prop, id) : null);
      if (def && def.noData !== undefined && v === def.noData) v = null;
      if (typeof v === 'number' && Math.abs(v) > 1e37) v = null;  // float32 noData sentinels
      out[name] = v === undefined ? null : v;
    }
    // a column left out of the table (all its strings empty, tiles/gltf.py) has its class's default in every row
    for (const [name, def] of Object.entries((cls && cls.properties) || {})) {
      if (!(name in out) && def.default !== undefined) out[name] = def.default;
    }
    return out;
  }

  // ray / triangle intersection (Moller-Trumbore); returns the ray parameter or Infinity
  function rayHit(o, d, w, ia, ib, ic) {
    const ax = w[3 * ia], ay = w[3 * ia + 1], az = w[3 * ia + 2];
    const e1x = w[3 * ib] - ax, e1y = w[3 * ib + 1] - ay, e1z = w[3 * ib + 2] - az;
    const e2x = w[3 * ic] - ax, e2y = w[3 * ic + 1] - ay, e2z = w[3 * ic + 2] - az;
    const px = d[1] * e2z - d[2] * e2y, py = d[2] * e2x - d[0] * e2z, pz = d[0] * e2y - d[1] * e2x;
    const det = e1x * px + e1y * py + e1z * pz;
    if (Math.abs(det) < 1e-12) return Infinity;
    const inv = 1 / det;
    const tx = o[0] - ax, ty = o[1] - ay, tz = o[2] - az;
    const u = (tx * px + ty * py + tz * pz) * inv;
    if (u < 0 || u > 1) return Infinity;
    const qx = ty * e1z - tz * e1y, qy = tz * e1x - tx * e1z, qz = tx * e1y - ty * e1x;
    const v = (d[0] * qx + d[1] * qy + d[2] * qz) * inv;
    if (v < 0 || u + v > 1) return Infinity;
    const t = (e2x * qx + e2y * qy + e2z * qz) * inv;
    return t > 0 ? t : Infinity;
  }

  function selectedTiles(id) {
    const lm = cim.viewer.deck.layerManager;
    const layer = lm && lm.getLayers().find(l => l.id === id);
    const ts = layer && layer.state && layer.state.tileset3d;
    return ts ? ts.tiles.filter(t => t.selected && t.content && t.content.gltf) : [];
  }

  /** The 3D feature under a pixel of the map: a ray from the camera through (x, y) against the triangles of every
      visible model's selected tiles (terrain included, so it hides what is behind it); the nearest hit's feature,
      or null when the nearest surface has no feature ID (terrain) or nothing is hit. */
  function featureAtPixel(x, y) {
    const v = cim.viewer;
    const vp = v.viewportAt(x, y);
    if (!vp) return null;
    const top = vp.unproject([x - vp.x, y - vp.y], {targetZ: v.ground + 1500});
    const bottom = vp.unproject([x - vp.x, y - vp.y], {targetZ: v.ground - 1500});
    let best = null;
    for (const id of v.order) {
      const e = v.entries[id];
      if (e.kind !== '3dtiles' || !v.isShown(id)) continue;
      for (const tile of selectedTiles(id)) {
        const c = tile.content;
        const a = offsets([top[0], top[1], v.ground + 1500], c.cartographicOrigin);
        const b = offsets([bottom[0], bottom[1], v.ground - 1500], c.cartographicOrigin);
        const d = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        primitives(c).forEach((prim, pi) => {
          const {world, idx} = prim;
          for (let t = 0; t + 2 < idx.length; t += 3) {
            const s = rayHit(a, d, world, idx[t], idx[t + 1], idx[t + 2]);
            if (!(s < (best ? best.s : Infinity))) continue;
            const point = [a[0] + s * d[0], a[1] + s * d[1], a[2] + s * d[2]];
            if (cim.section && cim.section.isCut(...place(point, c.cartographicOrigin), e)) continue;  // cut away
            best = {s, id, tile, pi, t, point};
          }
        });
      }
    }
    if (!best) return null;
    const prims = primitives(best.tile.content);
    const prim = prims[best.pi];
    if (!prim.fid) return null;
    const f = describe(best.id, best.tile, prims, prim, prim.fid[prim.idx[best.t]], 0);
    if (f) f.position = place(best.point, best.tile.content.cartographicOrigin);  // [lon, lat, h] of the hit
    return f;
  }

  function describe(layerId, tile, prims, prim, fid, distance) {
    if (prim.nullId !== undefined && fid === prim.nullId) return null;
    const content = tile.content;
    const triangles = [];
    prims.forEach(q => {
      if (!q.fid || q.table !== prim.table) return;
      for (let t = 0; t + 2 < q.idx.length; t += 3) {
        if (q.fid[q.idx[t]] !== fid) continue;
        for (let k = 0; k < 3; k++) triangles.push(q.world[3 * q.idx[t + k]], q.world[3 * q.idx[t + k] + 1], q.world[3 * q.idx[t + k] + 2]);
      }
    });
    return {layer: layerId, tile: tile.id, featureId: fid, properties: propertyRow(content.gltf, prim.table, fid),
      distance_m: distance, triangles: Float64Array.from(triangles), origin: content.cartographicOrigin};
  }

  /** The feature of a 3D model at a depth pick (`deck.pickObject({..., unproject3D: true})` on a model layer), or
      null: {layer, tile, featureId, properties, distance_m, triangles}. */
  function featureAt(hit) {
    const tile = hit && hit.object;
    const content = tile && tile.content;
    if (!content || !content.gltf || !hit.coordinate) return null;
    const p = offsets(hit.coordinate, content.cartographicOrigin);
    let best = null;
    primitives(content).forEach((prim, pi) => {
      const {world, idx} = prim;
      for (let t = 0; t + 2 < idx.length; t += 3) {
        const d = dist2(p, world, idx[t], idx[t + 1], idx[t + 2]);
        if (!best || d < best.d) best = {d, pi, t};
      }
    });
    if (!best) return null;
    const prims = primitives(content);
    const prim = prims[best.pi];
    if (!prim.fid) return null;
    return describe(cim.viewer.rootId(hit.layer), tile, prims, prim, prim.fid[prim.idx[best.t]], Math.sqrt(best.d));
  }

  function setHighlight(feature) {
    highlight = feature;
    cim.viewer.refresh();
  }

  cim.picking = {featureAt, featureAtPixel, setHighlight, offsets, get highlight() { return highlight; }};
  cim.register({
    id: 'picking', order: 6,
    start() {
      cim.on('click', c => {
        let f = null;
        try { f = featureAtPixel(c.x, c.y); } catch (err) { console.error(err); }
        setHighlight(f);
        cim.emit('feature', f);
      });
    },
    identify(result, picked) {
      const f = highlight;
      if (!f) return '';
      const entry = cim.viewer.entries[f.layer];
      const esc = cim.escapeHtml;
      const props = Object.assign({[cim.t('featureId')]: f.featureId}, f.properties);
      return `<section class="hit feature3d" data-layer="${esc(f.layer)}" data-feature-id="${f.featureId}"><h4>${cim.t('feature3d')}: ${esc(entry ? entry.title : f.layer)} <small>${esc(f.properties.id || f.properties.code || '')}</small></h4>${cim.identify.propsTable(props)}</section>`;
    },
    layers() {
      // depth-tested, so a building in front hides the highlight; it wins over the coplanar mesh it copies through
      // deck.gl's per-layer polygon offset (drawn last: the largest pull towards the camera). A `depthBias` here
      // (even 0) replaces that offset (luma.gl sets gl.polygonOffset from it): the highlight then loses to the mesh.
      if (!highlight) return [];
      const tri = highlight.triangles;
      const polys = [];
      for (let i = 0; i + 8 < tri.length; i += 9) {
        polys.push([[tri[i], tri[i + 1], tri[i + 2]], [tri[i + 3], tri[i + 4], tri[i + 5]], [tri[i + 6], tri[i + 7], tri[i + 8]]]);
      }
      return [new D.SolidPolygonLayer({id: 'feature-highlight', data: polys, getPolygon: d => d, _full3d: true,
        coordinateSystem: D.COORDINATE_SYSTEM.METER_OFFSETS, coordinateOrigin: highlight.origin,
        getFillColor: [255, 225, 0, 235], parameters: {depthCompare: 'less-equal', depthWriteEnabled: false}})];
    }
  });
})();

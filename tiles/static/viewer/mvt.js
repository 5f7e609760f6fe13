/* Mapbox Vector Tile 2.1 decoding for the viewer (cim.mvt): the bundle's MVTLayer only has loaders.gl's worker
   loader, whose worker script would come from a CDN, so vector tiles are decoded here into GeoJSON features in
   tile-local coordinates (0..1). */
(function () {
  'use strict';
  class Pbf {
    constructor(buf) { this.buf = buf; this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength); this.pos = 0; }
    varint() {
      let val = 0, shift = 0, b;
      do { b = this.buf[this.pos++]; val += (b & 0x7f) * 2 ** shift; shift += 7; } while (b >= 0x80);
      return val;
    }
    bytes() { const n = this.varint(); const out = this.buf.subarray(this.pos, this.pos + n); this.pos += n; return out; }
    skip(wire) {
      if (wire === 0) this.varint(); else if (wire === 1) this.pos += 8; else if (wire === 5) this.pos += 4;
      else if (wire === 2) this.pos += this.varint(); else throw new Error(`MVT: unknown wire type ${wire}`);
    }
    fields(cb) {
      while (this.pos < this.buf.length) { const tag = this.varint(); cb(tag >> 3, tag & 7, this); }
    }
  }
  const utf8 = new TextDecoder();
  const zigzag = n => (n % 2 === 1 ? -(n + 1) / 2 : n / 2);
  function packed(bytes) { const p = new Pbf(bytes), out = []; while (p.pos < bytes.length) out.push(p.varint()); return out; }
  function mvtValue(bytes) {
    let v = null;
    new Pbf(bytes).fields((f, w, p) => {
      if (f === 1) v = utf8.decode(p.bytes());
      else if (f === 2) { v = p.view.getFloat32(p.pos, true); p.pos += 4; }
      else if (f === 3) { v = p.view.getFloat64(p.pos, true); p.pos += 8; }
      else if (f === 4) { v = p.varint(); if (v >= 2 ** 63) v -= 2 ** 64; }
      else if (f === 5) v = p.varint();
      else if (f === 6) v = zigzag(p.varint());
      else if (f === 7) v = p.varint() !== 0;
      else p.skip(w);
    });
    return v;
  }
  function mvtGeometry(type, cmds, extent) {
    const lines = [];
    let x = 0, y = 0, line = null;
    for (let i = 0; i < cmds.length;) {
      const id = cmds[i] & 7, count = cmds[i] >> 3;
      i++;
      if (id === 7) { if (line && line.length) line.push(line[0].slice()); continue; }
      for (let k = 0; k < count; k++) {
        x += zigzag(cmds[i++]); y += zigzag(cmds[i++]);
        if (id === 1) { line = []; lines.push(line); }
        line.push([x / extent, y / extent]);
      }
    }
    if (type === 1) {
      const pts = lines.map(l => l[0]);
      return pts.length === 1 ? {type: 'Point', coordinates: pts[0]} : {type: 'MultiPoint', coordinates: pts};
    }
    if (type === 2) return lines.length === 1 ? {type: 'LineString', coordinates: lines[0]} : {type: 'MultiLineString', coordinates: lines};
    const polys = [];
    for (const ring of lines) {
      let area = 0;
      for (let j = 0, n = ring.length, k = n - 1; j < n; k = j++) area += (ring[k][0] - ring[j][0]) * (ring[j][1] + ring[k][1]);
      // MVT 2.1: exterior rings are clockwise on screen (y down): positive surveyor's area here
      if (area < 0 || !polys.length) polys.push([ring]); else polys[polys.length - 1].push(ring);
    }
    return polys.length === 1 ? {type: 'Polygon', coordinates: polys[0]} : {type: 'MultiPolygon', coordinates: polys};
  }
  function parseMvt(arrayBuffer) {
    const features = [];
    new Pbf(new Uint8Array(arrayBuffer)).fields((f, w, p) => {
      if (f !== 3) { p.skip(w); return; }
      const layer = {keys: [], values: [], feats: [], extent: 4096, name: ''};
      new Pbf(p.bytes()).fields((lf, lw, lp) => {
        if (lf === 1) layer.name = utf8.decode(lp.bytes());
        else if (lf === 2) layer.feats.push(lp.bytes());
        else if (lf === 3) layer.keys.push(utf8.decode(lp.bytes()));
        else if (lf === 4) layer.values.push(mvtValue(lp.bytes()));
        else if (lf === 5) layer.extent = lp.varint();
        else lp.skip(lw);
      });
      for (const bytes of layer.feats) {
        let id = null, tags = [], type = 0, cmds = [];
        new Pbf(bytes).fields((ff, fw, fp) => {
          if (ff === 1) id = fp.varint(); else if (ff === 2) tags = packed(fp.bytes());
          else if (ff === 3) type = fp.varint(); else if (ff === 4) cmds = packed(fp.bytes()); else fp.skip(fw);
        });
        if (!type || !cmds.length) continue;
        const properties = {};
        for (let k = 0; k + 1 < tags.length; k += 2) properties[layer.keys[tags[k]]] = layer.values[tags[k + 1]];
        features.push({type: 'Feature', id, properties, geometry: mvtGeometry(type, cmds, layer.extent)});
      }
    });
    return features;
  }
  const mvtLoader = {
    name: 'cim MVT', id: 'cim-mvt', module: 'cim', version: '1', worker: false, binary: true,
    extensions: ['mvt', 'pbf'], mimeTypes: ['application/vnd.mapbox-vector-tile', 'application/x-protobuf'],
    category: 'geometry', options: {mvt: {}},
    parse: async arrayBuffer => parseMvt(arrayBuffer),
    parseSync: arrayBuffer => parseMvt(arrayBuffer)
  };

  cim.mvt = {loader: mvtLoader, parse: parseMvt, Pbf};
})();

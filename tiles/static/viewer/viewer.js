/* The cim "one map" viewer: renders the Deck JSON the server made with pydeck (tiles/viewer.py) through the
   deck.gl bundle of the pydeck wheel (createDeck, globalThis.deck), and adds the layer tree, identify, search,
   measurement and side-by-side comparison. Every request goes to the server that served the page. */
(function () {
  'use strict';
  const config = JSON.parse(document.getElementById('cim-config').textContent);
  const D = globalThis.deck;
  const mapEl = document.getElementById('map');
  const panel = document.getElementById('panel');
  const infoEl = document.getElementById('info');
  const statusEl = document.getElementById('status');
  const ground = config.ground || 0;

  // ------------------------------------------------------------------------------------------------ i18n
  const TEXT = {
    zh: {layers: '图层', search: '搜索地址或名称', go: '搜索', home: '全图', mode2d: '二维', mode3d: '三维',
      opacity: '透明度', distance: '测距', area: '测面', clear: '清除', compare: '对比', compareOff: '结束对比',
      left: '左', right: '右', identify: '查询结果', contains: '所在', nearest: '最近', metres: '米',
      noResult: '无结果', lang: 'EN', measureHint: '单击添加点，双击结束', length: '长度', areaLabel: '面积',
      sqm: '平方米', features: '个要素', close: '关闭', clicked: '点击的要素', loading: '加载中…'},
    en: {layers: 'Layers', search: 'Search address or name', go: 'Search', home: 'Home', mode2d: '2D', mode3d: '3D',
      opacity: 'Opacity', distance: 'Distance', area: 'Area', clear: 'Clear', compare: 'Compare',
      compareOff: 'End compare', left: 'Left', right: 'Right', identify: 'Identify', contains: 'in',
      nearest: 'nearest', metres: 'm', noResult: 'No result', lang: '中文', measureHint: 'Click to add points, double-click to finish',
      length: 'Length', areaLabel: 'Area', sqm: 'm²', features: 'features', close: 'Close', clicked: 'Clicked feature',
      loading: 'Loading…'}
  };
  let lang = (navigator.language || 'zh').toLowerCase().startsWith('en') ? 'en' : 'zh';
  const t = key => TEXT[lang][key] || key;

  const withKey = url => !config.key_query ? url : url + (url.includes('?') ? '&' : '?') + config.key_query;
  const escapeHtml = s => String(s).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));

  // ------------------------------------------------------------------------------------------------ MVT
  // The bundle's MVTLayer only has loaders.gl's worker loader (its worker would come from a CDN), so vector tiles
  // are decoded here: protobuf (Mapbox Vector Tile 2.1) -> GeoJSON features in tile-local coordinates (0..1).
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

  // ------------------------------------------------------------------------------------------------ deck
  // Flat layers are drawn at the terrain's mid height so they meet the 3D Tiles (ellipsoidal heights).
  const functions = {
    cimMvtLoaders: () => [mvtLoader],
    // a map tile outside the data is a 404 by design (docs/http-api.md): an empty tile, not an error
    cimTileError: () => err => { if (!/\(404\)/.test(String(err && err.message || err))) console.error(err); },
    cimBitmapTile: ({ground: z}) => props => {
      const {west, south, east, north} = props.tile.bbox;
      return new D.BitmapLayer(props, {
        data: null, image: props.data,
        bounds: [[west, south, z], [west, north, z], [east, north, z], [east, south, z]],
        parameters: {depthCompare: 'always', depthWriteEnabled: false}
      });
    },
    cimVectorTile: ({ground: z}) => props => {
      if (props.modelMatrix && props.coordinateOrigin) {
        // MVT sub-layers are CARTESIAN (tile units scaled by modelMatrix); the origin's z is in metres (measured)
        props.coordinateOrigin = [props.coordinateOrigin[0], props.coordinateOrigin[1], z];
      }
      return new D.GeoJsonLayer(props);
    }
  };
  const state = {};
  config.tree.forEach(e => { state[e.id] = {visible: e.visible, opacity: 1}; });
  function fitHome() {
    // the server's home view assumes a map size; fit the extent to the real one
    const e = config.extent;
    const width = mapEl.clientWidth || 800, height = mapEl.clientHeight || 600;
    if (!e) return Object.assign({}, config.home, {maxPitch: 85});
    const fit = new D.WebMercatorViewport({width, height}).fitBounds([[e[0], e[1]], [e[2], e[3]]], {padding: 10});
    // the camera turns around the terrain's height, not around the ellipsoid
    return {longitude: fit.longitude, latitude: fit.latitude, zoom: fit.zoom, pitch: 0, bearing: 0, maxPitch: 85,
      position: [0, 0, ground]};
  }
  let viewState = fitHome();
  let compare = null; // {left: id, right: id}
  let measure = null; // {kind: 'distance'|'area', points: [[lon, lat]], done: bool}
  let lastIdentify = null;
  let loadedOnce = false;

  const deckgl = createDeck({
    container: mapEl,
    jsonInput: config.deck,
    tooltip: false,
    customLibraries: null,
    configuration: {functions},
    showError: true
  });
  const baseLayers = (deckgl.props.layers || []).slice();

  function rootId(layer) {
    let l = layer;
    while (l.parent) l = l.parent;
    return l.id;
  }

  function measureLayers() {
    if (!measure || !measure.points.length) return [];
    const pts = measure.points.map(p => [p[0], p[1], ground]);
    const params = {depthCompare: 'always', depthWriteEnabled: false};
    const out = [new D.ScatterplotLayer({id: 'measure-points', data: pts, getPosition: d => d, getRadius: 3,
      radiusMinPixels: 4, getFillColor: [255, 255, 255], stroked: true, getLineColor: [230, 0, 0],
      lineWidthMinPixels: 2, parameters: params})];
    if (measure.kind === 'area' && pts.length >= 3) {
      out.unshift(new D.PolygonLayer({id: 'measure-area', data: [{polygon: pts}], getPolygon: d => d.polygon,
        getFillColor: [230, 0, 0, 60], getLineColor: [230, 0, 0], lineWidthMinPixels: 2, parameters: params}));
    } else if (pts.length >= 2) {
      out.unshift(new D.PathLayer({id: 'measure-line', data: [{path: pts}], getPath: d => d.path,
        getColor: [230, 0, 0], widthMinPixels: 3, parameters: params}));
    }
    return out;
  }

  let viewCache = {key: null, views: null};
  function views() {
    // the same view objects until the mode changes: new views would re-create the controllers
    const key = compare ? 'compare' : (measure ? 'measure' : 'main');
    if (viewCache.key !== key) {
      viewCache = {key, views: compare
        ? [new D.MapView({id: 'left', x: 0, width: '50%', controller: true}),
          new D.MapView({id: 'right', x: '50%', width: '50%', controller: true})]
        : [new D.MapView({id: 'main', controller: {doubleClickZoom: !measure}})]};
    }
    return viewCache.views;
  }

  function refresh() {
    const layers = baseLayers.map(l => l.clone({visible: !!(state[l.id] && state[l.id].visible) ||
        (compare && (l.id === compare.left || l.id === compare.right)),
      opacity: state[l.id] ? state[l.id].opacity : 1}));
    deckgl.setProps({...handlers, layers: layers.concat(measureLayers()), views: views(), viewState,
      layerFilter: ({layer, viewport}) => {
        if (!compare) return true;
        const id = rootId(layer);
        if (id === compare.left) return viewport.id === 'left';
        if (id === compare.right) return viewport.id === 'right';
        return true;
      }});
  }

  // set with every refresh: the bundle's DeckGL re-applies its creation props once it has initialised
  const handlers = {
    onViewStateChange: ({viewState: vs}) => { viewState = vs; deckgl.setProps({viewState}); return vs; },
    getCursor: ({isDragging, isHovering}) => isDragging ? 'grabbing' : (measure || isHovering ? 'crosshair' : 'grab'),
    onError: err => console.error(err)
  };
  refresh();

  // ------------------------------------------------------------------------------------------------ identify
  function fmt(v) {
    if (v === null || v === undefined) return '';
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(2);
    return String(v);
  }

  function propsTable(props) {
    const rows = Object.entries(props || {}).filter(([k]) => k !== 'layerName')
      .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(fmt(v))}</td></tr>`);
    return `<table>${rows.join('')}</table>`;
  }

  function showInfo(picked, result) {
    const parts = [`<header><b>${t('identify')}</b><button type="button" class="close" aria-label="${t('close')}">×</button></header>`];
    if (picked) {
      parts.push(`<section class="hit picked"><h4>${t('clicked')}: ${escapeHtml(picked.title)}</h4>${propsTable(picked.properties)}</section>`);
    }
    const results = (result && result.results) || [];
    results.forEach(r => {
      const rel = r.relation === 'contains' ? t('contains') : `${t('nearest')} ${fmt(r.distance_m)} ${t('metres')}`;
      parts.push(`<section class="hit" data-layer="${escapeHtml(r.layer)}"><h4>${escapeHtml(r.title)} <small>${escapeHtml(rel)}</small></h4>${propsTable(r.properties)}</section>`);
    });
    if (!picked && !results.length) parts.push(`<p>${t('noResult')}</p>`);
    infoEl.innerHTML = parts.join('');
    infoEl.hidden = false;
    infoEl.querySelector('.close').onclick = () => { infoEl.hidden = true; };
  }

  async function identifyAt(lon, lat, picked) {
    const url = withKey(`${config.routes.identify}?lon=${lon.toFixed(7)}&lat=${lat.toFixed(7)}`);
    const resp = await fetch(url);
    const result = resp.ok ? await resp.json() : {results: []};
    lastIdentify = {lon, lat, picked, result};
    showInfo(picked, result);
    return result;
  }

  // Clicks are read from the DOM: under software rendering a busy frame can stretch a tap past the gesture
  // recogniser's time limit, and a click must never be lost.
  let down = null;
  mapEl.addEventListener('pointerdown', ev => { if (ev.button === 0) down = {x: ev.clientX, y: ev.clientY}; });
  mapEl.addEventListener('pointerup', ev => {
    if (!down || ev.button !== 0) return;
    const moved = Math.hypot(ev.clientX - down.x, ev.clientY - down.y);
    down = null;
    if (moved > 5) return;
    const r = mapEl.getBoundingClientRect();
    try { clickAt(ev.clientX - r.left, ev.clientY - r.top); } catch (err) { console.error(err); }
  });
  mapEl.addEventListener('dblclick', () => {
    if (measure && !measure.done) { measure.done = true; updateMeasure(); refresh(); }
  });

  function viewportAt(x, y) {
    const vps = deckgl.getViewports();
    return vps.find(v => x >= v.x && x < v.x + v.width && y >= v.y && y < v.y + v.height) || vps[0];
  }

  function groundCoordinate(x, y) {
    const vp = viewportAt(x, y);
    return vp ? vp.unproject([x - vp.x, y - vp.y], {targetZ: ground}).slice(0, 2) : null;
  }

  function clickAt(x, y) {
    if (measure && !measure.done) {
      const c = groundCoordinate(x, y);
      if (c) { measure.points.push(c); updateMeasure(); refresh(); }
      return;
    }
    const info = deckgl.pickObject({x, y, radius: 2});
    let picked = null;
    if (info && info.layer && info.object && info.object.properties && String(rootId(info.layer)).startsWith('layer:')) {
      const entry = config.tree.find(e => e.id === rootId(info.layer));
      picked = {title: entry ? entry.title : rootId(info.layer), properties: info.object.properties};
    }
    // a 3D surface (roof, wall, terrain) under the cursor gives its own position; else the ground height
    const hit = deckgl.pickObject({x, y, radius: 0, unproject3D: true});
    const c = hit && hit.coordinate && hit.coordinate.length === 3 && String(rootId(hit.layer)).startsWith('model:')
      ? hit.coordinate : groundCoordinate(x, y);
    if (c) identifyAt(c[0], c[1], picked);
  }

  // ------------------------------------------------------------------------------------------------ measurement
  const R = 6371008.8;
  const rad = d => d * Math.PI / 180;
  function pathLength(pts) {
    let s = 0;
    for (let i = 1; i < pts.length; i++) {
      const [l1, p1] = pts[i - 1], [l2, p2] = pts[i];
      const a = Math.sin(rad(p2 - p1) / 2) ** 2 + Math.cos(rad(p1)) * Math.cos(rad(p2)) * Math.sin(rad(l2 - l1) / 2) ** 2;
      s += 2 * R * Math.asin(Math.min(1, Math.sqrt(a)));
    }
    return s;
  }
  function polygonArea(pts) {
    // spherical excess of the ring (adequate for a city; exact on the sphere)
    let s = 0;
    for (let i = 0; i < pts.length; i++) {
      const [l1, p1] = pts[i], [l2, p2] = pts[(i + 1) % pts.length];
      s += rad(l2 - l1) * (2 + Math.sin(rad(p1)) + Math.sin(rad(p2)));
    }
    return Math.abs(s * R * R / 2);
  }
  function updateMeasure() {
    if (!measure) { statusEl.textContent = ''; return; }
    const pts = measure.points;
    let text = t('measureHint');
    if (measure.kind === 'distance' && pts.length >= 2) text = `${t('length')}: ${pathLength(pts).toFixed(1)} ${t('metres')}`;
    if (measure.kind === 'area' && pts.length >= 3) {
      text = `${t('areaLabel')}: ${polygonArea(pts).toFixed(0)} ${t('sqm')} · ${t('length')}: ${pathLength(pts.concat([pts[0]])).toFixed(1)} ${t('metres')}`;
    }
    statusEl.textContent = text;
    measure.result = text;
  }
  function startMeasure(kind) {
    measure = {kind, points: [], done: false};
    updateMeasure();
    refresh();
  }

  // ------------------------------------------------------------------------------------------------ view
  function setMode(mode) {
    viewState = Object.assign({}, viewState, {pitch: mode === '3d' ? 55 : 0, bearing: mode === '3d' ? -20 : 0,
      transitionDuration: 0});
    refresh();
  }
  function goHome() { viewState = fitHome(); refresh(); }
  function flyTo(lon, lat, zoom) {
    viewState = Object.assign({}, viewState, {longitude: lon, latitude: lat, zoom: zoom || 18});
    refresh();
  }

  // ------------------------------------------------------------------------------------------------ search
  async function doSearch(q) {
    const list = panel.querySelector('.search-results');
    list.innerHTML = '';
    if (!q.trim()) return [];
    const geocoded = globalThis.cimAddresses && await globalThis.cimAddresses.search(q);  // addresses.js
    if (geocoded) return geocoded;
    const resp = await fetch(withKey(`${config.routes.search}?q=${encodeURIComponent(q)}`));
    const results = resp.ok ? (await resp.json()).results : [];
    if (!results.length) list.innerHTML = `<li>${t('noResult')}</li>`;
    results.forEach(r => {
      const li = document.createElement('li');
      li.innerHTML = `<b>${escapeHtml(r.label || r.value)}</b> <small>${escapeHtml(r.title)}${r.field !== 'name' ? ' · ' + escapeHtml(r.value) : ''}</small>`;
      li.onclick = () => { flyTo(r.lon, r.lat, 18); identifyAt(r.lon, r.lat, null); };
      list.appendChild(li);
    });
    if (results.length) flyTo(results[0].lon, results[0].lat, 18);
    return results;
  }

  // ------------------------------------------------------------------------------------------------ panel
  function legendSwatch(e) {
    if (e.kind !== 'vector') return `<span class="swatch ${e.kind}"></span>`;
    const [r, g, b] = e.color;
    return `<span class="swatch ${e.geometry}" style="--c: rgb(${r},${g},${b})"></span>`;
  }
  function renderPanel() {
    const groups = {};
    config.tree.forEach(e => { (groups[e.group] = groups[e.group] || []).push(e); });
    const order = Object.keys(config.groups).filter(g => groups[g]);
    const options = config.tree.map(e => `<option value="${escapeHtml(e.id)}">${escapeHtml(e.title)}</option>`).join('');
    panel.innerHTML = `
      <header><h1>${escapeHtml(config.title)}</h1><button type="button" class="lang">${t('lang')}</button></header>
      <form class="search"><input type="search" name="q" placeholder="${t('search')}" aria-label="${t('search')}">
        <button type="submit">${t('go')}</button></form>
      <ul class="search-results"></ul>
      <div class="tools">
        <button type="button" data-tool="home">${t('home')}</button>
        <button type="button" data-tool="2d">${t('mode2d')}</button>
        <button type="button" data-tool="3d">${t('mode3d')}</button>
        <button type="button" data-tool="distance">${t('distance')}</button>
        <button type="button" data-tool="area">${t('area')}</button>
        <button type="button" data-tool="clear">${t('clear')}</button>
      </div>
      <details class="compare"><summary>${t('compare')}</summary>
        <label>${t('left')} <select name="left">${options}</select></label>
        <label>${t('right')} <select name="right">${options}</select></label>
        <button type="button" data-tool="compare">${t('compare')}</button>
        <button type="button" data-tool="compare-off">${t('compareOff')}</button>
      </details>
      <h2>${t('layers')}</h2>
      <div class="tree">${order.map(g => `
        <fieldset class="group" data-group="${g}"><legend>${escapeHtml(config.groups[g][lang])}</legend>
        ${groups[g].map(e => `
          <div class="layer" data-id="${escapeHtml(e.id)}">
            <label title="${escapeHtml(e.name)} · ${escapeHtml(e.security || '')}">
              <input type="checkbox" ${state[e.id].visible ? 'checked' : ''}> ${legendSwatch(e)}
              <span class="title">${escapeHtml(e.title)}</span>
              ${e.feature_count != null ? `<small>${e.feature_count} ${t('features')}</small>` : ''}
              ${e.security && e.security !== 'public' ? `<small class="sec ${e.security}">${escapeHtml(e.security)}</small>` : ''}
            </label>
            <input type="range" min="0" max="1" step="0.05" value="${state[e.id].opacity}" aria-label="${t('opacity')}">
          </div>`).join('')}
        </fieldset>`).join('')}
      </div>`;
    panel.querySelector('.lang').onclick = () => { lang = lang === 'zh' ? 'en' : 'zh'; document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en'; renderPanel(); };
    panel.querySelector('form.search').onsubmit = ev => { ev.preventDefault(); doSearch(ev.target.q.value); };
    panel.querySelectorAll('.layer').forEach(div => {
      const id = div.dataset.id;
      div.querySelector('input[type=checkbox]').onchange = ev => setVisible(id, ev.target.checked);
      div.querySelector('input[type=range]').oninput = ev => { state[id].opacity = Number(ev.target.value); refresh(); };
    });
    panel.querySelectorAll('button[data-tool]').forEach(b => {
      b.onclick = () => {
        const tool = b.dataset.tool;
        if (tool === 'home') goHome();
        else if (tool === '2d' || tool === '3d') setMode(tool);
        else if (tool === 'distance' || tool === 'area') startMeasure(tool);
        else if (tool === 'clear') { measure = null; updateMeasure(); refresh(); }
        else if (tool === 'compare') setCompare(panel.querySelector('select[name=left]').value, panel.querySelector('select[name=right]').value);
        else if (tool === 'compare-off') setCompare(null, null);
      };
    });
  }
  function setVisible(id, visible) {
    if (!state[id]) throw new Error(`no layer ${id}`);
    state[id].visible = visible;
    const box = panel.querySelector(`.layer[data-id="${CSS.escape(id)}"] input[type=checkbox]`);
    if (box) box.checked = visible;
    refresh();
  }
  function setCompare(left, right) {
    compare = left && right ? {left, right} : null;
    refresh();
  }
  renderPanel();

  // ------------------------------------------------------------------------------------------------ readiness
  function loaded() {
    const lm = deckgl.layerManager;
    if (!lm || !deckgl.isInitialized) return false;
    return lm.getLayers().filter(l => !l.parent && l.props.visible).every(l => l.isLoaded);
  }
  const timer = setInterval(() => {
    if (loaded()) { loadedOnce = true; statusEl.dataset.loaded = 'true'; clearInterval(timer); refresh(); }
  }, 200);

  globalThis.cimViewer = {
    deck: deckgl, config, state, loaded, refresh, setVisible, setMode, goHome, flyTo, identifyAt, doSearch,
    startMeasure, setCompare,
    get measure() { return measure; },
    get lastIdentify() { return lastIdentify; },
    get loadedOnce() { return loadedOnce; },
    project: (lon, lat, z) => deckgl.getViewports()[0].project([lon, lat, z === undefined ? ground : z])
  };
})();

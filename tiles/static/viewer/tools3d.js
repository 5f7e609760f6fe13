/* 3D tools: scale bar and north arrow, coordinates in CGCS2000 and the model's CRS (/viewer/coords), height and
   vertical-distance measurement on the 3D surfaces, annotations (批注) pinned in 3D and saved per key, a fly-through
   along a drawn path, and export of the view as PNG. */
(function () {
  'use strict';
  const D = globalThis.deck;
  const esc = cim.escapeHtml;
  const mapEl = document.getElementById('map');
  const statusEl = document.getElementById('status');
  let overlay = null;
  let annotations = [];
  let tool = null;       // {kind: 'height'|'vertical'|'annotate'|'flight', points: []}
  let flight = null;     // {path, t0, ...}
  let lastCoords = null;

  cim.addText({
    zh: {height: '测高', vertical: '垂直距离', annotate: '批注', flight: '飞行', exportPng: '导出图片',
      heightHint: '单击建筑或地面', verticalHint: '单击两点', annotateHint: '单击要批注的位置',
      flightHint: '单击添加航点，双击开始飞行', aboveGround: '离地高度', elevation: '高程', dz: '高差',
      horizontal: '水平距离', slope: '斜距', annotationText: '批注内容', add: '添加', north: '北'},
    en: {height: 'Height', vertical: 'Vertical', annotate: 'Annotate', flight: 'Fly', exportPng: 'Export PNG',
      heightHint: 'Click a building or the ground', verticalHint: 'Click two points',
      annotateHint: 'Click the place to annotate', flightHint: 'Click waypoints, double-click to fly',
      aboveGround: 'Above ground', elevation: 'Elevation', dz: 'Height difference', horizontal: 'Horizontal',
      slope: 'Slope distance', annotationText: 'Annotation', add: 'Add', north: 'N'}
  });

  // ------------------------------------------------------------------------------------------------ overlay
  function ensureOverlay() {
    if (overlay) return;
    overlay = document.createElement('div');
    overlay.className = 'map-overlay';
    overlay.innerHTML = `<div class="scale-bar"><div class="bar"></div><span></span></div>
      <button type="button" class="north-arrow" title="${cim.t('north')}"><span>▲</span><b>${cim.t('north')}</b></button>
      <div class="coords"></div><div class="pins"></div>`;
    mapEl.appendChild(overlay);
    overlay.querySelector('.north-arrow').onclick = () => cim.viewer.setViewState({bearing: 0});
  }

  function haversine(a, b) {
    const R = 6371008.8, rad = d => d * Math.PI / 180;
    const h = Math.sin(rad(b[1] - a[1]) / 2) ** 2 + Math.cos(rad(a[1])) * Math.cos(rad(b[1])) * Math.sin(rad(b[0] - a[0]) / 2) ** 2;
    return 2 * R * Math.asin(Math.min(1, Math.sqrt(h)));
  }

  /** A round length (1, 2 or 5 x 10^n metres) that is at most 120 px at the bottom of the map. */
  function scale() {
    const v = cim.viewer, w = mapEl.clientWidth, h = mapEl.clientHeight;
    const a = v.groundCoordinate(w / 2 - 50, h - 30), b = v.groundCoordinate(w / 2 + 50, h - 30);
    if (!a || !b) return null;
    const perPx = haversine(a, b) / 100;
    const target = perPx * 120;
    const p = 10 ** Math.floor(Math.log10(target));
    const metres = [5, 2, 1].map(k => k * p).find(m => m <= target) || p;
    return {metres, px: metres / perPx};
  }

  function updateOverlay() {
    ensureOverlay();
    const s = scale();
    const bar = overlay.querySelector('.scale-bar');
    if (s) {
      bar.querySelector('.bar').style.width = `${s.px.toFixed(0)}px`;
      bar.querySelector('span').textContent = s.metres >= 1000 ? `${s.metres / 1000} km` : `${s.metres} m`;
      bar.dataset.metres = String(s.metres);
      bar.dataset.px = s.px.toFixed(2);
    }
    const bearing = cim.viewer.viewState.bearing || 0;
    overlay.querySelector('.north-arrow').style.transform = `rotate(${-bearing}deg)`;
    overlay.querySelector('.north-arrow').dataset.bearing = String(bearing);
    placePins();
  }

  // ------------------------------------------------------------------------------------------------ coordinates
  let coordTimer = null;
  async function coordsAt(lon, lat, height) {
    const q = `lon=${lon.toFixed(8)}&lat=${lat.toFixed(8)}`;
    const doc = await cim.fetchJson(`${cim.config.routes.coords}?${q}`);
    if (height != null) doc.height = height;
    return doc;
  }
  function showCoords(doc) {
    lastCoords = doc;
    ensureOverlay();
    const el = overlay.querySelector('.coords');
    const proj = doc.model ? ` · ${esc(doc.model.crs)}: X ${doc.model.x.toFixed(3)} Y ${doc.model.y.toFixed(3)}` : '';
    const h = doc.height != null ? ` · H ${doc.height.toFixed(2)} m` : (doc.ground_m != null ? ` · ${cim.t('elevation')} ${doc.ground_m.toFixed(2)} m` : '');
    el.innerHTML = `CGCS2000 ${doc.lon.toFixed(7)}°, ${doc.lat.toFixed(7)}°${h}${proj}`;
  }
  mapEl.addEventListener('pointermove', ev => {
    if (!cim.config.routes.coords) return;
    clearTimeout(coordTimer);
    coordTimer = setTimeout(() => {
      const r = mapEl.getBoundingClientRect();
      const c = cim.viewer.groundCoordinate(ev.clientX - r.left, ev.clientY - r.top);
      if (c) coordsAt(c[0], c[1]).then(showCoords).catch(() => {});
    }, 250);
  });

  // ------------------------------------------------------------------------------------------------ height tools
  function status(text) { statusEl.textContent = text; }
  async function measureHeight(place) {
    const [lon, lat, z] = place.coordinate;
    const doc = await coordsAt(lon, lat, z);
    const result = {lon, lat, z, ground: doc.ground_m, above: doc.ground_m == null ? null : z - doc.ground_m};
    status(`${cim.t('elevation')}: ${z.toFixed(2)} m` + (result.above != null ? ` · ${cim.t('aboveGround')}: ${result.above.toFixed(2)} m` : ''));
    tool.result = result;
    showCoords(doc);
    return result;
  }
  function measureVertical() {
    const [a, b] = tool.points;
    const horizontal = haversine(a, b), dz = b[2] - a[2];
    tool.result = {dz, horizontal, slope: Math.hypot(horizontal, dz)};
    status(`${cim.t('dz')}: ${dz.toFixed(2)} m · ${cim.t('horizontal')}: ${horizontal.toFixed(2)} m · ${cim.t('slope')}: ${tool.result.slope.toFixed(2)} m`);
    return tool.result;
  }

  async function onToolClick({x, y}) {
    if (!tool) return;
    const place = cim.viewer.placeAt(x, y);
    if (!place) return;
    if (tool.kind === 'height') { await measureHeight(place); return; }
    if (tool.kind === 'vertical') {
      tool.points.push(place.coordinate);
      if (tool.points.length === 2) { measureVertical(); tool.points = tool.points.slice(); tool.done = true; cim.viewer.setClickHandler(null); }
      cim.viewer.refresh();
      return;
    }
    if (tool.kind === 'annotate') { askAnnotation(place.coordinate); return; }
    if (tool.kind === 'flight') { tool.points.push(place.coordinate); cim.viewer.refresh(); }
  }

  function startTool(kind) {
    stopFlight();
    tool = {kind, points: [], done: false, result: null};
    cim.viewer.setClickHandler(onToolClick);
    status(cim.t(`${kind}Hint`));
  }
  function stopTool() {
    if (tool && cim.viewer.clickHandler === onToolClick) cim.viewer.setClickHandler(null);
    tool = null;
    cim.viewer.refresh();
  }

  // ------------------------------------------------------------------------------------------------ annotations
  async function loadAnnotations() {
    try { annotations = (await cim.fetchJson(cim.config.routes.annotations)).annotations; } catch (err) { annotations = []; }
    cim.viewer.refresh();
    placePins();
  }
  async function addAnnotation(lon, lat, height, text) {
    const saved = await cim.fetchJson(cim.config.routes.annotations, {method: 'POST', body: {lon, lat, height, text}});
    annotations.push(saved);
    cim.viewer.refresh();
    placePins();
    return saved;
  }
  async function removeAnnotation(id) {
    await cim.fetchJson(`${cim.config.routes.annotations}/${id}`, {method: 'DELETE'});
    annotations = annotations.filter(a => a.id !== id);
    cim.viewer.refresh();
    placePins();
  }
  function askAnnotation(c) {
    ensureOverlay();
    const form = document.createElement('form');
    form.className = 'annotation-form';
    form.innerHTML = `<input name="text" placeholder="${esc(cim.t('annotationText'))}" required><button type="submit">${cim.t('add')}</button>`;
    statusEl.textContent = '';
    statusEl.appendChild(form);
    form.text.focus();
    form.onsubmit = ev => {
      ev.preventDefault();
      addAnnotation(c[0], c[1], c[2], form.text.value).catch(err => { statusEl.textContent = String(err.message); });
      form.remove();
      stopTool();
    };
  }
  function placePins() {
    if (!overlay) return;
    const pins = overlay.querySelector('.pins');
    const vp = cim.viewer.viewport();
    if (!vp) return;
    pins.innerHTML = annotations.map(a => {
      const [x, y] = vp.project([a.lon, a.lat, a.height]);
      const inside = x >= 0 && y >= 0 && x <= vp.width && y <= vp.height;
      return inside ? `<div class="pin" data-id="${a.id}" style="left:${x.toFixed(1)}px;top:${y.toFixed(1)}px">${esc(a.text)}<button type="button" aria-label="×">×</button></div>` : '';
    }).join('');
    pins.querySelectorAll('.pin button').forEach(b => {
      b.onclick = ev => { ev.stopPropagation(); removeAnnotation(Number(b.parentElement.dataset.id)); };
    });
  }

  // ------------------------------------------------------------------------------------------------ fly-through
  function stopFlight() { if (flight) { cancelAnimationFrame(flight.frame); flight = null; } }
  /** Fly along [[lon, lat, z?]...] at `speed` m/s, looking along the path from `pitch` degrees. */
  function fly(path, opts) {
    stopFlight();
    const o = Object.assign({speed: 80, pitch: 60, zoom: 17.5}, opts || {});
    const legs = [];
    let total = 0;
    for (let i = 1; i < path.length; i++) {
      const d = haversine(path[i - 1], path[i]);
      const y = Math.sin((path[i][0] - path[i - 1][0]) * Math.PI / 180) * Math.cos(path[i][1] * Math.PI / 180);
      const x = Math.cos(path[i - 1][1] * Math.PI / 180) * Math.sin(path[i][1] * Math.PI / 180) -
        Math.sin(path[i - 1][1] * Math.PI / 180) * Math.cos(path[i][1] * Math.PI / 180) * Math.cos((path[i][0] - path[i - 1][0]) * Math.PI / 180);
      legs.push({a: path[i - 1], b: path[i], start: total, length: d, bearing: Math.atan2(y, x) * 180 / Math.PI});
      total += d;
    }
    if (!legs.length) return Promise.resolve(null);
    return new Promise(resolve => {
      flight = {legs, total, t0: performance.now(), done: false};
      const step = now => {
        if (!flight) { resolve(null); return; }
        const s = Math.min(total, (now - flight.t0) / 1000 * o.speed);
        const leg = legs.find(l => s <= l.start + l.length) || legs[legs.length - 1];
        const f = leg.length ? (s - leg.start) / leg.length : 1;
        cim.viewer.setViewState({longitude: leg.a[0] + (leg.b[0] - leg.a[0]) * f, latitude: leg.a[1] + (leg.b[1] - leg.a[1]) * f,
          bearing: leg.bearing, pitch: o.pitch, zoom: o.zoom, transitionDuration: 0});
        if (s >= total) { const done = flight; flight = null; resolve({distance: total, legs: done.legs.length}); return; }
        flight.frame = requestAnimationFrame(step);
      };
      flight.frame = requestAnimationFrame(step);
    });
  }

  // ------------------------------------------------------------------------------------------------ export
  /** The map as a PNG data URL (drawn now, with the scale bar and north arrow); also offered as a download. */
  function exportPng(download) {
    const d = cim.viewer.deck;
    d.redraw('export');
    const src = d.getCanvas();
    const out = document.createElement('canvas');
    out.width = src.width;
    out.height = src.height;
    const g = out.getContext('2d');
    g.drawImage(src, 0, 0);
    const s = scale();
    const k = src.width / mapEl.clientWidth;
    if (s) {
      g.fillStyle = 'rgba(255,255,255,0.85)';
      g.fillRect(8 * k, src.height - 34 * k, (s.px + 70) * k, 26 * k);
      g.fillStyle = '#222';
      g.fillRect(14 * k, src.height - 16 * k, s.px * k, 4 * k);
      g.font = `${12 * k}px sans-serif`;
      g.fillText(s.metres >= 1000 ? `${s.metres / 1000} km` : `${s.metres} m`, (20 + s.px) * k, src.height - 12 * k);
    }
    const url = out.toDataURL('image/png');
    if (download !== false) {
      const a = document.createElement('a');
      a.href = url;
      a.download = 'cim-view.png';
      a.click();
    }
    return url;
  }

  cim.tools3d = {scale, coordsAt, startTool, stopTool, fly, stopFlight, exportPng, addAnnotation, removeAnnotation,
    loadAnnotations, get annotations() { return annotations.slice(); }, get tool() { return tool; },
    get lastCoords() { return lastCoords; }, get flying() { return !!flight; }};
  cim.register({
    id: 'tools3d', order: 35,
    tools: [{id: 'height', title: {zh: '测高', en: 'Height'}, run: () => startTool('height')},
      {id: 'vertical', title: {zh: '垂直距离', en: 'Vertical'}, run: () => startTool('vertical')},
      {id: 'annotate', title: {zh: '批注', en: 'Annotate'}, run: () => startTool('annotate')},
      {id: 'flight', title: {zh: '飞行', en: 'Fly'}, run: () => startTool('flight')},
      {id: 'export', title: {zh: '导出图片', en: 'Export PNG'}, run: () => exportPng(true)}],
    start() {
      ensureOverlay();
      cim.on('view', updateOverlay);
      let last = 0;
      cim.on('render', () => { const now = Date.now(); if (now - last > 150) { last = now; updateOverlay(); } });
      cim.on('dblclick', () => {
        if (tool && tool.kind === 'flight' && tool.points.length >= 2) {
          const path = tool.points.slice();
          stopTool();
          fly(path);
        }
      });
      setTimeout(updateOverlay, 0);
      loadAnnotations();
    },
    layers() {
      const out = [];
      const pts = tool && tool.points.length ? tool.points : [];
      if (pts.length) {
        out.push(new D.PathLayer({id: 'tool-path', data: [{path: pts}], getPath: d => d.path, getColor: [0, 120, 255],
          widthMinPixels: 3, parameters: {depthCompare: 'always'}}));
        out.push(new D.ScatterplotLayer({id: 'tool-points', data: pts, getPosition: d => d, radiusMinPixels: 5,
          getFillColor: [0, 120, 255], parameters: {depthCompare: 'always'}}));
      }
      if (annotations.length) {
        out.push(new D.ScatterplotLayer({id: 'annotation-pins', data: annotations, getPosition: a => [a.lon, a.lat, a.height],
          radiusMinPixels: 5, getFillColor: [255, 200, 0], stroked: true, getLineColor: [80, 60, 0], lineWidthMinPixels: 1,
          parameters: {depthCompare: 'always'}}));
      }
      return out;
    }
  });
})();

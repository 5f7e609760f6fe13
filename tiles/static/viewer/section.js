/* Section (剖切): the 3D models cut by a plane or a box (CJJ/T 315-2022 §4.3.5).

   A section is up to six planes, each a point (lon, lat, height in metres) and an outward normal (east, north, up);
   a fragment of a model on the outer side of any plane is discarded, so one plane cuts a model in two and six planes
   (`box`) keep what is inside a box. The cut is a deck.gl LayerExtension on every 3D Tiles layer (the bundle does
   not export deck.gl's own ClipExtension, and that one clips in 2D only): its shader module compares each fragment's
   position in deck.gl's common space with the planes, and its `draw` places the planes in the common space of each
   tile's own sub-layer (`Layer.projectPosition` from lon/lat, float64 on the CPU), so they are exact to the float32
   precision of the tile's frame, not of the world. The terrain is cut only with `{terrain: true}`.

   Cut faces are capped: while a section is on, a model's faces seen from behind (`!gl_FrontFacing`) are drawn in
   one flat colour (`capColor`, RGB 0-255; `{caps: false}` turns it off). Through a cut, only the inside of a closed
   mesh shows its back faces, so the cut opening is filled with that colour as a cap would fill it (the colour lies
   on the inner walls and floor behind the plane, not on the plane itself: right on screen, not in the depth
   buffer). An open mesh (an oblique-photography surface) seen from below shows the colour too while a section is
   on.

   API: `cim.section.plane({lon, lat, height, normal})`, `cim.section.vertical(a, b, side)`, `cim.section.horizontal(
   height)`, `cim.section.box({west, south, east, north, bottom, top})`, `cim.section.clear()`, `cim.section.planes`;
   each takes options `{terrain, caps, capColor}` last.
   Tools: a vertical plane through two clicked points (the half on the camera's side is cut away), a horizontal cut
   at a height, a box around two clicked corners. */
(function () {
  'use strict';
  const D = globalThis.deck;
  const MAX = 6;
  const LNGLAT = D.COORDINATE_SYSTEM ? D.COORDINATE_SYSTEM.LNGLAT : 1;

  cim.addText({
    zh: {section: '剖切', sectionPlane: '竖切面', sectionHeight: '水平切', sectionBox: '剖切盒', sectionClear: '取消剖切',
      sectionHint: '单击两点定切面（剖去靠近视点的一侧）', sectionBoxHint: '单击两个对角点定剖切盒', sectionTerrain: '同时剖切地形',
      sectionTop: '高程（米）', sectionApply: '切', sectionCaps: '剖面封闭着色'},
    en: {section: 'Section', sectionPlane: 'Vertical cut', sectionHeight: 'Horizontal cut', sectionBox: 'Section box',
      sectionClear: 'No section', sectionHint: 'Click two points for the cutting plane (the side towards the camera is cut away)',
      sectionBoxHint: 'Click two opposite corners of the box', sectionTerrain: 'cut the terrain too',
      sectionTop: 'Height (m)', sectionApply: 'Cut', sectionCaps: 'fill the cut faces'}
  });

  const decl = [...Array(MAX).keys()].map(i => `  vec4 p${i};`).join('\n') + '\n  vec4 cap;';
  const tests = [...Array(MAX).keys()].map(i =>
    `  if (section.count > ${i}.5 && dot(section.p${i}.xyz, p) + section.p${i}.w > 0.0) return true;`).join('\n');
  const fs = `
layout(std140) uniform sectionUniforms {
${decl}
  float count;
} section;

bool section_cut(vec3 p) {
${tests}
  return false;
}
`;
  const uniformTypes = {};
  for (let i = 0; i < MAX; i++) uniformTypes[`p${i}`] = 'vec4<f32>';
  uniformTypes.cap = 'vec4<f32>';  // rgb 0..1, a: 1 when cut faces are capped
  uniformTypes.count = 'f32';
  const shaderModule = {name: 'section', fs, uniformTypes};
  const inject = {
    'vs:#decl': 'out vec3 section_position;',
    'vs:DECKGL_FILTER_GL_POSITION': '  section_position = geometry.position.xyz;',
    'fs:#decl': 'in vec3 section_position;',
    // before the picking module's own filter (order 99): picking colours stay as they are
    'fs:DECKGL_FILTER_COLOR': '  if (section_cut(section_position)) discard;\n'
      + '  if (section.count > 0.5 && section.cap.a > 0.5 && !gl_FrontFacing) color = vec4(section.cap.rgb, color.a);'
  };

  // metres per degree of latitude / longitude on the GRS80 ellipsoid at a latitude (for directions only)
  const mPerDegLat = lat => 111132.954 - 559.822 * Math.cos(2 * lat * Math.PI / 180) + 1.175 * Math.cos(4 * lat * Math.PI / 180);
  const mPerDegLon = lat => 111412.84 * Math.cos(lat * Math.PI / 180) - 93.5 * Math.cos(3 * lat * Math.PI / 180);

  class SectionExtension extends D.LayerExtension {
    getShaders() { return {modules: [shaderModule], inject}; }
    draw() {
      const planes = this.props.sectionPlanes || [];
      const count = Math.min(planes.length, MAX);
      const u = {count, cap: [capColor[0] / 255, capColor[1] / 255, capColor[2] / 255, caps && count ? 1 : 0]};
      const from = {fromCoordinateSystem: LNGLAT, fromCoordinateOrigin: [0, 0, 0], modelMatrix: null};
      for (let i = 0; i < MAX; i++) {
        const pl = planes[i];
        if (!pl) { u[`p${i}`] = [0, 0, 0, 0]; continue; }
        // the plane's point and a point 10 m along its normal, in this (sub-)layer's common space
        const s = 10;
        const p = this.projectPosition([pl.lon, pl.lat, pl.height], from);
        const q = this.projectPosition([pl.lon + pl.normal[0] * s / mPerDegLon(pl.lat),
          pl.lat + pl.normal[1] * s / mPerDegLat(pl.lat), pl.height + pl.normal[2] * s], from);
        let n = [q[0] - p[0], q[1] - p[1], q[2] - p[2]];
        const len = Math.hypot(n[0], n[1], n[2]) || 1;
        n = n.map(c => c / len);
        u[`p${i}`] = [n[0], n[1], n[2], -(n[0] * p[0] + n[1] * p[1] + n[2] * p[2])];
      }
      this.setShaderModuleProps({section: u});
    }
  }
  SectionExtension.extensionName = 'SectionExtension';
  SectionExtension.defaultProps = {sectionPlanes: {type: 'array', value: [], compare: true}};
  const extension = new SectionExtension();

  let planes = [];
  let withTerrain = false;
  let caps = true;
  let capColor = [232, 118, 74];

  function apply(list, opts) {
    if (list.length > MAX) throw new Error(`a section has at most ${MAX} planes, not ${list.length}`);
    for (const pl of list) {
      if (![pl.lon, pl.lat, pl.height].every(Number.isFinite) || !Array.isArray(pl.normal) || pl.normal.length !== 3)
        throw new Error('a section plane needs lon, lat, height and normal [east, north, up]');
    }
    planes = list.map(pl => ({lon: pl.lon, lat: pl.lat, height: pl.height, normal: pl.normal.slice()}));
    if (opts && 'terrain' in opts) withTerrain = !!opts.terrain;
    if (opts && 'caps' in opts) caps = !!opts.caps;
    if (opts && opts.capColor) {
      if (opts.capColor.length !== 3 || !opts.capColor.every(c => Number.isFinite(c) && c >= 0 && c <= 255))
        throw new Error(`capColor must be [r, g, b] in 0-255, not ${JSON.stringify(opts.capColor)}`);
      capColor = opts.capColor.slice();
    }
    cim.viewer.refresh();
    cim.emit('section', planes);
    return planes;
  }

  /** Props every layer-tree entry's deck.gl layer gets (map.js): the planes for 3D Tiles layers. */
  function layerProps(entry) {
    if (entry.kind !== '3dtiles') return null;
    return {sectionPlanes: entry.part === 'terrain' && !withTerrain ? [] : planes};
  }

  function plane(p, opts) { return apply([p], opts); }
  function horizontal(height, opts) {
    const c = cim.viewer.viewState;
    return apply([{lon: c.longitude, lat: c.latitude, height, normal: [0, 0, 1]}], opts);
  }
  /** The vertical plane through a and b ([lon, lat]); the half on `side` ([lon, lat], default: the camera) goes. */
  function vertical(a, b, side, opts) {
    const lat = (a[1] + b[1]) / 2;
    const dx = (b[0] - a[0]) * mPerDegLon(lat), dy = (b[1] - a[1]) * mPerDegLat(lat);
    let n = [-dy, dx];
    const s = side || [cim.viewer.viewState.longitude, cim.viewer.viewState.latitude];
    const sx = (s[0] - a[0]) * mPerDegLon(lat), sy = (s[1] - a[1]) * mPerDegLat(lat);
    if (n[0] * sx + n[1] * sy < 0) n = [-n[0], -n[1]];
    const len = Math.hypot(n[0], n[1]) || 1;
    return apply([{lon: a[0], lat: a[1], height: 0, normal: [n[0] / len, n[1] / len, 0]}], opts);
  }
  function box(b, opts) {
    const lon = (b.west + b.east) / 2, lat = (b.south + b.north) / 2, h = (b.bottom + b.top) / 2;
    return apply([
      {lon: b.east, lat, height: h, normal: [1, 0, 0]}, {lon: b.west, lat, height: h, normal: [-1, 0, 0]},
      {lon, lat: b.north, height: h, normal: [0, 1, 0]}, {lon, lat: b.south, height: h, normal: [0, -1, 0]},
      {lon, lat, height: b.top, normal: [0, 0, 1]}, {lon, lat, height: b.bottom, normal: [0, 0, -1]}
    ], opts);
  }
  function clear() { return apply([]); }

  /** True when lon/lat/height is cut away (picking.js ignores hits there). */
  function isCut(lon, lat, height, entry) {
    const list = entry ? (layerProps(entry) || {}).sectionPlanes || [] : planes;
    return list.some(pl => {
      const e = (lon - pl.lon) * mPerDegLon(pl.lat), n = (lat - pl.lat) * mPerDegLat(pl.lat), u = height - pl.height;
      return e * pl.normal[0] + n * pl.normal[1] + u * pl.normal[2] > 0;
    });
  }

  // ------------------------------------------------------------------------------------------------ tools
  const statusEl = document.getElementById('status');
  function pickPoints(hint, done) {
    const picks = [];
    statusEl.textContent = cim.t(hint);
    cim.viewer.setClickHandler(({x, y}) => {
      const c = cim.viewer.groundCoordinate(x, y);
      if (!c) return;
      picks.push(c);
      if (picks.length < 2) return;
      cim.viewer.setClickHandler(null);
      statusEl.textContent = '';
      done(picks[0], picks[1]);
    });
  }
  let panelEl = null;
  function heightInput() { return panelEl ? Number(panelEl.querySelector('input[name=section-height]').value) : NaN; }

  cim.section = {extension, plane, vertical, horizontal, box, clear, isCut, layerProps,
    get planes() { return planes.map(p => ({...p, normal: p.normal.slice()})); },
    get terrain() { return withTerrain; }, get caps() { return caps; }, get capColor() { return capColor.slice(); }};

  cim.register({
    id: 'section', order: 75, title: {zh: '剖切', en: 'Section'},
    panel(el) {
      panelEl = el;
      const t = cim.t;
      const ground = Math.round(cim.config.ground || 0);
      el.innerHTML = `<h3>${t('section')}</h3>
        <div class="tools"><button type="button" data-section="vertical">${t('sectionPlane')}</button>
        <button type="button" data-section="box">${t('sectionBox')}</button>
        <button type="button" data-section="clear">${t('sectionClear')}</button></div>
        <label>${t('sectionHeight')} · ${t('sectionTop')} <input type="number" name="section-height" step="1" value="${ground + 10}">
        <button type="button" data-section="horizontal">${t('sectionApply')}</button></label>
        <label><input type="checkbox" name="section-terrain"${withTerrain ? ' checked' : ''}> ${t('sectionTerrain')}</label>
        <label><input type="checkbox" name="section-caps"${caps ? ' checked' : ''}> ${t('sectionCaps')}</label>`;
      const opts = () => ({terrain: el.querySelector('input[name=section-terrain]').checked,
        caps: el.querySelector('input[name=section-caps]').checked});
      el.querySelector('[data-section=vertical]').onclick = () =>
        pickPoints('sectionHint', (a, b) => vertical(a, b, null, opts()));
      el.querySelector('[data-section=horizontal]').onclick = () => horizontal(heightInput(), opts());
      el.querySelector('[data-section=box]').onclick = () => pickPoints('sectionBoxHint', (a, b) => {
        const top = heightInput();
        box({west: Math.min(a[0], b[0]), east: Math.max(a[0], b[0]), south: Math.min(a[1], b[1]),
          north: Math.max(a[1], b[1]), bottom: (cim.config.ground || 0) - 1000, top: Number.isFinite(top) ? top : 1e5},
        opts());
      });
      el.querySelector('[data-section=clear]').onclick = () => clear();
      el.querySelector('input[name=section-terrain]').onchange = () => apply(planes, opts());
      el.querySelector('input[name=section-caps]').onchange = () => apply(planes, opts());
    }
  });
})();

/* Distance and area measurement: click points, double-click ends; great-circle length and spherical area. */
(function () {
  'use strict';
  const D = globalThis.deck;
  const statusEl = document.getElementById('status');
  const R = 6371008.8;
  const rad = d => d * Math.PI / 180;
  let measure = null; // {kind: 'distance'|'area', points: [[lon, lat]], done: bool, result}

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
  function update() {
    const t = cim.t;
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
  function onClick({x, y}) {
    if (!measure || measure.done) return;
    const c = cim.viewer.groundCoordinate(x, y);
    if (c) { measure.points.push(c); update(); cim.viewer.refresh(); }
  }
  function start(kind) {
    measure = {kind, points: [], done: false};
    cim.viewer.setClickHandler(onClick);
    update();
  }
  function clear() {
    measure = null;
    if (cim.viewer.clickHandler === onClick) cim.viewer.setClickHandler(null);
    update();
    cim.viewer.refresh();
  }
  function finish() {
    if (!measure || measure.done) return;
    measure.done = true;
    cim.viewer.setClickHandler(null);
    update();
  }

  cim.measure = {start, clear, pathLength, polygonArea, get current() { return measure; }};
  cim.register({
    id: 'measure', order: 30,
    tools: [{id: 'distance', title: {zh: '测距', en: 'Distance'}, run: () => start('distance')},
      {id: 'area', title: {zh: '测面', en: 'Area'}, run: () => start('area')},
      {id: 'clear', title: {zh: '清除', en: 'Clear'}, run: clear}],
    start() { cim.on('dblclick', finish); },
    layers() {
      if (!measure || !measure.points.length) return [];
      const g = cim.viewer.ground;
      const pts = measure.points.map(p => [p[0], p[1], g]);
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
  });
})();

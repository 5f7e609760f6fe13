/* The planning panel (规划分析): pick an analysis, place an observer or draw a scheme on the map, run it on the
   server (POST /analysis/{model}/{analysis}; long runs are jobs, polled until done), see violations, unlit windows,
   shadows, the visible area and the skyline highlighted in 3D, and export the report (JSON or CSV).
   docs/planning.md describes the analyses, docs/viewer.md the panel. */
(function () {
  'use strict';
  const esc = cim.escapeHtml;
  cim.addText({
    zh: {planning: '规划分析', pHeight: '控高分析', pSunlight: '日照分析', pShadow: '阴影分析', pViewshed: '可视域',
      pSkyline: '天际线', pCompare: '方案比对', pRun: '分析', pRunning: '分析中…', pPlace: '点选观察点',
      pDraw: '绘制方案', pDrawHint: '单击添加角点，双击结束', pHeightM: '方案高度(米)', pClearScheme: '清除方案',
      pZone: '气候区', pYear: '年份', pAt: '时刻(真太阳时)', pDay: '全天', pRadius: '半径(米)',
      pExportJson: '导出报告', pExportCsv: '导出表格', pViolations: '超高', pFailing: '日照不满足',
      pBuildings: '栋', pWindows: '个窗', pVisible: '可见面积', pSkyBuildings: '构成天际线的建筑',
      pLosing: '日照减少的窗', pNewlyFailing: '新增不满足', pCause: '原因', pObserver: '观察点',
      pNoModel: '没有可分析的三维模型', pScheme: '方案', pError: '出错'},
    en: {planning: 'Planning', pHeight: 'Height control', pSunlight: 'Sunlight hours', pShadow: 'Shadow',
      pViewshed: 'Viewshed', pSkyline: 'Skyline', pCompare: 'Compare scheme', pRun: 'Run', pRunning: 'Running…',
      pPlace: 'Place observer', pDraw: 'Draw scheme', pDrawHint: 'Click corners, double-click to finish',
      pHeightM: 'Scheme height (m)', pClearScheme: 'Clear scheme', pZone: 'Climate zone', pYear: 'Year',
      pAt: 'Time (true solar)', pDay: 'whole day', pRadius: 'Radius (m)', pExportJson: 'Export report',
      pExportCsv: 'Export table', pViolations: 'over the limit', pFailing: 'fail the sunlight standard',
      pBuildings: 'buildings', pWindows: 'windows', pVisible: 'Visible area', pSkyBuildings: 'Buildings on the skyline',
      pLosing: 'Windows losing sunlight', pNewlyFailing: 'newly failing', pCause: 'cause', pObserver: 'Observer',
      pNoModel: 'No 3D model to analyse', pScheme: 'Scheme', pError: 'Error'}
  });

  const KINDS = [['height-control', 'pHeight'], ['sunlight', 'pSunlight'], ['shadow', 'pShadow'],
    ['viewshed', 'pViewshed'], ['skyline', 'pSkyline'], ['compare', 'pCompare']];
  const st = {kind: 'height-control', observer: null, scheme: [], drawing: null, schemeHeight: 60, zone: 'II',
    year: 2001, at: '10', radius: 500, running: false, result: null, error: '', status: ''};
  let section = null;

  function model() {
    const m = (cim.config.tree || []).find(e => e.kind === '3dtiles');
    return m ? m.name : null;
  }

  function schemeGeoJson() {
    return {type: 'FeatureCollection', name: 'viewer', features: st.scheme.map((ring, i) => ({
      type: 'Feature', properties: {name: `方案${i + 1}`, height: st.schemeHeight},
      geometry: {type: 'Polygon', coordinates: [ring.concat([ring[0]])]}}))};
  }

  /** The map's view as a lon/lat bbox: sunlight and shadow are computed for what the user looks at. */
  function viewBbox() {
    const vp = cim.viewer.viewport();
    if (!vp || !vp.getBounds) return null;
    const b = vp.getBounds();
    return b && b.every(Number.isFinite) ? b : null;
  }

  function body() {
    const b = {};
    const scheme = st.scheme.length ? schemeGeoJson() : null;
    const bbox = viewBbox();
    if (st.kind === 'sunlight') Object.assign(b, {climate_zone: st.zone, year: st.year, bbox});
    if (st.kind === 'shadow') Object.assign(b, {year: st.year, at: st.at === '' ? null : Number(st.at),
      of: scheme ? ['scheme'] : null, cell: 2, bbox});
    if (st.kind === 'viewshed') Object.assign(b, {observer: st.observer, radius: st.radius});
    if (st.kind === 'skyline') Object.assign(b, {viewpoint: st.observer});
    if (st.kind === 'compare') {
      Object.assign(b, {sunlight: {climate_zone: st.zone, year: st.year, bbox}});
      if (st.observer) b.skyline = {viewpoint: st.observer};
      b.scheme = scheme;
    } else if (scheme) b.scheme = scheme;
    return b;
  }

  async function run() {
    const name = model();
    if (!name) { st.error = cim.t('pNoModel'); render(); return; }
    st.running = true; st.error = ''; st.result = null; st.status = ''; render();
    try {
      const url = `${cim.config.base}/analysis/${encodeURIComponent(name)}/${st.kind}`;
      let doc = await cim.fetchJson(url, {method: 'POST', body: body()});
      if (doc && doc.jobID) {  // a job: poll its status, then fetch the result
        const self = doc.links[0].href;
        while (doc.status === 'accepted' || doc.status === 'running') {
          st.status = `${doc.stage || ''} ${doc.progress}%`; render();
          await new Promise(r => setTimeout(r, 500));
          doc = await cim.fetchJson(self.split('?')[0]);
        }
        if (doc.status !== 'successful') throw new Error(doc.message || doc.status);
        doc = await cim.fetchJson(self.split('?')[0] + '/results');
      }
      st.result = doc;
    } catch (err) {
      st.error = String(err.message || err);
    }
    st.running = false; st.status = '';
    render();
    cim.viewer.refresh();
  }

  function pick(kind) {
    if (kind === 'observer') {
      cim.viewer.setClickHandler(({x, y}) => {
        const place = cim.viewer.placeAt(x, y);
        if (place) st.observer = [place.coordinate[0], place.coordinate[1]];
        cim.viewer.setClickHandler(null);
        render(); cim.viewer.refresh();
      });
      return;
    }
    st.drawing = [];
    cim.viewer.setClickHandler(({x, y}) => {
      const place = cim.viewer.placeAt(x, y);
      if (place) st.drawing.push([place.coordinate[0], place.coordinate[1]]);
      cim.viewer.refresh();
    });
    const finish = cim.on('dblclick', () => {
      cim.off('dblclick', finish);
      if (st.drawing && st.drawing.length >= 3) st.scheme.push(st.drawing);
      st.drawing = null;
      cim.viewer.setClickHandler(null);
      render(); cim.viewer.refresh();
    });
    render();
  }

  function rows() {
    const r = st.result;
    if (!r) return [];
    if (r.analysis === 'height-control') return r.violations || [];
    if (r.analysis === 'sunlight') return (r.buildings || []).filter(b => !b.passes);
    if (r.analysis === 'viewshed' || r.analysis === 'skyline') return r.buildings || [];
    if (r.analysis === 'compare') return r.windows || [];
    return [];
  }

  function download(name, text, type) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([text], {type}));
    a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
  }

  function exportCsv() {
    const data = rows();
    if (!data.length) return;
    const cols = Object.keys(data[0]).filter(k => typeof data[0][k] !== 'object' || data[0][k] === null);
    const cell = v => (v == null ? '' : `"${String(v).replace(/"/g, '""')}"`);
    download(`${st.kind}.csv`, '\ufeff' + [cols.join(','), ...data.map(r => cols.map(c => cell(r[c])).join(','))]
      .join('\n'), 'text/csv');
  }

  function summaryHtml() {
    const r = st.result;
    if (!r) return '';
    const s = r.summary || {};
    const list = items => `<ul class="planning-list">${items.join('')}</ul>`;
    if (r.analysis === 'height-control') {
      return `<p class="planning-summary">${s.violations} ${cim.t('pViolations')}</p>` + list((r.violations || [])
        .slice(0, 20).map(v => `<li>${esc(v.name || v.id)}: ${v.height} m &gt; ${v.limit} m (+${v.excess})</li>`));
    }
    if (r.analysis === 'sunlight') {
      const day = Object.values(r.days || {})[0] || {};
      return `<p class="planning-summary">${esc(day.date || '')} ${esc(day.requirement || '')}<br>`
        + `${s.buildings_failing}/${s.buildings} ${cim.t('pBuildings')}, ${s.windows_failing}/${s.windows} `
        + `${cim.t('pWindows')} ${cim.t('pFailing')}</p>`
        + list(rows().slice(0, 20).map(b => `<li>${esc(b.name || b.id)}: ${esc(JSON.stringify(b.floors_failing))}</li>`));
    }
    if (r.analysis === 'shadow') return `<p class="planning-summary">${esc(JSON.stringify(s))}</p>`;
    if (r.analysis === 'viewshed') {
      return `<p class="planning-summary">${cim.t('pVisible')}: ${Math.round(s.visible_area_m2)} m², `
        + `${s.visible_buildings} ${cim.t('pBuildings')}</p>`;
    }
    if (r.analysis === 'skyline') {
      return `<p class="planning-summary">${cim.t('pSkyBuildings')}: ${s.buildings}</p>` + list((r.buildings || [])
        .slice(0, 15).map(b => `<li>${esc(b.name || b.id)}: ${b.degrees}°, ${b.max_elevation}°</li>`));
    }
    if (r.analysis === 'compare') {
      const su = s.sunlight || {};
      return `<p class="planning-summary">${cim.t('pLosing')}: ${su.windows_losing || 0} `
        + `(${cim.t('pNewlyFailing')} ${su.windows_newly_failing || 0})</p>`
        + list((r.windows || []).slice(0, 20).map(w => `<li>${esc(w.name || w.building)} F${w.floor}: `
          + `${w.before_min} → ${w.after_min} min, ${cim.t('pCause')} ${esc(w.cause || '')}</li>`));
    }
    return '';
  }

  function render() {
    if (!section) return;
    const opt = ([k, t]) => `<option value="${k}"${k === st.kind ? ' selected' : ''}>${cim.t(t)}</option>`;
    const needsObserver = ['viewshed', 'skyline', 'compare'].includes(st.kind);
    section.innerHTML = `<h2>${cim.t('planning')}</h2>
      <div class="planning-form">
        <select class="planning-kind">${KINDS.map(opt).join('')}</select>
        ${['sunlight', 'compare'].includes(st.kind) ? `<label>${cim.t('pZone')} <select class="planning-zone">${
          ['I', 'II', 'III', 'IV', 'V', 'VI', 'VII'].map(z => `<option${z === st.zone ? ' selected' : ''}>${z}</option>`)
            .join('')}</select></label>` : ''}
        ${['sunlight', 'shadow', 'compare'].includes(st.kind) ? `<label>${cim.t('pYear')} <input class="planning-year" type="number" value="${st.year}"></label>` : ''}
        ${st.kind === 'shadow' ? `<label>${cim.t('pAt')} <input class="planning-at" type="number" step="0.25" placeholder="${cim.t('pDay')}" value="${esc(st.at)}"></label>` : ''}
        ${st.kind === 'viewshed' ? `<label>${cim.t('pRadius')} <input class="planning-radius" type="number" value="${st.radius}"></label>` : ''}
        ${needsObserver ? `<button type="button" class="planning-place">${cim.t('pPlace')}</button>
          <span class="planning-observer">${st.observer ? st.observer.map(v => v.toFixed(5)).join(', ') : ''}</span>` : ''}
        <div class="planning-scheme">
          <button type="button" class="planning-draw">${st.drawing ? cim.t('pDrawHint') : cim.t('pDraw')}</button>
          <label>${cim.t('pHeightM')} <input class="planning-height" type="number" value="${st.schemeHeight}"></label>
          ${st.scheme.length ? `<button type="button" class="planning-clear">${cim.t('pClearScheme')} (${st.scheme.length})</button>` : ''}
        </div>
        <button type="button" class="planning-run"${st.running ? ' disabled' : ''}>${st.running ? cim.t('pRunning') : cim.t('pRun')}</button>
        <span class="planning-status">${esc(st.status)}</span>
      </div>
      ${st.error ? `<p class="planning-error">${cim.t('pError')}: ${esc(st.error)}</p>` : ''}
      <div class="planning-result">${summaryHtml()}</div>
      ${st.result ? `<button type="button" class="planning-export">${cim.t('pExportJson')}</button>
        <button type="button" class="planning-csv">${cim.t('pExportCsv')}</button>` : ''}`;
    const q = s => section.querySelector(s);
    q('.planning-kind').onchange = e => { st.kind = e.target.value; st.result = null; render(); cim.viewer.refresh(); };
    if (q('.planning-zone')) q('.planning-zone').onchange = e => { st.zone = e.target.value; };
    if (q('.planning-year')) q('.planning-year').onchange = e => { st.year = Number(e.target.value); };
    if (q('.planning-at')) q('.planning-at').onchange = e => { st.at = e.target.value; };
    if (q('.planning-radius')) q('.planning-radius').onchange = e => { st.radius = Number(e.target.value); };
    if (q('.planning-place')) q('.planning-place').onclick = () => pick('observer');
    q('.planning-draw').onclick = () => pick('scheme');
    q('.planning-height').onchange = e => { st.schemeHeight = Number(e.target.value); cim.viewer.refresh(); };
    if (q('.planning-clear')) q('.planning-clear').onclick = () => { st.scheme = []; render(); cim.viewer.refresh(); };
    q('.planning-run').onclick = run;
    if (q('.planning-export')) {
      q('.planning-export').onclick = () => download(`${st.kind}.json`, JSON.stringify(st.result, null, 2),
        'application/json');
    }
    if (q('.planning-csv')) q('.planning-csv').onclick = exportCsv;
  }

  /** GeoJSON with every 2D position raised to the model's ground height (the 3D tiles carry ellipsoidal
      heights, so a flat footprint at z = 0 would sit far below the city). */
  function lifted(doc, z) {
    const lift = c => (typeof c[0] === 'number' ? (c.length >= 3 ? c : [c[0], c[1], z]) : c.map(lift));
    return Object.assign({}, doc, {features: (doc.features || []).map(f => (!f.geometry ? f : Object.assign({}, f,
      {geometry: Object.assign({}, f.geometry, {coordinates: lift(f.geometry.coordinates)})})))});
  }

  function resultLayers() {
    const out = [];
    const ground = cim.viewer.ground || 0;
    if (st.scheme.length || (st.drawing && st.drawing.length)) {
      const feats = lifted(schemeGeoJson(), ground).features;
      if (st.drawing && st.drawing.length >= 2) {
        feats.push({type: 'Feature', properties: {height: 0},
          geometry: {type: 'LineString', coordinates: st.drawing.map(c => [c[0], c[1], ground])}});
      }
      out.push(new deck.GeoJsonLayer({id: 'planning:scheme', data: {type: 'FeatureCollection', features: feats},
        extruded: true, wireframe: true, getElevation: f => f.properties.height || 0,
        getFillColor: [40, 110, 230, 120], getLineColor: [40, 110, 230, 255], lineWidthMinPixels: 2}));
    }
    if (st.observer) {
      out.push(new deck.ScatterplotLayer({id: 'planning:observer', data: [st.observer],
        getPosition: p => [p[0], p[1], ground + 2], getFillColor: [255, 200, 0], radiusMinPixels: 7,
        stroked: true, getLineColor: [0, 0, 0], lineWidthMinPixels: 1}));
    }
    const r = st.result;
    if (!r || !r.features) return out;
    const data = lifted(r.features, ground);
    const color = f => {
      const p = f.properties || {};
      if (p.kind === 'scheme') return [40, 110, 230, 110];
      if (p.kind === 'visible') return [0, 180, 90, 110];
      if (p.kind === 'of') return [60, 60, 160, 140];
      if (p.kind === 'other') return [90, 90, 90, 90];
      if (p.kind === 'observer') return [255, 200, 0, 255];
      return [230, 30, 30, 200];  // violations, failing or affected windows
    };
    out.push(new deck.GeoJsonLayer({id: `planning:result:${r.analysis}`, data, pickable: true,
      extruded: r.analysis === 'height-control',
      getElevation: f => (f.properties && f.properties.height) || 0,
      getFillColor: color, getLineColor: color, pointType: 'circle', getPointRadius: 1.2, pointRadiusMinPixels: 3,
      lineWidthMinPixels: 1}));
    return out;
  }

  cim.register({
    id: 'planning', order: 60, title: {zh: '规划分析', en: 'Planning'},
    panel(el) { section = el; el.classList.add('planning'); render(); },
    layers: resultLayers,
    start() {}
  });

  globalThis.cimPlanning = {state: st, run, render, schemeGeoJson};
})();

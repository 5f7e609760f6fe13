/* Live sensors (物联感知): every sensor the caller may see, coloured by the warning level of its latest reading and
   updated from the server's live stream (/sensing/stream, Server-Sent Events) as readings arrive; a click on a
   sensor charts its last 24 hours (canvas, with its thresholds); a time slider replays the state of any moment of
   the last 24 hours (/sensing/latest?at=); the list of open and recent alerts (/alerts), live too.
   Requests go to the page's server only (docs/sensing.md, docs/viewer.md "Adding a panel"). */
(function () {
  'use strict';
  const D = globalThis.deck;
  const esc = cim.escapeHtml;
  const LEVELS = ['blue', 'yellow', 'orange', 'red'];
  const COLORS = {none: [46, 160, 67], blue: [30, 110, 255], yellow: [255, 205, 0], orange: [255, 128, 0],
    red: [225, 20, 20], nodata: [150, 150, 150]};
  const LAYER_ID = 'sensors:live';
  const DAY_MS = 24 * 3600 * 1000;

  cim.addText({
    zh: {sensors: '物联感知', live: '实时', replay: '回放', alerts: '告警', noAlerts: '无告警', opened: '发生',
      closed: '解除', peak: '峰值', lastDay: '近24小时', level_blue: '蓝色', level_yellow: '黄色', level_orange: '橙色',
      level_red: '红色', level_none: '正常', level_nodata: '无数据', sensorCount: '个传感器', reading: '读数',
      thresholds: '阈值', streamOff: '实时连接中断，正在重连…'},
    en: {sensors: 'Sensors', live: 'Live', replay: 'Replay', alerts: 'Alerts', noAlerts: 'No alerts', opened: 'opened',
      closed: 'closed', peak: 'peak', lastDay: 'last 24 h', level_blue: 'blue', level_yellow: 'yellow',
      level_orange: 'orange', level_red: 'red', level_none: 'normal', level_nodata: 'no data',
      sensorCount: 'sensors', reading: 'Reading', thresholds: 'Thresholds',
      streamOff: 'live connection lost, reconnecting…'}
  });

  // datastream id -> {datastream, name, thingName, observedProperty, unit, location, phenomenonTime, result, level,
  // thresholds}
  const sensors = new Map();
  let data = [];            // what the layer draws (a new array on every change: deck.gl compares by reference)
  let alerts = [];          // newest first
  let replayAt = null;      // null: live; else the ISO time shown
  let selected = null;      // the datastream charted in the identify panel
  let source = null;
  let panelEl = null;
  let lastUpdate = 0;       // ms (performance.now) when a stream message last changed the map
  let updates = 0;

  function levelOf(r) { return r.result === null || r.result === undefined ? 'nodata' : (r.level || 'none'); }
  function colorOf(r) { return COLORS[levelOf(r)]; }
  function rebuild() {
    data = Array.from(sensors.values()).filter(r => r.location);
    cim.viewer.addLayer(entry());
  }
  function entry() {
    return {id: LAYER_ID, kind: 'sensors', title: cim.t('sensors'), group: 'iot_sensing', visible: true,
      legend: LEVELS.concat(['none']).map(l => ({color: COLORS[l], label: cim.t(`level_${l}`)}))};
  }

  cim.layerKinds.sensors = {
    create: (e, ctx) => new D.ScatterplotLayer({
      id: e.id, data, pickable: true, stroked: true, filled: true, billboard: true,
      getPosition: r => [r.location[0], r.location[1], ctx.ground + 2],
      getFillColor: r => colorOf(r), getLineColor: [255, 255, 255], lineWidthMinPixels: 1.5,
      getRadius: r => (levelOf(r) === 'none' || levelOf(r) === 'nodata' ? 8 : 14), radiusUnits: 'pixels',
      parameters: {depthCompare: 'always'},
      updateTriggers: {getFillColor: updates, getRadius: updates}
    })
  };

  // ------------------------------------------------------------------------------------------------ data
  async function loadLatest(at) {
    const url = '/sensing/latest' + (at ? `?at=${encodeURIComponent(at)}` : '');
    const doc = await cim.fetchJson(url);
    sensors.clear();
    for (const f of doc.features) {
      sensors.set(f.id, Object.assign({location: f.geometry ? f.geometry.coordinates : null}, f.properties));
    }
    updates += 1;
    rebuild();
  }

  async function loadAlerts() {
    const doc = await cim.fetchJson('/alerts?limit=50');
    alerts = doc.alerts;
    renderAlerts();
  }

  function onObservations(list) {
    if (replayAt) return;
    let changed = false;
    for (const o of list) {
      const r = sensors.get(o.datastream);
      if (!r) continue;
      if (r.phenomenonTime && o.phenomenonTime < r.phenomenonTime) continue; // a back-filled reading
      r.result = o.result;
      r.level = o.level;
      r.phenomenonTime = o.phenomenonTime;
      changed = true;
      if (selected && selected.datastream === o.datastream) appendToChart(o);
    }
    if (changed) {
      updates += 1;
      lastUpdate = performance.now();
      rebuild();
      renderSummary();
    }
  }

  function onAlert(a) {
    alerts = [a].concat(alerts.filter(x => x.id !== a.id)).slice(0, 50);
    renderAlerts();
  }

  function connect() {
    if (source) source.close();
    source = new EventSource(cim.withKey('/sensing/stream'));
    source.addEventListener('observations', ev => onObservations(JSON.parse(ev.data)));
    source.addEventListener('alert', ev => onAlert(JSON.parse(ev.data)));
    source.onopen = () => { if (panelEl) panelEl.classList.remove('sensor-stream-off'); };
    source.onerror = () => { if (panelEl) panelEl.classList.add('sensor-stream-off'); };
  }

  // ------------------------------------------------------------------------------------------------ panel
  function fmtTime(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return d.toLocaleString(cim.lang === 'zh' ? 'zh-CN' : 'en-GB', {month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit'});
  }
  function fmtValue(v, unit) {
    if (v === null || v === undefined) return '';
    return `${typeof v === 'number' ? (Math.round(v * 100) / 100) : esc(String(v))} ${esc(unit || '')}`;
  }
  function swatch(level) {
    const c = COLORS[level] || COLORS.none;
    return `<i class="sensor-swatch" style="background: rgb(${c.join(',')})"></i>`;
  }

  function renderSummary() {
    if (!panelEl) return;
    const counts = {};
    for (const r of sensors.values()) counts[levelOf(r)] = (counts[levelOf(r)] || 0) + 1;
    const el = panelEl.querySelector('.sensor-summary');
    el.innerHTML = `${sensors.size} ${cim.t('sensorCount')}: ` + ['red', 'orange', 'yellow', 'blue', 'none', 'nodata']
      .filter(l => counts[l]).map(l => `${swatch(l)}${cim.t(`level_${l}`)} ${counts[l]}`).join(' ');
  }

  function renderAlerts() {
    if (!panelEl) return;
    const list = panelEl.querySelector('.sensor-alerts');
    if (!alerts.length) { list.innerHTML = `<li class="empty">${cim.t('noAlerts')}</li>`; return; }
    list.innerHTML = alerts.map(a => {
      const open = a.status === 'open';
      const when = open ? `${cim.t('opened')} ${fmtTime(a.openedAt)}` : `${cim.t('closed')} ${fmtTime(a.closedAt)}`;
      return `<li class="sensor-alert ${open ? 'open' : 'closed'}" data-alert="${a.id}" data-level="${esc(a.level)}"`
        + ` data-datastream="${a.datastream['@iot.id']}">${swatch(a.level)}<b>${esc(a.thing.name || '')}</b> `
        + `${esc(cim.lang === 'zh' ? a.levelZh : a.level)}${open ? '' : ` (${cim.t('peak')} `
        + `${fmtValue(a.peak && a.peak.result, a.unit)})`}<br><small>${esc(when)} · ${cim.t('reading')} `
        + `${fmtValue(a.openedBy.result, a.unit)}</small></li>`;
    }).join('');
    list.querySelectorAll('li[data-datastream]').forEach(li => {
      li.onclick = () => {
        const a = alerts.find(x => String(x.id) === li.dataset.alert);
        if (a && a.location) cim.viewer.flyTo(a.location[0], a.location[1], 16);
      };
    });
  }

  function sliderTime(value) {
    return new Date(Date.now() - DAY_MS + Number(value) * DAY_MS / 1000).toISOString();
  }

  function renderPanel(el) {
    panelEl = el;
    el.classList.add('sensor-panel');
    el.innerHTML = `<h2>${cim.t('sensors')}</h2><p class="sensor-stream-note">${cim.t('streamOff')}</p>`
      + `<div class="sensor-summary"></div>`
      + `<div class="sensor-replay"><button type="button" class="sensor-live active">${cim.t('live')}</button>`
      + `<input type="range" class="sensor-slider" min="0" max="1000" value="1000" aria-label="${cim.t('replay')}">`
      + `<output class="sensor-time"></output></div>`
      + `<h3>${cim.t('alerts')}</h3><ul class="sensor-alerts"></ul>`;
    const slider = el.querySelector('.sensor-slider');
    const liveBtn = el.querySelector('.sensor-live');
    const out = el.querySelector('.sensor-time');
    let pending = null;
    slider.oninput = () => {
      out.textContent = fmtTime(sliderTime(slider.value));
      clearTimeout(pending);
      pending = setTimeout(() => replay(Number(slider.value) >= 1000 ? null : sliderTime(slider.value)), 120);
    };
    liveBtn.onclick = () => { slider.value = 1000; replay(null); };
    renderSummary();
    renderAlerts();
  }

  async function replay(at) {
    replayAt = at;
    if (panelEl) {
      panelEl.querySelector('.sensor-live').classList.toggle('active', !at);
      panelEl.querySelector('.sensor-time').textContent = at ? fmtTime(at) : '';
    }
    await loadLatest(at);
    renderSummary();
  }

  // ------------------------------------------------------------------------------------------------ chart
  let chart = null; // {datastream, points: [[t ms, value]], thresholds, unit}

  async function loadChart(r) {
    const since = new Date(Date.now() - DAY_MS).toISOString();
    const q = `$filter=${encodeURIComponent(`phenomenonTime ge ${since}`)}&$orderby=phenomenonTime`
      + '&$select=phenomenonTime,result&$top=10000';
    const doc = await cim.fetchJson(`/sta/v1.1/Datastreams(${r.datastream})/Observations?${q}`);
    chart = {datastream: r.datastream, unit: r.unit, thresholds: r.thresholds || {},
      points: doc.value.filter(o => typeof o.result === 'number').map(o => [Date.parse(o.phenomenonTime), o.result])};
    drawChart();
  }

  function appendToChart(o) {
    if (!chart || chart.datastream !== o.datastream || typeof o.result !== 'number') return;
    chart.points.push([Date.parse(o.phenomenonTime), o.result]);
    drawChart();
  }

  function drawChart() {
    const canvas = document.querySelector('canvas.sensor-chart');
    if (!canvas || !chart) return;
    const ctx = canvas.getContext('2d');
    const w = canvas.width, h = canvas.height, pad = {l: 44, r: 8, t: 8, b: 22};
    ctx.clearRect(0, 0, w, h);
    const now = Date.now(), t0 = now - DAY_MS;
    const pts = chart.points.filter(p => p[0] >= t0);
    const thr = LEVELS.filter(l => typeof chart.thresholds[l] === 'number').map(l => [l, chart.thresholds[l]]);
    const values = pts.map(p => p[1]).concat(thr.map(x => x[1]));
    if (!values.length) return;
    let lo = Math.min(...values), hi = Math.max(...values);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const span = hi - lo;
    lo -= span * 0.05; hi += span * 0.05;
    const X = t => pad.l + (w - pad.l - pad.r) * (t - t0) / DAY_MS;
    const Y = v => h - pad.b - (h - pad.t - pad.b) * (v - lo) / (hi - lo);
    ctx.font = '11px sans-serif';
    ctx.fillStyle = '#555';
    ctx.strokeStyle = '#ccc';
    ctx.beginPath(); ctx.moveTo(pad.l, pad.t); ctx.lineTo(pad.l, h - pad.b); ctx.lineTo(w - pad.r, h - pad.b); ctx.stroke();
    for (let k = 0; k <= 4; k++) {
      const v = lo + (hi - lo) * k / 4;
      ctx.fillText(String(Math.round(v * 100) / 100), 2, Y(v) + 4);
    }
    for (let k = 0; k <= 4; k++) {
      const t = t0 + DAY_MS * k / 4;
      const d = new Date(t);
      ctx.fillText(`${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`, X(t) - 14, h - 6);
    }
    for (const [level, v] of thr) {
      ctx.strokeStyle = `rgb(${COLORS[level].join(',')})`;
      ctx.setLineDash([4, 3]);
      ctx.beginPath(); ctx.moveTo(pad.l, Y(v)); ctx.lineTo(w - pad.r, Y(v)); ctx.stroke();
    }
    ctx.setLineDash([]);
    ctx.strokeStyle = '#1f4e9c';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
    ctx.stroke();
    ctx.lineWidth = 1;
    canvas.dataset.points = String(pts.length);
  }

  // ------------------------------------------------------------------------------------------------ feature
  cim.register({
    id: 'sensors',
    order: 50,
    title: {zh: '物联感知', en: 'Sensors'},
    panel(el) { renderPanel(el); },
    identify() {
      if (!selected) return '';
      const r = sensors.get(selected.datastream) || selected;
      const thr = r.thresholds ? LEVELS.filter(l => typeof r.thresholds[l] === 'number')
        .map(l => `${swatch(l)}${r.thresholds[l]}`).join(' ') : '';
      setTimeout(() => loadChart(r).catch(err => console.error(err)), 0);
      return `<section class="hit sensor-hit" data-datastream="${r.datastream}"><h4>${swatch(levelOf(r))}`
        + `${esc(r.thingName)} <small>${esc(r.observedProperty)}</small></h4>`
        + `<p>${cim.t('reading')}: <b>${fmtValue(r.result, r.unit)}</b> <small>${esc(fmtTime(r.phenomenonTime))}`
        + `</small></p>${thr ? `<p>${cim.t('thresholds')}: ${thr}</p>` : ''}`
        + `<p><small>${cim.t('lastDay')}</small></p><canvas class="sensor-chart" width="320" height="150"></canvas>`
        + '</section>';
    },
    start() {
      cim.viewer.addLayer(entry(), {quiet: true});
      cim.on('click', c => {
        const info = c.info;
        selected = info && info.layer && cim.viewer.rootId(info.layer) === LAYER_ID && info.object ? info.object : null;
      });
      Promise.all([loadLatest(null), loadAlerts()]).then(connect).catch(err => console.error(err));
    }
  });

  /** For tests and other panels: the colour and level each sensor is drawn with, and the stream's state. */
  cim.sensors = {
    colorOf: id => { const r = sensors.get(id); return r ? colorOf(r) : null; },
    levelOf: id => { const r = sensors.get(id); return r ? levelOf(r) : null; },
    reading: id => sensors.get(id) || null,
    get count() { return sensors.size; },
    get alerts() { return alerts.slice(); },
    get lastUpdate() { return lastUpdate; },
    get live() { return !replayAt; },
    get connected() { return !!source && source.readyState === 1; },
    replay,
    select: id => { selected = sensors.get(id) || null; return selected; },
    get chart() { return chart; },
    layerId: LAYER_ID
  };
})();

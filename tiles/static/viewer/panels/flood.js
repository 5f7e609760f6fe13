/* The emergency one map (应急一张图): a flood run of the server (/flood, docs/flood.md) over the 3D city. A time
   slider plays the water depth (tiles /flood/{run}/depth/{time}/...), with the depth legend; the impact panel lists
   the affected buildings (with address, depth and when 0.15 m comes), impassable roads, people per community and the
   shelters still dry (drawn on the map, dry green, flooded red); warnings started by sensor alerts (/flood/alerts) and
   their warning areas; a click anywhere tells how deep the water gets there and when. Requests go to the page's server
   only (docs/viewer.md, "Adding a panel"). */
(function () {
  'use strict';
  const D = globalThis.deck;
  const esc = cim.escapeHtml;
  const DEPTH_STOPS = [[0.01, '#bee6ff'], [0.15, '#78befa'], [0.3, '#3c8ce6'], [0.5, '#1e5ac8'], [1.0, '#0f2d96'],
    [3.0, '#0a145a']];
  const CLASS_COLORS = {'0.15-0.30 m': [120, 190, 250], '0.30-0.50 m': [60, 140, 230], '0.50-1.00 m': [30, 90, 200],
    '>= 1.00 m': [15, 45, 150]};

  cim.addText({
    zh: {flood: '应急一张图', floodRun: '内涝模拟', floodNone: '服务器没有发布内涝模拟（cim serve --flood）',
      floodMax: '最大水深', floodPlay: '播放', floodPause: '暂停', floodDepth: '水深', floodAffected: '受淹建筑',
      floodRoads: '不可通行道路', floodPeople: '受影响人口', floodShelters: '避难场所', floodDry: '未受淹',
      floodWet: '受淹', floodAlerts: '内涝预警', floodNoAlerts: '无预警', floodHere: '此处', floodArrive: '达到0.15米',
      floodNever: '不会', floodMinutes: '分钟', floodPeopleUnit: '人', floodKm: '公里', floodRain: '降雨',
      floodAreas: '预警区', floodBuildingsUnit: '栋', floodOf: '/'},
    en: {flood: 'Emergency map', floodRun: 'Flood run', floodNone: 'the server publishes no flood runs (cim serve --flood)',
      floodMax: 'maximum', floodPlay: 'Play', floodPause: 'Pause', floodDepth: 'Water depth',
      floodAffected: 'Flooded buildings', floodRoads: 'Impassable roads', floodPeople: 'People affected',
      floodShelters: 'Shelters', floodDry: 'dry', floodWet: 'flooded', floodAlerts: 'Warnings',
      floodNoAlerts: 'No warnings', floodHere: 'Here', floodArrive: '0.15 m at', floodNever: 'never',
      floodMinutes: 'min', floodPeopleUnit: 'people', floodKm: 'km', floodRain: 'Rain', floodAreas: 'warning areas',
      floodBuildingsUnit: 'buildings', floodOf: '/'}
  });

  const st = {available: null, runs: [], run: null, times: [], instants: [], index: -1, playing: null,
    impacts: null, geo: {}, alerts: [], here: null, el: null};
  const url = (path) => `/flood/${encodeURIComponent(st.run)}${path}`;
  const minutes = s => (s == null ? cim.t('floodNever') : `${Math.round(s / 60)} ${cim.t('floodMinutes')}`);
  const timeKey = () => (st.index < 0 ? 'max' : String(Math.round(st.times[st.index])));

  function depthEntry() {
    return {id: 'flood:depth', kind: 'map', title: `${cim.t('floodDepth')} (${st.run})`, group: 'emergency',
      visible: true, opacity: 0.85, url: url(`/depth/${timeKey()}/{z}/{x}/{y}.png`), extent: st.bounds || null,
      legend: DEPTH_STOPS.map(([v, c]) => ({color: c, label: `${v} m`}))};
  }

  cim.layerKinds['flood-impacts'] = {
    create(entry, ctx) {
      const z = ctx.ground;
      const layers = [];
      const b = st.geo.buildings, r = st.geo.roads, s = st.geo.shelters;
      if (b) layers.push(new D.GeoJsonLayer({id: `${entry.id}:buildings`, data: b, pickable: true, stroked: true,
        filled: true, getFillColor: f => (CLASS_COLORS[f.properties.depth_class] || [200, 200, 200]).concat(
          f.properties.affected ? 220 : 90), getLineColor: [20, 20, 60], lineWidthMinPixels: 1,
        getElevation: z, parameters: {depthCompare: 'always'}}));
      if (r) layers.push(new D.GeoJsonLayer({id: `${entry.id}:roads`, data: {type: 'FeatureCollection',
        features: r.features.filter(f => f.properties.impassable)}, pickable: true, stroked: true,
        getLineColor: [220, 30, 30], lineWidthMinPixels: 4, parameters: {depthCompare: 'always'}}));
      if (s) layers.push(new D.ScatterplotLayer({id: `${entry.id}:shelters`, data: s.features, pickable: true,
        getPosition: f => [f.geometry.coordinates[0], f.geometry.coordinates[1], z + 2],
        getFillColor: f => (f.properties.dry ? [40, 170, 70] : [220, 30, 30]), getLineColor: [255, 255, 255],
        stroked: true, lineWidthMinPixels: 2, radiusUnits: 'pixels', getRadius: 10,
        parameters: {depthCompare: 'always'}}));
      for (const a of st.alerts.slice(0, 3)) {
        if (a.areas && a.areas.features && a.areas.features.length) {
          layers.push(new D.GeoJsonLayer({id: `${entry.id}:alert:${a.id}`, data: a.areas, pickable: true,
            stroked: true, filled: true, getFillColor: [255, 140, 0, 70], getLineColor: [255, 100, 0],
            lineWidthMinPixels: 2, parameters: {depthCompare: 'always'}}));
        }
      }
      return layers;
    }
  };

  function impactsEntry() {
    return {id: 'flood:impacts', kind: 'flood-impacts', title: cim.t('floodAffected'), group: 'emergency',
      visible: true, legend: Object.entries(CLASS_COLORS).map(([k, c]) => ({color: c, label: k}))};
  }

  async function loadRun(id) {
    st.run = id;
    const report = await cim.fetchJson(url(''));
    st.times = (report.steps || []).map(s => s.t_s);
    st.instants = report.instants || [];
    st.index = -1;
    st.impacts = null;
    st.geo = {};
    st.report = report;
    // the run's bounds: no tile is asked outside them (a tile there is a 404 by design, an error in the console)
    try { st.bounds = (await cim.fetchJson(url('/tilejson.json?var=depth'))).bounds || null; } catch (err) { st.bounds = null; }
    cim.viewer.addLayer(depthEntry());
    render();
    try {
      st.impacts = await cim.fetchJson(url('/impacts'));
      for (const t of ['buildings', 'roads', 'shelters']) st.geo[t] = await cim.fetchJson(url(`/impacts/${t}.geojson`));
      cim.viewer.addLayer(impactsEntry());
    } catch (err) { st.impacts = {error: String(err.message || err)}; }
    render();
  }

  async function loadAlerts() {
    try { st.alerts = (await cim.fetchJson('/flood/alerts')).alerts || []; } catch (err) { st.alerts = []; }
    if (st.run) cim.viewer.addLayer(impactsEntry());
    render();
  }

  function setIndex(i) {
    st.index = i;
    cim.viewer.addLayer(depthEntry());
    render();
  }

  function play() {
    if (st.playing) { clearInterval(st.playing); st.playing = null; render(); return; }
    if (!st.times.length) return;
    st.playing = setInterval(() => setIndex(st.index + 1 >= st.times.length ? 0 : st.index + 1), 1500);
    render();
  }

  function label() {
    if (st.index < 0) return cim.t('floodMax');
    const t = st.times[st.index];
    return `${Math.round(t / 60)} ${cim.t('floodMinutes')}${st.instants[st.index] ? ` · ${st.instants[st.index].slice(11, 16)}Z` : ''}`;
  }

  function render() {
    const el = st.el;
    if (!el) return;
    if (st.available === false) { el.innerHTML = `<h2>${cim.t('flood')}</h2><p class="flood-none">${cim.t('floodNone')}</p>`; return; }
    if (!st.run) { el.innerHTML = `<h2>${cim.t('flood')}</h2><p>${cim.t('loading')}</p>`; return; }
    const s = st.impacts && st.impacts.summary;
    const rain = st.report && st.report.rain ? `${cim.t('floodRain')} ${(st.report.rain.depth_mm || 0).toFixed(1)} mm` : '';
    const top = st.impacts && st.impacts.buildings ? st.impacts.buildings.filter(b => b.affected)
      .sort((a, b) => b.max_depth_m - a.max_depth_m).slice(0, 8) : [];
    const shelters = st.impacts && st.impacts.shelters ? st.impacts.shelters : [];
    el.innerHTML = `<h2>${cim.t('flood')}</h2>
      <label class="flood-run">${cim.t('floodRun')} <select>${st.runs.map(r =>
        `<option value="${esc(r.id)}"${r.id === st.run ? ' selected' : ''}>${esc(r.id)}</option>`).join('')}</select></label>
      <div class="flood-rain">${esc(rain)}</div>
      <div class="flood-time"><button type="button" class="flood-play">${st.playing ? cim.t('floodPause') : cim.t('floodPlay')}</button>
        <input type="range" class="flood-slider" min="-1" max="${st.times.length - 1}" step="1" value="${st.index}">
        <span class="flood-label">${esc(label())}</span></div>
      <div class="flood-legend">${DEPTH_STOPS.map(([v, c]) => `<span><i style="background:${c}"></i>${v}</span>`).join('')} m</div>
      ${s ? `<ul class="flood-summary">
        <li>${cim.t('floodAffected')}: <b>${s.buildings_affected}</b> ${cim.t('floodOf')} ${s.buildings_total}</li>
        <li>${cim.t('floodRoads')}: <b>${(s.roads_impassable_m / 1000).toFixed(2)}</b> ${cim.t('floodKm')}</li>
        <li>${cim.t('floodPeople')}: <b>${s.affected_population}</b> ${cim.t('floodPeopleUnit')}</li>
        <li>${cim.t('floodShelters')}: <b>${s.shelters_dry}</b> ${cim.t('floodDry')} ${cim.t('floodOf')} ${s.shelters_total}</li></ul>` : ''}
      <ol class="flood-buildings">${top.map((b, i) => `<li data-i="${i}">${esc(b.address || b.id)}
        <span>${b.max_depth_m.toFixed(2)} m · ${minutes(b.time_to_0_15m_s)}</span></li>`).join('')}</ol>
      <ul class="flood-shelters">${shelters.map(sh => `<li class="${sh.dry ? 'dry' : 'wet'}">${esc(sh.name)}
        <span>${sh.dry ? cim.t('floodDry') : cim.t('floodWet')}</span></li>`).join('')}</ul>
      <h3>${cim.t('floodAlerts')}</h3>
      <ul class="flood-alerts">${st.alerts.length ? st.alerts.map(a => `<li data-run="${esc(a.run)}">
        ${esc(a.trigger.observed_property)} ${esc(a.trigger.level)} · ${esc(a.trigger.time.slice(11, 16))}Z ·
        ${(a.buildings || []).length} ${cim.t('floodBuildingsUnit')} · ${a.summary.warning_areas} ${cim.t('floodAreas')}</li>`).join('')
        : `<li>${cim.t('floodNoAlerts')}</li>`}</ul>
      ${st.here ? `<div class="flood-here"><b>${cim.t('floodHere')}</b>: ${cim.t('floodMax')}
        ${st.here.max_depth_m == null ? '—' : st.here.max_depth_m.toFixed(2) + ' m'} · ${cim.t('floodArrive')}
        ${minutes(st.here['time_to_0.15m_s'])}</div>` : ''}`;
    el.querySelector('.flood-run select').onchange = e => loadRun(e.target.value);
    el.querySelector('.flood-slider').oninput = e => setIndex(Number(e.target.value));
    el.querySelector('.flood-play').onclick = play;
    el.querySelectorAll('.flood-buildings li').forEach(li => {
      li.onclick = () => {
        const b = top[Number(li.dataset.i)];
        const f = st.geo.buildings && st.geo.buildings.features.find(x => x.properties.id === b.id);
        if (f) { const c = f.geometry.coordinates[0][0]; cim.viewer.flyTo(c[0], c[1], 18); }
      };
    });
    el.querySelectorAll('.flood-alerts li[data-run]').forEach(li => { li.onclick = () => loadRun(li.dataset.run); });
  }

  cim.register({
    id: 'flood',
    order: 55,
    title: {zh: '应急一张图', en: 'Emergency map'},
    panel(el) { st.el = el; render(); },
    identify(result) {
      return st.here ? `<div class="flood-identify">${cim.t('floodDepth')}: ${st.here.max_depth_m == null ? '—'
        : st.here.max_depth_m.toFixed(2) + ' m'} · ${cim.t('floodArrive')} ${minutes(st.here['time_to_0.15m_s'])}</div>` : '';
    },
    async start() {
      if (cim.config.flood === false) { st.available = false; render(); return; }  // the server has none for us
      try {
        st.runs = (await cim.fetchJson('/flood')).runs || [];
      } catch (err) {
        st.available = false;
        render();
        return;
      }
      st.available = st.runs.length > 0;
      if (!st.available) { render(); return; }
      const first = st.runs.find(r => r.id === 'storm-50y') || st.runs[0];
      await loadRun(first.id);
      await loadAlerts();
      setInterval(loadAlerts, 30000);
      cim.on('click', async ({lon, lat}) => {
        if (!st.run) return;
        try { st.here = await cim.fetchJson(url(`/point?lon=${lon}&lat=${lat}`)); } catch (err) { st.here = null; }
        render();
      });
    }
  });

  // for tests and notebooks: the panel's state
  cim.flood = st;
})();

/* Identify: a click on the map asks the server what every layer the caller may see says there (/identify) and
   shows it in the info panel, after the clicked feature's own attributes; features add sections with
   `identify(result)`. */
(function () {
  'use strict';
  const infoEl = document.getElementById('info');
  const esc = cim.escapeHtml;
  let last = null;

  function fmt(v) {
    if (v === null || v === undefined) return '';
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(2);
    return String(v);
  }
  function propsTable(props) {
    const rows = Object.entries(props || {}).filter(([k]) => k !== 'layerName')
      .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmt(v))}</td></tr>`);
    return `<table>${rows.join('')}</table>`;
  }

  function show(picked, result) {
    const t = cim.t;
    const parts = [`<header><b>${t('identify')}</b><button type="button" class="close" aria-label="${t('close')}">×</button></header>`];
    if (picked) {
      parts.push(`<section class="hit picked"${picked.layer ? ` data-layer="${esc(picked.layer)}"` : ''}><h4>${t('clicked')}: ${esc(picked.title)}</h4>${propsTable(picked.properties)}</section>`);
    }
    for (const f of cim.features()) {
      if (!f.identify) continue;
      try { const html = f.identify(result || {}, picked); if (html) parts.push(html); } catch (err) { console.error(err); }
    }
    const results = (result && result.results) || [];
    results.forEach(r => {
      const rel = r.relation === 'contains' ? t('contains') : `${t('nearest')} ${fmt(r.distance_m)} ${t('metres')}`;
      parts.push(`<section class="hit" data-layer="${esc(r.layer)}"><h4>${esc(r.title)} <small>${esc(rel)}</small></h4>${propsTable(r.properties)}</section>`);
    });
    if (!picked && !results.length) parts.push(`<p>${t('noResult')}</p>`);
    infoEl.innerHTML = parts.join('');
    infoEl.hidden = false;
    infoEl.querySelector('.close').onclick = () => { infoEl.hidden = true; };
  }

  async function identifyAt(lon, lat, picked) {
    const url = `${cim.config.routes.identify}?lon=${lon.toFixed(7)}&lat=${lat.toFixed(7)}`;
    let result = {results: []};
    try { result = await cim.fetchJson(url); } catch (err) { console.error(err); }
    last = {lon, lat, picked, result};
    show(picked, result);
    cim.emit('identify', last);
    return result;
  }

  cim.identify = {at: identifyAt, show, propsTable, fmt, get last() { return last; }};
  cim.register({
    id: 'identify', order: 5,
    start() { cim.on('click', c => identifyAt(c.lon, c.lat, c.picked)); }
  });
})();

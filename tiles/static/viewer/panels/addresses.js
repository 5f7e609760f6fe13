/* Standard addresses in the viewer (issue 18): the search box asks the geocoder, with suggestions as you type
   (typo-tolerant, from /geocode/suggest), and the identify panel shows the 一标三实 of the nearest standard address
   (counts of residents, organisations and houses the caller may see, from /reverse).
   Hooks: search.js's doSearch asks cim.addresses.search(q) first; everything else is event delegation on the side
   panel and the `identify` event, so a re-rendered panel keeps working. */
(function () {
  'use strict';
  const routes = cim.config.routes || {};
  if (!routes.geocode) return;
  const panel = document.getElementById('panel');
  const infoEl = document.getElementById('info');
  const esc = cim.escapeHtml;
  const zh = () => cim.lang !== 'en';
  const KINDS = {population: ['实有人口', 'Residents'], organisations: ['实有单位', 'Organisations'],
    houses: ['实有房屋', 'Houses']};
  // only when the caller may see the standard addresses (a server without them, or a caller who may not see them,
  // answers 404); with a lazy tree (hundreds of layers) the page does not know yet: the first answer tells
  let available = !!cim.config.lazy || (cim.config.tree || []).some(e => e.kind === 'vector' && e.name === 'addresses');
  let timer = null;
  let seq = 0;

  async function getJson(url) {
    const resp = await fetch(cim.withKey(url));
    if (resp.status === 404) { available = false; return null; }
    return resp.ok ? resp.json() : null;
  }

  function list() {
    let ul = panel.querySelector('ul.address-suggestions');
    if (!ul) {
      const form = panel.querySelector('form.search');
      if (!form) return null;
      ul = document.createElement('ul');
      ul.className = 'address-suggestions';
      ul.setAttribute('role', 'listbox');
      form.after(ul);
    }
    return ul;
  }

  function go(hit) {
    cim.viewer.flyTo(hit.lon, hit.lat, 18);
    cim.identify.at(hit.lon, hit.lat, null);
  }

  function show(hits) {
    const ul = list();
    if (!ul) return;
    ul.innerHTML = '';
    hits.forEach(h => {
      const li = document.createElement('li');
      li.setAttribute('role', 'option');
      li.dataset.code = h.code;
      li.innerHTML = `${esc(h.address)} <small>${Math.round(h.score * 100)}%</small>`;
      li.onclick = () => { ul.innerHTML = ''; go(h); };
      ul.appendChild(li);
    });
  }

  async function suggest(q) {
    const mine = ++seq;
    if (!available || !q.trim()) { show([]); return []; }
    const doc = await getJson(`${routes.suggest}?q=${encodeURIComponent(q.slice(0, 200))}&limit=8`);
    if (mine !== seq) return [];  // a newer keystroke won
    const hits = (doc && doc.suggestions) || [];
    show(hits);
    return hits;
  }

  // suggestions as you type (delegated: the panel is re-rendered when the language changes)
  panel.addEventListener('input', ev => {
    if (!ev.target.matches('form.search input[name=q]')) return;
    clearTimeout(timer);
    const q = ev.target.value;
    timer = setTimeout(() => suggest(q), 150);
  });

  // the search button: the geocoder's match, if it has one (search.js falls back to its text search otherwise)
  async function search(q) {
    if (!available || !q.trim()) return null;
    const doc = await getJson(`${routes.geocode}?q=${encodeURIComponent(q.slice(0, 500))}`);
    const r = doc && doc.result;
    if (!r || !r.matched) return null;
    show([]);
    const results = panel.querySelector('.search-results');
    if (results) {
      results.innerHTML = '';
      const li = document.createElement('li');
      li.innerHTML = `<b>${esc(r.address)}</b> <small>${esc(r.reason)} ${Math.round(r.score * 100)}%</small>`;
      li.onclick = () => go(r);
      results.appendChild(li);
    }
    go(r);
    return [{label: r.address, value: r.address, title: zh() ? '标准地址' : 'Standard address', field: 'address',
      lon: r.lon, lat: r.lat, code: r.code, reason: r.reason, score: r.score}];
  }

  // the identify panel: the standard address at the clicked place and its 一标三实 counts
  async function annotate(last) {
    if (!available || !last || infoEl.querySelector('section.address')) return;
    const doc = await getJson(`${routes.reverse}?lon=${last.lon.toFixed(7)}&lat=${last.lat.toFixed(7)}`);
    if (!doc || !doc.code || cim.identify.last !== last || infoEl.querySelector('section.address')) return;
    const rows = [[zh() ? '标准地址' : 'Address', doc.address], [zh() ? '地址编码' : 'Code', doc.code],
      [zh() ? '社区' : 'Community', doc.community], [zh() ? '街道' : 'Town', doc.town]];
    Object.entries(doc.links || {}).forEach(([k, n]) => rows.push([(KINDS[k] || [k, k])[zh() ? 0 : 1], n]));
    const sec = document.createElement('section');
    sec.className = 'hit address';
    sec.innerHTML = `<h4>${zh() ? '标准地址 · 一标三实' : 'Standard address'} <small>${esc(Math.round(doc.distance_m))} m</small></h4>` +
      `<table>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v == null ? '' : v)}</td></tr>`).join('')}</table>`;
    const header = infoEl.querySelector('header');
    if (header) header.after(sec); else infoEl.prepend(sec);
  }

  cim.addresses = {search, suggest, get available() { return available; }};
  cim.register({
    id: 'addresses', order: 11,
    start() { cim.on('identify', last => { annotate(last).catch(err => console.error(err)); }); }
  });
})();

/* Search: addresses, names and codes over the caller's layers (/search); the map flies to the first hit. */
(function () {
  'use strict';
  const esc = cim.escapeHtml;
  let list = null;

  async function doSearch(q) {
    if (!list) return [];
    list.innerHTML = '';
    if (!q.trim()) return [];
    const geocoded = cim.addresses && await cim.addresses.search(q);  // panels/addresses.js: the geocoder first
    if (geocoded) return geocoded;
    let results = [];
    try { results = (await cim.fetchJson(`${cim.config.routes.search}?q=${encodeURIComponent(q)}`)).results; }
    catch (err) { console.error(err); }
    if (!results.length) list.innerHTML = `<li>${cim.t('noResult')}</li>`;
    results.forEach(r => {
      const li = document.createElement('li');
      li.innerHTML = `<b>${esc(r.label || r.value)}</b> <small>${esc(r.title)}${r.field !== 'name' ? ' · ' + esc(r.value) : ''}</small>`;
      li.onclick = () => { cim.viewer.flyTo(r.lon, r.lat, 18); cim.identify.at(r.lon, r.lat, null); };
      list.appendChild(li);
    });
    if (results.length) cim.viewer.flyTo(results[0].lon, results[0].lat, 18);
    return results;
  }

  cim.search = {run: doSearch};
  cim.register({
    id: 'search', order: 10,
    panel(el) {
      const t = cim.t;
      el.innerHTML = `<form class="search"><input type="search" name="q" placeholder="${t('search')}" aria-label="${t('search')}">
        <button type="submit">${t('go')}</button></form><ul class="search-results"></ul>`;
      list = el.querySelector('.search-results');
      el.querySelector('form.search').onsubmit = ev => { ev.preventDefault(); doSearch(ev.target.q.value); };
    }
  });
})();

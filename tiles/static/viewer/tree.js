/* The layer tree for thousands of layers: base maps and 3D models, then the CIM catalogue's top-level themes with
   their themes, collapsed with their layer counts when the caller sees many layers. A theme's layers are fetched
   (/viewer/layers?theme=) and listed only when it is opened; a layer that is off has no deck.gl layer and asks for
   no tile. A filter box (title, name, department, theme, pinyin or its initials: `jzw` finds 建筑物), "only visible"
   and "recently used" views. */
(function () {
  'use strict';
  const esc = cim.escapeHtml;
  const RECENT_KEY = 'cim.viewer.recent';
  const RECENT_MAX = 20;
  let root = null;
  let view = 'tree';       // 'tree' | 'filter' | 'visible' | 'recent'
  let filterText = '';
  let filterResult = null; // {matched, layers}
  const open = new Set();  // open groups and themes
  const loadedThemes = new Set();
  let filterTimer = null;

  cim.addText({
    zh: {filterLayers: '筛选图层：名称、部门、主题或拼音首字母', onlyVisible: '仅已打开', recent: '最近使用',
      allLayers: '全部', matched: '个匹配', noLayers: '没有图层'},
    en: {filterLayers: 'Filter layers: title, department, theme or pinyin initials', onlyVisible: 'Visible only',
      recent: 'Recent', allLayers: 'All', matched: 'matched', noLayers: 'No layers'}
  });

  function recent() {
    try { return JSON.parse(localStorage.getItem(RECENT_KEY) || '[]'); } catch (err) { return []; }
  }
  function touch(id) {
    const list = [id].concat(recent().filter(x => x !== id)).slice(0, RECENT_MAX);
    try { localStorage.setItem(RECENT_KEY, JSON.stringify(list)); } catch (err) { /* private mode */ }
  }

  function swatch(e) {
    if (e.kind !== 'vector') return `<span class="swatch ${esc(e.kind)}"></span>`;
    const [r, g, b] = e.color;
    return `<span class="swatch ${esc(e.geometry)}" style="--c: rgb(${r},${g},${b})"></span>`;
  }

  function row(e, withTheme) {
    const t = cim.t, s = cim.viewer.state[e.id];
    return `<div class="layer" data-id="${esc(e.id)}">
      <label title="${esc(e.name)} · ${esc(e.department || '')} · ${esc(e.security || '')}">
        <input type="checkbox" ${s && s.visible ? 'checked' : ''}> ${swatch(e)}
        <span class="title">${esc(e.title)}</span>
        ${withTheme && e.theme_title ? `<small class="theme-title">${esc(e.theme_title)}</small>` : ''}
        ${e.feature_count != null ? `<small>${e.feature_count} ${t('features')}</small>` : ''}
        ${e.security && e.security !== 'public' ? `<small class="sec ${esc(e.security)}">${esc(e.security)}</small>` : ''}
      </label>
      <input type="range" min="0" max="1" step="0.05" value="${s ? s.opacity : 1}" aria-label="${t('opacity')}">
    </div>`;
  }

  function addEntries(list) {
    for (const e of list) if (!cim.viewer.entries[e.id]) cim.viewer.addLayer(e, {quiet: true});
    return list.map(e => cim.viewer.entries[e.id]);
  }

  async function fetchLayers(params) {
    const q = Object.entries(params).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
    const page = await cim.fetchJson(`${cim.config.routes.layers}?${q}`);
    addEntries(page.layers);
    return page;
  }

  /** Load a theme's layers (once) and show them. */
  async function openTheme(path) {
    open.add(path);
    if (cim.config.lazy && !loadedThemes.has(path)) {
      loadedThemes.add(path);
      await fetchLayers({theme: path, limit: 5000});
    }
    render();
  }

  function themeRows(path) {
    const v = cim.viewer;
    return Object.values(v.entries).filter(e => e.kind === 'vector' && e.theme === path);
  }

  function treeHtml() {
    const v = cim.viewer, titles = cim.config.groups;
    const fixed = {maps: [], models: []};
    const others = {};
    for (const e of Object.values(v.entries)) {
      if (e.hidden_in_tree) continue;
      if (fixed[e.group]) fixed[e.group].push(e);
      else if (e.kind !== 'vector') (others[e.group] = others[e.group] || []).push(e);
    }
    const themes = cim.config.themes || [];
    const byGroup = {};
    for (const th of themes) (byGroup[th.group] = byGroup[th.group] || []).push(th);
    const parts = [];
    for (const g of ['maps', 'models']) {
      if (!fixed[g].length) continue;
      parts.push(`<fieldset class="group" data-group="${g}"><legend>${esc(cim.title(titles[g]))}</legend>${fixed[g].map(e => row(e)).join('')}</fieldset>`);
    }
    const groupOrder = Object.keys(titles).filter(g => byGroup[g] || others[g]);
    for (const g of Object.keys(byGroup).concat(Object.keys(others))) if (!groupOrder.includes(g)) groupOrder.push(g);
    for (const g of groupOrder) {
      if (g === 'maps' || g === 'models') continue;
      const list = byGroup[g] || [];
      const count = list.reduce((n, th) => n + th.count, 0) + (others[g] || []).length;
      const isOpen = open.has(g);
      parts.push(`<details class="group" data-group="${esc(g)}"${isOpen ? ' open' : ''}>
        <summary>${esc(titles[g] ? cim.title(titles[g]) : g)} <small class="count">${count}</small></summary>
        ${isOpen ? list.map(th => {
          const thOpen = open.has(th.path);
          return `<details class="theme" data-theme="${esc(th.path)}"${thOpen ? ' open' : ''}>
            <summary>${esc(cim.lang === 'en' ? th.en : th.zh)} <small class="count">${th.count}</small></summary>
            ${thOpen ? themeRows(th.path).map(e => row(e)).join('') : ''}</details>`;
        }).join('') + (others[g] || []).map(e => row(e)).join('') : ''}
      </details>`);
    }
    return parts.join('');
  }

  function listHtml(list, header) {
    return `<p class="tree-note">${header}</p>` + (list.length ? list.map(e => row(e, true)).join('') : `<p>${cim.t('noLayers')}</p>`);
  }

  function bodyHtml() {
    const v = cim.viewer, t = cim.t;
    if (view === 'filter' && filterResult) {
      return listHtml(filterResult.layers.map(e => v.entries[e.id]).filter(Boolean), `${filterResult.matched} ${t('matched')}`);
    }
    if (view === 'visible') {
      const list = v.order.map(id => v.entries[id]).filter(e => v.state[e.id].visible && !e.hidden_in_tree);
      return listHtml(list, `${list.length} · ${t('onlyVisible')}`);
    }
    if (view === 'recent') {
      const list = recent().map(id => v.entries[id]).filter(Boolean);
      return listHtml(list, t('recent'));
    }
    return treeHtml();
  }

  function render() {
    if (!root) return;
    const t = cim.t;
    const total = (cim.config.layer_total || 0);
    root.innerHTML = `<h2>${t('layers')} <small class="count">${total}</small></h2>
      <div class="tree-tools">
        <input type="search" class="layer-filter" placeholder="${esc(t('filterLayers'))}" aria-label="${esc(t('filterLayers'))}" value="${esc(filterText)}">
        <div class="views">
          <button type="button" data-view="tree" class="${view === 'tree' || view === 'filter' ? 'on' : ''}">${t('allLayers')}</button>
          <button type="button" data-view="visible" class="${view === 'visible' ? 'on' : ''}">${t('onlyVisible')}</button>
          <button type="button" data-view="recent" class="${view === 'recent' ? 'on' : ''}">${t('recent')}</button>
        </div>
      </div>
      <div class="tree">${bodyHtml()}</div>`;
    wire();
  }

  function wire() {
    const v = cim.viewer;
    const input = root.querySelector('.layer-filter');
    input.oninput = () => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(() => runFilter(input.value), 150);
    };
    root.querySelectorAll('button[data-view]').forEach(b => {
      b.onclick = async () => {
        view = b.dataset.view;
        if (view === 'tree') { filterText = ''; filterResult = null; }
        if (view === 'recent') {
          const missing = recent().filter(id => !v.entries[id] && id.startsWith('layer:'));
          if (missing.length) await fetchLayers({ids: missing.join(',')});
        }
        render();
      };
    });
    root.querySelectorAll('details.group, details.theme').forEach(d => {
      d.addEventListener('toggle', () => {
        const key = d.dataset.theme || d.dataset.group;
        if (d.open === open.has(key)) return;
        if (!d.open) { open.delete(key); render(); return; }
        if (d.dataset.theme) openTheme(key).catch(err => console.error(err));
        else { open.add(key); render(); }
      });
    });
    root.querySelectorAll('.layer').forEach(div => {
      const id = div.dataset.id;
      div.querySelector('input[type=checkbox]').onchange = ev => v.setVisible(id, ev.target.checked);
      div.querySelector('input[type=range]').oninput = ev => v.setOpacity(id, Number(ev.target.value));
    });
  }

  async function runFilter(text) {
    filterText = text;
    if (!text.trim()) { view = 'tree'; filterResult = null; render(); focusFilter(); return filterResult; }
    const page = await fetchLayers({q: text.trim(), limit: 200});
    if (filterText !== text) return page; // a newer filter is on its way
    filterResult = page;
    view = 'filter';
    render();
    focusFilter();
    return page;
  }
  function focusFilter() {
    const input = root && root.querySelector('.layer-filter');
    if (input) { input.focus(); input.setSelectionRange(input.value.length, input.value.length); }
  }

  cim.tree = {render, openTheme, filter: runFilter, fetchLayers, addEntries, recent,
    setView(name) { view = name; render(); }, get view() { return view; }};
  cim.register({
    id: 'tree', order: 90,
    panel(el) { root = el; render(); },
    start() {
      // a small catalogue opens fully; a big one starts collapsed
      if (!cim.config.lazy) for (const th of (cim.config.themes || [])) { open.add(th.group); open.add(th.path); }
      render();
      cim.on('layers', render);
      cim.on('visibility', ({id, visible}) => {
        if (visible) touch(id);
        const box = root && root.querySelector(`.layer[data-id="${CSS.escape(id)}"] input[type=checkbox]`);
        if (box) box.checked = visible;
      });
    }
  });
})();

/* The viewer's start: the side panel (one section per registered feature, the tool bar of every feature's tools),
   the language switch, start of every feature, readiness, and `window.cimViewer` for tests and users' scripts.
   Loaded last, after core.js, the core modules and every panels/*.js file (docs/viewer.md, "Adding a panel"). */
(function () {
  'use strict';
  const panel = document.getElementById('panel');
  const statusEl = document.getElementById('status');
  const v = cim.viewer;
  const esc = cim.escapeHtml;
  let loadedOnce = false;

  cim.register({
    id: 'view', order: 20,
    tools: [{id: 'home', title: {zh: '全图', en: 'Home'}, run: () => v.goHome()},
      {id: '2d', title: {zh: '二维', en: '2D'}, run: () => v.setMode('2d')},
      {id: '3d', title: {zh: '三维', en: '3D'}, run: () => v.setMode('3d')}]
  });

  function renderPanel() {
    const features = cim.features();
    const tools = features.flatMap(f => f.tools || []);
    panel.innerHTML = `<header><h1>${esc(cim.config.title)}</h1><button type="button" class="lang">${cim.t('lang')}</button></header>`;
    let toolsPlaced = false;
    const placeTools = () => {
      const bar = document.createElement('div');
      bar.className = 'tools';
      for (const tool of tools) {
        const b = document.createElement('button');
        b.type = 'button';
        b.dataset.tool = tool.id;
        b.textContent = cim.title(tool.title);
        b.onclick = () => { try { tool.run(); } catch (err) { console.error(err); } };
        bar.appendChild(b);
      }
      panel.appendChild(bar);
      toolsPlaced = true;
    };
    for (const f of features) {
      if (!toolsPlaced && f.order > 20) placeTools();
      if (!f.panel) continue;
      const section = document.createElement('section');
      section.className = 'feature';
      section.dataset.feature = f.id;
      panel.appendChild(section);
      try { f.panel(section); } catch (err) { console.error(err); }
    }
    if (!toolsPlaced) placeTools();
    panel.querySelector('.lang').onclick = () => cim.setLang(cim.lang === 'zh' ? 'en' : 'zh');
  }

  cim.on('lang', renderPanel);
  renderPanel();
  v.started = true;
  for (const f of cim.features()) v.startFeature(f);
  v.refresh();

  const timer = setInterval(() => {
    if (cim.compare.loaded()) { loadedOnce = true; statusEl.dataset.loaded = 'true'; clearInterval(timer); v.refresh(); }
  }, 200);

  globalThis.cimViewer = {
    deck: v.deck, config: cim.config, state: v.state, loaded: () => cim.compare.loaded(), refresh: v.refresh,
    setVisible: v.setVisible, setMode: v.setMode, goHome: v.goHome, flyTo: v.flyTo,
    identifyAt: (lon, lat, picked) => cim.identify.at(lon, lat, picked),
    doSearch: q => cim.search.run(q),
    startMeasure: kind => cim.measure.start(kind),
    setCompare: (left, right) => cim.compare.set(left, right),
    compare: cim.compare, tree: cim.tree, cim,
    get measure() { return cim.measure.current; },
    get lastIdentify() { return cim.identify.last; },
    get loadedOnce() { return loadedOnce; },
    project: v.project
  };
})();

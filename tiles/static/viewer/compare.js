/* Comparison (卷帘 / 分屏 / 多屏比对): swipe, side by side and 2x2 screens with one camera.

   Every screen is a deck.gl Deck of its own (its own Tile3DLayer traversal, so 3D models render on every side)
   showing the layers that are on in the map, without the compared ones, plus its own: a layer, a version of a
   layer (`/tiles/{layer}/v{n}/...`) or a model. Moving any screen moves them all. Swipe stacks two screens and
   clips the upper one at a divider the user drags. */
(function () {
  'use strict';
  const D = globalThis.deck;
  const MODES = {swipe: 2, side: 2, quad: 4};
  let current = null; // {mode, screens: [[ids]], decks: [Deck], split}
  let host = null;

  cim.addText({
    zh: {swipe: '卷帘', side: '分屏', quad: '四分屏', version: '版本', screen: '屏', versionsOf: '版本对比'},
    en: {swipe: 'Swipe', side: 'Side by side', quad: '2 x 2', version: 'version', screen: 'Screen', versionsOf: 'Versions'}
  });

  /** A tree entry for one version of a vector layer (its own id and tile URL). */
  function versionEntry(id, version) {
    const e = cim.viewer.entries[id];
    if (!e || e.kind !== 'vector') throw new Error(`${id} is not a vector layer`);
    const vid = `${id}@v${version}`;
    if (!cim.viewer.entries[vid]) {
      const url = e.url.replace(`/tiles/${e.name}/`, `/tiles/${e.name}/v${version}/`);
      cim.viewer.addLayer(Object.assign({}, e, {id: vid, url, title: `${e.title} v${version}`, visible: false,
        hidden_in_tree: true, version}), {quiet: true});
    }
    return vid;
  }

  async function versions(id) {
    const e = cim.viewer.entries[id];
    return cim.fetchJson(`${cim.config.routes.versions}/${encodeURIComponent(e.name)}`);
  }

  function screenLayers(ids, compared) {
    const v = cim.viewer;
    const shown = v.order.filter(id => v.state[id].visible && !compared.has(id));
    const mine = v.order.filter(id => ids.includes(id)).concat(ids.filter(id => !v.order.includes(id)));
    const list = shown.concat(mine.filter(id => !shown.includes(id)));
    list.sort((a, b) => cim.layerOrder(v.entries[a]) - cim.layerOrder(v.entries[b]));
    return list.filter(id => v.entries[id]).flatMap(id => [].concat(cim.layerKinds[v.entries[id].kind].create(
      v.entries[id], {ground: v.ground, viewer: v, screen: true})));
  }

  function syncAll(vs, source) {
    cim.viewer.setViewState(vs);
    for (const d of current ? current.decks : []) if (d !== source) d.setProps({viewState: cim.viewer.viewState});
  }

  function layout() {
    if (!current) return;
    const n = current.decks.length;
    current.els.forEach((el, i) => {
      el.style.clipPath = '';
      if (current.mode === 'swipe') {
        Object.assign(el.style, {left: '0', top: '0', width: '100%', height: '100%'});
        // each screen shows only its side: the canvases are transparent where they draw nothing
        el.style.clipPath = i === 0 ? `inset(0 ${(1 - current.split) * 100}% 0 0)` : `inset(0 0 0 ${current.split * 100}%)`;
      } else if (current.mode === 'side') {
        Object.assign(el.style, {left: `${i * 50}%`, top: '0', width: '50%', height: '100%'});
      } else {
        Object.assign(el.style, {left: `${(i % 2) * 50}%`, top: `${Math.floor(i / 2) * 50}%`, width: '50%', height: '50%'});
      }
    });
    if (current.divider) current.divider.style.left = `${current.split * 100}%`;
    void n;
  }

  function stop() {
    if (!current) return;
    for (const d of current.decks) d.finalize();
    host.remove();
    host = null;
    current = null;
    document.getElementById('map').classList.remove('comparing');
    cim.viewer.refresh();
    cim.emit('compare', null);
  }

  /** Start a comparison: mode 'swipe' | 'side' | 'quad'; screens: one list of tree ids per screen. */
  function start(mode, screens, opts) {
    if (!MODES[mode]) throw new Error(`compare mode ${mode}: swipe, side or quad`);
    stop();
    const mapEl = document.getElementById('map');
    host = document.createElement('div');
    host.className = `compare-host ${mode}`;
    mapEl.appendChild(host);
    mapEl.classList.add('comparing');
    const compared = new Set(screens.flat());
    current = {mode, screens, decks: [], els: [], split: (opts && opts.split) || 0.5};
    for (let i = 0; i < MODES[mode]; i++) {
      const el = document.createElement('div');
      el.className = 'compare-screen';
      el.dataset.screen = String(i);
      host.appendChild(el);
      const ids = screens[i] || [];
      const label = document.createElement('div');
      label.className = 'screen-label';
      label.textContent = ids.map(id => cim.viewer.entries[id] ? cim.viewer.entries[id].title : id).join(', ');
      el.appendChild(label);
      const d = new D.Deck({parent: el, width: '100%', height: '100%', controller: true,
        viewState: cim.viewer.viewState, layers: screenLayers(ids, compared),
        onViewStateChange: ({viewState}) => { syncAll(viewState, d); d.setProps({viewState}); return viewState; },
        onDeviceInitialized: device => cim.completeCompressedTextures(device)});
      current.decks.push(d);
      current.els.push(el);
    }
    if (mode === 'swipe') {
      const divider = current.divider = document.createElement('div');
      divider.className = 'swipe-divider';
      host.appendChild(divider);
      divider.addEventListener('pointerdown', ev => {
        ev.preventDefault();
        divider.setPointerCapture(ev.pointerId);
        const move = e => setSplit((e.clientX - host.getBoundingClientRect().left) / host.clientWidth);
        const up = () => { divider.removeEventListener('pointermove', move); divider.removeEventListener('pointerup', up); };
        divider.addEventListener('pointermove', move);
        divider.addEventListener('pointerup', up);
      });
    }
    layout();
    cim.emit('compare', {mode, screens});
    return current;
  }

  function setSplit(x) {
    if (!current) return;
    current.split = Math.min(0.98, Math.max(0.02, x));
    layout();
  }

  function loaded() {
    if (!current) return cim.viewer.loaded();
    return current.decks.every(d => d.isInitialized && d.layerManager &&
      d.layerManager.getLayers().filter(l => !l.parent && l.props.visible).every(l => l.isLoaded));
  }

  // the map's own view state moves the screens too (flyTo, home, scenes)
  cim.on('view', vs => { if (current) for (const d of current.decks) d.setProps({viewState: vs}); });
  // a section made, changed or cleared during a comparison cuts the models of every screen as it cuts the map's
  // (the screens' layers got the planes of their start from layers.js; their clones take the new ones)
  cim.on('section', () => {
    if (!current || !cim.section) return;
    for (const d of current.decks) {
      d.setProps({layers: d.props.layers.map(l => {
        const extra = cim.viewer.entries[l.id] && cim.section.layerProps(cim.viewer.entries[l.id]);
        return extra ? l.clone(extra) : l;
      })});
    }
  });

  function setCompare(left, right) {
    if (left && right) start('side', [[left], [right]]); else stop();
  }

  cim.compare = {start, stop, setSplit, versionEntry, versions, loaded, set: setCompare,
    get current() { return current && {mode: current.mode, screens: current.screens, split: current.split}; },
    get decks() { return current ? current.decks.slice() : []; }};
  cim.register({
    id: 'compare', order: 40,
    panel(el) {
      const t = cim.t, esc = cim.escapeHtml, v = cim.viewer;
      const options = v.order.filter(id => !v.entries[id].hidden_in_tree)
        .map(id => `<option value="${esc(id)}">${esc(v.entries[id].title)}</option>`).join('');
      el.innerHTML = `<details class="compare"><summary>${t('compare')}</summary>
        <label>${t('left')} <select name="a">${options}</select></label>
        <label>${t('right')} <select name="b">${options}</select></label>
        <div class="compare-modes">
          <button type="button" data-mode="swipe">${t('swipe')}</button>
          <button type="button" data-mode="side">${t('side')}</button>
          <button type="button" data-mode="versions">${t('versionsOf')}</button>
          <button type="button" data-mode="off">${t('compareOff')}</button>
        </div>
      </details>`;
      const a = () => el.querySelector('select[name=a]').value, b = () => el.querySelector('select[name=b]').value;
      el.querySelectorAll('button[data-mode]').forEach(btn => {
        btn.onclick = async () => {
          const mode = btn.dataset.mode;
          if (mode === 'off') stop();
          else if (mode === 'versions') {
            const doc = await versions(a());
            const vs = doc.versions.map(x => x.version);
            if (vs.length < 2) return;
            start('swipe', [[versionEntry(a(), vs[vs.length - 2])], [versionEntry(a(), vs[vs.length - 1])]]);
          } else start(mode, [[a()], [b()]]);
        };
      });
    }
  });
})();

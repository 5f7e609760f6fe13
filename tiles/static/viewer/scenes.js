/* Scenes (场景配置): a named view = the layers that are on (opacity, style), the camera, the mode and the time.
   Scenes are saved in the store (PUT /viewer/scenes/{name}), listed in /catalog to callers who may see all their
   layers, and opened by URL (/?scene=NAME) or from this panel. Panels that show time (flood, sensors) read the
   scene's time from the `scene` event. */
(function () {
  'use strict';
  const esc = cim.escapeHtml;
  let el = null;
  let current = null;

  cim.addText({
    zh: {scenes: '场景', openScene: '打开', saveScene: '保存当前场景', sceneName: '场景名（英文）', sceneTitle: '标题',
      noScenes: '暂无场景'},
    en: {scenes: 'Scenes', openScene: 'Open', saveScene: 'Save this view as a scene', sceneName: 'name (a-z, 0-9)',
      sceneTitle: 'Title', noScenes: 'No scenes yet'}
  });

  /** The scene document of what the map shows now. */
  function capture(name, title) {
    const v = cim.viewer, vs = v.viewState;
    const layers = v.order.filter(id => v.state[id].visible && !v.entries[id].hidden_in_tree).map(id => {
      const out = {id, visible: true, opacity: v.state[id].opacity};
      if (v.entries[id].style) out.style = v.entries[id].style;
      return out;
    });
    const doc = {name, title: title || name, layers, mode: (vs.pitch || 0) > 0 ? '3d' : '2d',
      camera: {longitude: vs.longitude, latitude: vs.latitude, zoom: vs.zoom, pitch: vs.pitch || 0, bearing: vs.bearing || 0}};
    if (cim.sceneTime) doc.time = cim.sceneTime;
    const cmp = cim.compare.current;
    if (cmp) doc.compare = {mode: cmp.mode, screens: cmp.screens};
    return doc;
  }

  /** Show a scene document: exactly its layers on (with their opacity and style), its camera, mode and time. */
  async function apply(scene) {
    const v = cim.viewer;
    const ids = (scene.layers || []).map(l => l.id);
    const missing = ids.filter(id => !v.entries[id] && id.startsWith('layer:'));
    if (missing.length) await cim.tree.fetchLayers({ids: missing.join(',')});
    for (const id of v.order) v.state[id].visible = false;
    for (const l of scene.layers || []) {
      if (!v.entries[l.id]) continue;
      if (l.style !== undefined) v.addLayer(Object.assign({}, v.entries[l.id], {style: l.style}), {quiet: true});
      v.state[l.id].visible = l.visible !== false;
      v.state[l.id].opacity = l.opacity == null ? 1 : l.opacity;
    }
    if (scene.camera) v.setViewState(Object.assign({}, scene.camera, {transitionDuration: 0}));
    else v.refresh();
    cim.sceneTime = scene.time || null;
    if (scene.compare && scene.compare.screens) cim.compare.start(scene.compare.mode, scene.compare.screens);
    current = scene;
    cim.emit('scene', scene);
    cim.emit('layers', null);
    for (const id of ids) cim.emit('visibility', {id, visible: true});
    return scene;
  }

  async function open(name) {
    const scene = await cim.fetchJson(`${cim.config.routes.scenes}/${encodeURIComponent(name)}`);
    return apply(scene);
  }

  async function save(name, title) {
    const saved = await cim.fetchJson(`${cim.config.routes.scenes}/${encodeURIComponent(name)}`,
      {method: 'PUT', body: capture(name, title)});
    const list = cim.config.scenes = (cim.config.scenes || []).filter(s => s.name !== name);
    list.push({name, title: saved.title, title_en: saved.title_en || '', description: saved.description || '',
      url: `${cim.config.base}/?scene=${name}`});
    list.sort((a, b) => a.name.localeCompare(b.name));
    render();
    return saved;
  }

  function render() {
    if (!el) return;
    const t = cim.t;
    const list = cim.config.scenes || [];
    el.innerHTML = `<details class="scenes"${list.length ? ' open' : ''}><summary>${t('scenes')} <small class="count">${list.length}</small></summary>
      <ul class="scene-list">${list.length ? list.map(s => `<li data-scene="${esc(s.name)}"><a href="${esc(cim.withKey(s.url))}">${esc(cim.lang === 'en' && s.title_en ? s.title_en : s.title)}</a>
        <small>${esc(s.description || '')}</small></li>`).join('') : `<li>${t('noScenes')}</li>`}</ul>
      <form class="scene-save"><input name="name" pattern="[a-z0-9][a-z0-9_-]*" placeholder="${esc(t('sceneName'))}" required>
        <input name="title" placeholder="${esc(t('sceneTitle'))}"><button type="submit">${t('saveScene')}</button>
        <span class="scene-msg"></span></form></details>`;
    el.querySelectorAll('li[data-scene] a').forEach(a => {
      a.onclick = ev => { ev.preventDefault(); open(a.parentElement.dataset.scene).catch(err => console.error(err)); };
    });
    el.querySelector('form.scene-save').onsubmit = ev => {
      ev.preventDefault();
      const f = ev.target;
      save(f.name.value, f.title.value).catch(err => { el.querySelector('.scene-msg').textContent = err.status === 401 ? cim.t('needKey') : err.message; });
    };
  }

  cim.scenes = {capture, apply, open, save, get current() { return current; }};
  cim.register({
    id: 'scenes', order: 15,
    panel(section) { el = section; render(); },
    start() {
      const scene = cim.config.scene;
      if (!scene) return;
      // the scene says exactly which layers are on: a layer another feature adds while the page starts (the live
      // sensors, say) is off unless the scene lists it (features start in one synchronous loop, viewer.js)
      const listed = new Set((scene.layers || []).filter(l => l.visible !== false).map(l => l.id));
      cim.viewer.overrides.initialVisible = e => listed.has(e.id);
      setTimeout(() => { cim.viewer.overrides.initialVisible = null; }, 0);
      apply(scene).catch(err => console.error(err));
    }
  });
})();

/* cim viewer core: the namespace every module of the page uses (globalThis.cim).

   It holds the page config, the languages, small helpers, an event bus and the feature registry. A feature (a
   panel, a set of layers, a tool) registers itself with `cim.register({...})` from its own file; the viewer starts
   every registered feature once the map exists (see docs/viewer.md, "Adding a panel"). Nothing here touches the
   map: map.js owns deck.gl. */
(function () {
  'use strict';
  const config = JSON.parse(document.getElementById('cim-config').textContent);

  const TEXT = {zh: {}, en: {}};
  const listeners = {};
  const features = [];

  const cim = globalThis.cim = {
    config,
    /** 'zh' or 'en': 中文 by default, English when the browser asks for it. */
    lang: (navigator.language || 'zh').toLowerCase().startsWith('en') ? 'en' : 'zh',
    /** The text of `key` in the current language (the key itself when nobody defined it). */
    t: key => (TEXT[cim.lang] && TEXT[cim.lang][key]) || TEXT.zh[key] || key,
    /** Add words: `cim.addText({zh: {k: '…'}, en: {k: '…'}})`. */
    addText(words) {
      for (const lang of Object.keys(words)) Object.assign(TEXT[lang] = TEXT[lang] || {}, words[lang]);
    },
    /** A `{zh, en}` title in the current language. */
    title: obj => obj == null ? '' : (typeof obj === 'string' ? obj : (obj[cim.lang] || obj.zh || obj.en || '')),
    setLang(lang) {
      cim.lang = lang;
      document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
      cim.emit('lang', lang);
    },
    /** `url` with the caller's `api_key=` when the page was opened with one. */
    withKey: url => !config.key_query ? url : url + (url.includes('?') ? '&' : '?') + config.key_query,
    escapeHtml: s => String(s).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c])),
    /** GET (or send) JSON to the page's server with the caller's key. Throws on a non-2xx answer. */
    async fetchJson(url, options) {
      const init = Object.assign({headers: {Accept: 'application/json'}}, options || {});
      if (init.body && typeof init.body !== 'string') {
        init.body = JSON.stringify(init.body);
        init.headers = Object.assign({'Content-Type': 'application/json'}, init.headers);
      }
      const resp = await fetch(cim.withKey(url), init);
      if (!resp.ok) {
        let detail = '';
        try { detail = (await resp.json()).description || ''; } catch (err) { /* not JSON */ }
        const error = new Error(`${resp.status} ${url}: ${detail}`);
        error.status = resp.status;
        throw error;
      }
      return resp.status === 204 ? null : resp.json();
    },
    on(event, fn) { (listeners[event] = listeners[event] || []).push(fn); return fn; },
    off(event, fn) { listeners[event] = (listeners[event] || []).filter(f => f !== fn); },
    emit(event, data) {
      for (const fn of (listeners[event] || []).slice()) {
        try { fn(data); } catch (err) { console.error(err); }
      }
    },
    /** Register a feature. Fields (all optional but `id`):
        id        unique name ('sensors')
        order     position among panels and tools (core features use 10-90; default 100)
        title     {zh, en}: the panel's heading
        panel(el) fill `el` (a <section> in the side panel) and keep it up to date; called again on a language change
        layers()  deck.gl layers drawn above the catalogue's layers, asked on every redraw
        tools     [{id, title: {zh, en}, run()}]: buttons in the tool bar
        identify(result) -> HTML or '' : a section added to the identify panel for a clicked place
        start()   called once the map exists (cim.viewer is ready) */
    register(feature) {
      if (!feature || !feature.id) throw new Error('cim.register: a feature needs an id');
      if (features.some(f => f.id === feature.id)) throw new Error(`cim.register: ${feature.id} is registered twice`);
      features.push(Object.assign({order: 100}, feature));
      features.sort((a, b) => a.order - b.order);
      if (cim.viewer && cim.viewer.started) cim.viewer.startFeature(features.find(f => f.id === feature.id));
    },
    features: () => features.slice(),
    /** Layer kinds: `cim.layerKinds[kind] = {create(entry, ctx) -> deck.gl layer or [layers]}` (layers.js defines map,
        3dtiles and vector; a feature adds its own kind and calls `cim.viewer.addLayer(entry)`). */
    layerKinds: {},
    viewer: null
  };

  cim.addText({
    zh: {layers: '图层', search: '搜索地址或名称', go: '搜索', home: '全图', mode2d: '二维', mode3d: '三维',
      opacity: '透明度', distance: '测距', area: '测面', clear: '清除', compare: '对比', compareOff: '结束对比',
      left: '左', right: '右', identify: '查询结果', contains: '所在', nearest: '最近', metres: '米',
      noResult: '无结果', lang: 'EN', measureHint: '单击添加点，双击结束', length: '长度', areaLabel: '面积',
      sqm: '平方米', features: '个要素', close: '关闭', clicked: '点击的要素', loading: '加载中…'},
    en: {layers: 'Layers', search: 'Search address or name', go: 'Search', home: 'Home', mode2d: '2D', mode3d: '3D',
      opacity: 'Opacity', distance: 'Distance', area: 'Area', clear: 'Clear', compare: 'Compare',
      compareOff: 'End compare', left: 'Left', right: 'Right', identify: 'Identify', contains: 'in',
      nearest: 'nearest', metres: 'm', noResult: 'No result', lang: '中文',
      measureHint: 'Click to add points, double-click to finish', length: 'Length', areaLabel: 'Area', sqm: 'm²',
      features: 'features', close: 'Close', clicked: 'Clicked feature', loading: 'Loading…'}
  });
})();

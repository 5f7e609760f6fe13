/* Thematic maps (专题制图): unique values, graduated colours and sizes, choropleth of a statistic per division
   (`cim layers stats`), heat map of points; legends of every styled layer on the map. The style is computed by the
   server from the data (/viewer/styles/{layer}/classify), previewed, and saved with the layer
   (PUT /viewer/styles/{layer}) for everybody and for other systems. */
(function () {
  'use strict';
  const esc = cim.escapeHtml;
  let el = null;
  let legendEl = null;

  cim.addText({
    zh: {thematic: '专题制图', kind: '类型', field: '字段', method: '分级', classes: '级数', ramp: '色带',
      source: '统计图层', agg: '统计', preview: '预览', save: '保存', reset: '恢复默认', legend: '图例',
      single: '单一符号', unique: '唯一值', graduated: '分级色彩', graduated_size: '分级符号', choropleth: '分区统计',
      heatmap: '热力图', quantile: '分位数', equal_interval: '等间距', jenks: '自然断点', saved: '已保存',
      needKey: '保存需要密钥', layer: '图层'},
    en: {thematic: 'Thematic map', kind: 'Type', field: 'Field', method: 'Breaks', classes: 'Classes', ramp: 'Ramp',
      source: 'Counted layer', agg: 'Statistic', preview: 'Preview', save: 'Save', reset: 'Default', legend: 'Legend',
      single: 'Single symbol', unique: 'Unique values', graduated: 'Graduated colours', graduated_size: 'Graduated sizes',
      choropleth: 'Choropleth by division', heatmap: 'Heat map', quantile: 'Quantiles', equal_interval: 'Equal intervals',
      jenks: 'Natural breaks', saved: 'Saved', needKey: 'Saving needs a key', layer: 'Layer'}
  });

  const vectorEntries = () => cim.viewer.order.map(id => cim.viewer.entries[id])
    .filter(e => e.kind === 'vector' && !e.hidden_in_tree && cim.viewer.state[e.id].visible);

  /** Give a layer a style (or null for its default) and redraw it. */
  function apply(id, style) {
    const e = cim.viewer.entries[id];
    cim.viewer.addLayer(Object.assign({}, e, {style}), {quiet: true});
    cim.viewer.refresh();
    renderLegend();
    cim.emit('style', {id, style});
  }

  async function classify(id, params) {
    const e = cim.viewer.entries[id];
    const q = Object.entries(params).filter(([, v]) => v !== '' && v != null)
      .map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
    const style = await cim.fetchJson(`${cim.config.routes.styles}/${encodeURIComponent(e.name)}/classify?${q}`);
    apply(id, style);
    return style;
  }
  async function save(id) {
    const e = cim.viewer.entries[id];
    if (!e.style) return null;
    const saved = await cim.fetchJson(`${cim.config.routes.styles}/${encodeURIComponent(e.name)}`,
      {method: 'PUT', body: e.style});
    apply(id, saved);
    return saved;
  }
  async function reset(id) {
    const e = cim.viewer.entries[id];
    try { await cim.fetchJson(`${cim.config.routes.styles}/${encodeURIComponent(e.name)}`, {method: 'DELETE'}); }
    catch (err) { if (err.status !== 404) throw err; }
    apply(id, null);
  }

  function legendHtml(e) {
    const s = e.style;
    const sw = c => `rgba(${c[0]},${c[1]},${c[2]},${(c[3] == null ? 255 : c[3]) / 255})`;
    let rows;
    if (s.kind === 'heatmap') {
      const stops = (s.heatmap.colors || []).map(sw).join(',');
      rows = `<div class="ramp" style="background: linear-gradient(90deg, ${stops})"></div>`;
    } else if (s.kind === 'single' || !(s.classes || []).length) {
      rows = `<div class="legend-row"><span class="legend-swatch" style="background:${sw(s.default_color)}"></span>${esc(e.title)}</div>`;
    } else {
      rows = s.classes.map(c => `<div class="legend-row"><span class="legend-swatch${c.size ? ' dot' : ''}" style="background:${sw(c.color)}${c.size ? `;width:${2 * c.size}px;height:${2 * c.size}px` : ''}"></span>${esc(c.label || c.value)}</div>`).join('');
    }
    const sub = s.kind === 'choropleth' ? ` · ${esc(s.choropleth.agg)} ${esc(s.choropleth.source)}${s.choropleth.source_field ? '.' + esc(s.choropleth.source_field) : ''}` :
      (s.field ? ` · ${esc(s.field)}` : '');
    return `<section class="legend" data-layer="${esc(e.id)}"><h4>${esc(s.title || e.title)}<small>${sub}</small></h4>${rows}</section>`;
  }

  function renderLegend() {
    if (!legendEl) {
      legendEl = document.createElement('div');
      legendEl.id = 'legend';
      document.body.appendChild(legendEl);
    }
    const styled = vectorEntries().filter(e => e.style && e.style.kind !== 'single');
    legendEl.innerHTML = styled.length ? `<b>${cim.t('legend')}</b>` + styled.map(legendHtml).join('') : '';
    legendEl.hidden = !styled.length;
  }

  function renderPanel() {
    if (!el) return;
    const t = cim.t;
    const layers = vectorEntries();
    const opts = (list, sel) => list.map(([v, label]) => `<option value="${esc(v)}"${v === sel ? ' selected' : ''}>${esc(label)}</option>`).join('');
    const current = el.querySelector('select[name=layer]') ? el.querySelector('select[name=layer]').value : '';
    const chosen = layers.find(e => e.id === current) || layers[0];
    const fields = chosen ? (chosen.fields || []) : [];
    const all = cim.viewer.order.map(id => cim.viewer.entries[id]).filter(e => e.kind === 'vector' && !e.hidden_in_tree);
    el.innerHTML = `<details class="thematic"><summary>${t('thematic')}</summary>
      <label>${t('layer')} <select name="layer">${opts(layers.map(e => [e.id, e.title]), chosen && chosen.id)}</select></label>
      <label>${t('kind')} <select name="kind">${opts(['single', 'unique', 'graduated', 'graduated_size', 'choropleth', 'heatmap'].map(k => [k, t(k)]), 'graduated')}</select></label>
      <label>${t('field')} <select name="field"><option value=""></option>${opts(fields.map(f => [f, f]))}</select></label>
      <label>${t('method')} <select name="method">${opts(['quantile', 'equal_interval', 'jenks'].map(k => [k, t(k)]), 'quantile')}</select></label>
      <label>${t('classes')} <input name="classes" type="number" min="2" max="12" value="5"></label>
      <label>${t('ramp')} <select name="ramp">${opts(['YlOrRd', 'Blues', 'Greens', 'Purples'].map(k => [k, k]), 'YlOrRd')}</select></label>
      <label>${t('source')} <select name="source"><option value=""></option>${opts(all.map(e => [e.name, e.title]))}</select></label>
      <label>${t('agg')} <select name="agg">${opts(['count', 'sum', 'mean', 'min', 'max'].map(k => [k, k]), 'count')}</select></label>
      <div class="thematic-actions">
        <button type="button" data-action="preview">${t('preview')}</button>
        <button type="button" data-action="save">${t('save')}</button>
        <button type="button" data-action="reset">${t('reset')}</button>
      </div><p class="thematic-msg"></p></details>`;
    const val = n => el.querySelector(`[name=${n}]`).value;
    const msg = el.querySelector('.thematic-msg');
    el.querySelector('select[name=layer]').onchange = () => { const open = el.querySelector('details').open; renderPanel(); el.querySelector('details').open = open; };
    el.querySelectorAll('button[data-action]').forEach(b => {
      b.onclick = async () => {
        const id = val('layer');
        if (!id) return;
        msg.textContent = '';
        try {
          if (b.dataset.action === 'preview') {
            await classify(id, {kind: val('kind'), field: val('field'), method: val('method'), classes: val('classes'),
              ramp: val('ramp'), source: val('kind') === 'choropleth' ? val('source') : '', agg: val('agg')});
          } else if (b.dataset.action === 'save') { await save(id); msg.textContent = t('saved'); }
          else await reset(id);
        } catch (err) { msg.textContent = err.status === 401 ? t('needKey') : String(err.message || err); }
      };
    });
  }

  cim.thematic = {classify, apply, save, reset, renderLegend, styleOf: id => cim.viewer.entries[id].style};
  cim.register({
    id: 'thematic', order: 45,
    panel(section) { el = section; renderPanel(); },
    start() {
      cim.on('visibility', () => { renderPanel(); renderLegend(); });
      cim.on('layers', renderPanel);
      cim.on('lang', renderLegend);
      renderLegend();
    }
  });
})();

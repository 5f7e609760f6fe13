/* The layer tree: the layers the caller may see, grouped by base maps, 3D models and the CIM catalogue's top-level
   themes; checkbox, opacity slider, legend swatch, feature count and security badge per layer. */
(function () {
  'use strict';
  const esc = cim.escapeHtml;
  let root = null;

  function swatch(e) {
    if (e.kind !== 'vector') return `<span class="swatch ${esc(e.kind)}"></span>`;
    const [r, g, b] = e.color;
    return `<span class="swatch ${e.geometry}" style="--c: rgb(${r},${g},${b})"></span>`;
  }

  function row(e) {
    const t = cim.t, s = cim.viewer.state[e.id];
    return `<div class="layer" data-id="${esc(e.id)}">
      <label title="${esc(e.name)} · ${esc(e.security || '')}">
        <input type="checkbox" ${s.visible ? 'checked' : ''}> ${swatch(e)}
        <span class="title">${esc(e.title)}</span>
        ${e.feature_count != null ? `<small>${e.feature_count} ${t('features')}</small>` : ''}
        ${e.security && e.security !== 'public' ? `<small class="sec ${esc(e.security)}">${esc(e.security)}</small>` : ''}
      </label>
      <input type="range" min="0" max="1" step="0.05" value="${s.opacity}" aria-label="${t('opacity')}">
    </div>`;
  }

  function render() {
    if (!root) return;
    const v = cim.viewer, groups = {};
    for (const id of Object.keys(v.entries)) {
      const e = v.entries[id];
      if (e.hidden_in_tree) continue;
      (groups[e.group] = groups[e.group] || []).push(e);
    }
    const titles = cim.config.groups;
    const order = Object.keys(titles).filter(g => groups[g]).concat(Object.keys(groups).filter(g => !titles[g]));
    root.innerHTML = `<h2>${cim.t('layers')}</h2><div class="tree">${order.map(g => `
      <fieldset class="group" data-group="${esc(g)}"><legend>${esc(titles[g] ? cim.title(titles[g]) : g)}</legend>
      ${groups[g].map(row).join('')}
      </fieldset>`).join('')}</div>`;
    root.querySelectorAll('.layer').forEach(div => {
      const id = div.dataset.id;
      div.querySelector('input[type=checkbox]').onchange = ev => v.setVisible(id, ev.target.checked);
      div.querySelector('input[type=range]').oninput = ev => v.setOpacity(id, Number(ev.target.value));
    });
  }

  cim.register({
    id: 'tree', order: 90,
    panel(el) { root = el; render(); },
    start() {
      cim.on('layers', render);
      cim.on('visibility', ({id, visible}) => {
        const box = root && root.querySelector(`.layer[data-id="${CSS.escape(id)}"] input[type=checkbox]`);
        if (box) box.checked = visible;
      });
    }
  });
})();

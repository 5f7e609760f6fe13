/* Side-by-side comparison of any two layers in two synchronised views (left / right halves of the map). */
(function () {
  'use strict';
  const D = globalThis.deck;
  let compare = null; // {left: id, right: id}
  let views = null;

  function setCompare(left, right) {
    compare = left && right ? {left, right} : null;
    const o = cim.viewer.overrides;
    if (compare) {
      views = views || [new D.MapView({id: 'left', x: 0, width: '50%', controller: true}),
        new D.MapView({id: 'right', x: '50%', width: '50%', controller: true})];
      o.views = () => ({key: 'compare', views});
      o.visible = id => id === compare.left || id === compare.right;
      o.layerFilter = ({viewport}, id) => {
        if (id === compare.left) return viewport.id === 'left';
        if (id === compare.right) return viewport.id === 'right';
        return true;
      };
    } else {
      o.views = o.visible = o.layerFilter = null;
    }
    cim.viewer.refresh();
  }

  cim.compare = {set: setCompare, get current() { return compare; }};
  cim.register({
    id: 'compare', order: 40,
    panel(el) {
      const t = cim.t, esc = cim.escapeHtml, v = cim.viewer;
      const options = v.order.map(id => `<option value="${esc(id)}">${esc(v.entries[id].title)}</option>`).join('');
      el.innerHTML = `<details class="compare"><summary>${t('compare')}</summary>
        <label>${t('left')} <select name="left">${options}</select></label>
        <label>${t('right')} <select name="right">${options}</select></label>
        <button type="button" data-action="compare">${t('compare')}</button>
        <button type="button" data-action="compare-off">${t('compareOff')}</button>
      </details>`;
      el.querySelector('[data-action=compare]').onclick = () =>
        setCompare(el.querySelector('select[name=left]').value, el.querySelector('select[name=right]').value);
      el.querySelector('[data-action=compare-off]').onclick = () => setCompare(null, null);
    }
  });
})();

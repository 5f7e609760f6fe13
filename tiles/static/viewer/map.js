/* The map (cim.viewer): one deck.gl Deck of the deck.gl bundle that ships in the pydeck wheel, the layers of the
   tree (built by their kind, layers.js) plus every feature's own layers, the camera, and clicks.

   Clicks are read from DOM pointer events rather than deck.gl's gesture recogniser: under software rendering a slow
   frame stretches a tap past the recogniser's time limit, and a click must never be lost. A click goes to the
   current click handler (a tool such as measurement sets one) or else is announced as the `click` event with the
   place (a 3D pick of the surface under the cursor when there is one, else the ground) and the picked feature. */
(function () {
  'use strict';
  const D = globalThis.deck;
  const config = cim.config;
  const mapEl = document.getElementById('map');
  const ground = config.ground || 0;

  const entries = {};   // id -> layer-tree entry
  const state = {};     // id -> {visible, opacity}
  const layerCache = {}; // id -> deck.gl layer (made once, cloned with visibility and opacity)
  let order = [];       // ids in drawing order

  function fitHome() {
    // the server's home view assumes a map size; fit the extent to the real one
    const e = config.extent;
    const width = mapEl.clientWidth || 800, height = mapEl.clientHeight || 600;
    if (!e) return Object.assign({}, config.home, {maxPitch: 85});
    const fit = new D.WebMercatorViewport({width, height}).fitBounds([[e[0], e[1]], [e[2], e[3]]], {padding: 10});
    // the camera turns around the terrain's height, not around the ellipsoid
    return {longitude: fit.longitude, latitude: fit.latitude, zoom: fit.zoom, pitch: 0, bearing: 0, maxPitch: 85,
      position: [0, 0, ground]};
  }

  let viewState = fitHome();
  let clickHandler = null;
  let viewCache = {key: null, views: null};
  const overrides = {views: null, layerFilter: null, visible: null, initialVisible: null};

  const handlers = {
    onViewStateChange: ({viewState: vs}) => {
      viewState = vs;
      deckgl.setProps({viewState});
      cim.emit('view', vs);
      return vs;
    },
    getCursor: ({isDragging, isHovering}) => isDragging ? 'grabbing' : (clickHandler || isHovering ? 'crosshair' : 'grab'),
    onError: err => console.error(err),
    onAfterRender: () => cim.emit('render'),
    onDeviceInitialized: device => cim.completeCompressedTextures(device)
  };

  const deckgl = new D.Deck({
    parent: mapEl, width: '100%', height: '100%', controller: true, layers: [], viewState, ...handlers
  });

  function rootId(layer) {
    let l = layer;
    while (l.parent) l = l.parent;
    return l.id;
  }

  function addLayer(entry, opts) {
    if (!cim.layerKinds[entry.kind]) throw new Error(`no layer kind ${entry.kind} for ${entry.id}`);
    const known = !!entries[entry.id];
    entries[entry.id] = entry;
    if (!state[entry.id]) {
      // a scene opened with the page decides the first visibility of the layers features add as they start
      const first = overrides.initialVisible ? overrides.initialVisible(entry) : undefined;
      state[entry.id] = {visible: first === undefined ? !!entry.visible : !!first,
        opacity: entry.opacity == null ? 1 : entry.opacity};
    }
    if (!known) {
      order.push(entry.id);
      order.sort((a, b) => cim.layerOrder(entries[a]) - cim.layerOrder(entries[b]));
    }
    delete layerCache[entry.id];
    if (!opts || !opts.quiet) { cim.emit('layers', entry); refresh(); }
    return entry;
  }

  function deckLayer(id) {
    let layer = layerCache[id];
    if (!layer) layer = layerCache[id] = cim.layerKinds[entries[id].kind].create(entries[id], {ground, viewer});
    return layer;
  }

  function isShown(id) {
    const forced = overrides.visible && overrides.visible(id);
    return !!(state[id] && state[id].visible) || !!forced;
  }

  function views() {
    // the same view objects until the mode changes: new views would re-create the controllers
    const custom = overrides.views && overrides.views();
    const key = custom ? custom.key : (clickHandler ? 'tool' : 'main');
    if (viewCache.key !== key) {
      viewCache = {key, views: custom ? custom.views
        : [new D.MapView({id: 'main', controller: {doubleClickZoom: !clickHandler}})]};
    }
    return viewCache.views;
  }

  function refresh() {
    // Layers that are off are not made at all: a layer that was never shown has never asked for a tile.
    const layers = [];
    for (const id of order) {
      if (!isShown(id) && !layerCache[id]) continue;
      // features may give every entry's layer more props (section.js: the cutting planes of 3D models)
      const extra = cim.section ? cim.section.layerProps(entries[id]) : null;
      const props = {visible: isShown(id), opacity: state[id] ? state[id].opacity : 1, ...(extra || {})};
      for (const layer of [].concat(deckLayer(id))) layers.push(layer.clone(props));  // a kind may make several
    }
    for (const f of cim.features()) {
      if (!f.layers) continue;
      try { layers.push(...(f.layers() || [])); } catch (err) { console.error(err); }
    }
    deckgl.setProps({...handlers, layers, views: views(), viewState,
      layerFilter: overrides.layerFilter ? ctx => overrides.layerFilter(ctx, rootId(ctx.layer)) : null});
  }

  function setVisible(id, visible) {
    if (!state[id]) throw new Error(`no layer ${id}`);
    state[id].visible = visible;
    cim.emit('visibility', {id, visible});
    refresh();
  }
  function setOpacity(id, opacity) {
    if (!state[id]) throw new Error(`no layer ${id}`);
    state[id].opacity = opacity;
    refresh();
  }

  // ------------------------------------------------------------------------------------------------ camera
  function setViewState(vs) { viewState = Object.assign({}, viewState, vs); refresh(); cim.emit('view', viewState); }
  function setMode(mode) {
    setViewState({pitch: mode === '3d' ? 55 : 0, bearing: mode === '3d' ? -20 : 0, transitionDuration: 0});
  }
  function goHome() { viewState = fitHome(); refresh(); cim.emit('view', viewState); }
  function flyTo(lon, lat, zoom) { setViewState({longitude: lon, latitude: lat, zoom: zoom || 18}); }

  // ------------------------------------------------------------------------------------------------ clicks
  function viewportAt(x, y) {
    if (!deckgl.isInitialized) return null;
    const vps = deckgl.getViewports();
    return vps.find(v => x >= v.x && x < v.x + v.width && y >= v.y && y < v.y + v.height) || vps[0];
  }
  function groundCoordinate(x, y) {
    const vp = viewportAt(x, y);
    return vp ? vp.unproject([x - vp.x, y - vp.y], {targetZ: ground}).slice(0, 2) : null;
  }
  /** The place under a screen pixel: the 3D surface there (roof, wall, terrain) with its height, else the ground. */
  function placeAt(x, y) {
    const hit = deckgl.pickObject({x, y, radius: 0, unproject3D: true});
    if (hit && hit.coordinate && hit.coordinate.length === 3 && String(rootId(hit.layer)).startsWith('model:')) {
      return {coordinate: hit.coordinate, surface: true, hit};
    }
    const c = groundCoordinate(x, y);
    return c ? {coordinate: [c[0], c[1], ground], surface: false, hit: null} : null;
  }

  function clickAt(x, y) {
    if (clickHandler) { clickHandler({x, y}); return; }
    const info = deckgl.pickObject({x, y, radius: 2});
    let picked = null;
    if (info && info.layer && info.object && info.object.properties && String(rootId(info.layer)).startsWith('layer:')) {
      const entry = entries[rootId(info.layer)];
      picked = {title: entry ? entry.title : rootId(info.layer), properties: info.object.properties, info};
    }
    const place = placeAt(x, y);
    if (place) cim.emit('click', {x, y, lon: place.coordinate[0], lat: place.coordinate[1], place, picked, info});
  }

  let down = null;
  mapEl.addEventListener('pointerdown', ev => { if (ev.button === 0) down = {x: ev.clientX, y: ev.clientY}; });
  mapEl.addEventListener('pointerup', ev => {
    if (!down || ev.button !== 0) return;
    const moved = Math.hypot(ev.clientX - down.x, ev.clientY - down.y);
    down = null;
    if (moved > 5) return;
    const r = mapEl.getBoundingClientRect();
    try { clickAt(ev.clientX - r.left, ev.clientY - r.top); } catch (err) { console.error(err); }
  });
  mapEl.addEventListener('dblclick', ev => cim.emit('dblclick', ev));

  // ------------------------------------------------------------------------------------------------ readiness
  function loaded() {
    const lm = deckgl.layerManager;
    if (!lm || !deckgl.isInitialized) return false;
    return lm.getLayers().filter(l => !l.parent && l.props.visible).every(l => l.isLoaded);
  }

  const viewer = cim.viewer = {
    deck: deckgl, entries, state, ground, started: false,
    get viewState() { return viewState; },
    get order() { return order.slice(); },
    addLayer, setVisible, setOpacity, refresh, rootId, isShown,
    setViewState, setMode, goHome, flyTo, fitHome,
    groundCoordinate, placeAt, viewportAt, loaded,
    /** Take the map's clicks (a tool): fn({x, y}) or null to give them back to identify. */
    setClickHandler(fn) { clickHandler = fn; refresh(); },
    get clickHandler() { return clickHandler; },
    /** Views and per-view layer filters of a comparison mode: {views() -> {key, views}|null,
        layerFilter(ctx, rootId) -> bool, visible(id) -> bool}. */
    overrides,
    project: (lon, lat, z) => deckgl.getViewports()[0].project([lon, lat, z === undefined ? ground : z]),
    /** The first viewport (null before the map has drawn). */
    viewport: () => (deckgl.isInitialized ? deckgl.getViewports()[0] : null),
    startFeature(f) {
      try { if (f.start) f.start(); } catch (err) { console.error(err); }
    }
  };
  for (const entry of config.tree) addLayer(entry, {quiet: true});
})();

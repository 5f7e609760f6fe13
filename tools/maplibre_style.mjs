// Validate a MapLibre style document with MapLibre's own style specification (npm @maplibre/maplibre-gl-style-spec)
// and evaluate its layers' paint properties for given features, as MapLibre GL JS would draw them.
//
// stdin:  {"style": {...}, "zoom": 15, "features": [{"id": 3, "type": "Polygon", "properties": {...}}, ...],
//          "densities": [0, 0.5, 1]}   (where heatmap-color is evaluated)
// stdout: {"errors": ["..."], "layers": {"<style layer id>": {"<paint property>": [value per feature, ...]}}}
// Colours come back as [r, g, b, a] with r, g, b in 0-255 and a in 0-1 (premultiplication undone).
import * as spec from '@maplibre/maplibre-gl-style-spec';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const style = input.style;
const zoom = input.zoom ?? 15;
const features = input.features || [];
const densities = input.densities || [0, 0.25, 0.5, 0.75, 1];

const errors = spec.validateStyleMin(style).map(e => e.message);
const out = {};

function plain(v) {
  if (v instanceof spec.Color) {
    const [r, g, b, a] = v.rgb;  // 0-1, premultiplication undone
    return [Math.round(r * 255), Math.round(g * 255), Math.round(b * 255), Number(a.toFixed(4))];
  }
  return v;
}

for (const layer of style.layers || []) {
  const specs = spec.latest[`paint_${layer.type}`] || {};
  const values = {};
  for (const [prop, value] of Object.entries(layer.paint || {})) {
    const expr = spec.createPropertyExpression(
      spec.isExpression(value) ? value : ['literal', value], `layers.${layer.id}.paint.${prop}`, specs[prop]);
    if (expr.result === 'error') {
      errors.push(`${layer.id}.${prop}: ${expr.value.map(e => e.message).join('; ')}`);
      continue;
    }
    if (prop === 'heatmap-color') {  // evaluated over heatmap-density, not per feature
      values[prop] = densities.map(d => plain(expr.value.evaluate({zoom, heatmapDensity: d})));
      continue;
    }
    values[prop] = features.map(f => plain(expr.value.evaluate({zoom}, {type: f.type || 'Point', id: f.id,
      properties: f.properties || {}})));
  }
  out[layer.id] = values;
}
process.stdout.write(JSON.stringify({errors, layers: out}));

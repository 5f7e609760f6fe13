#!/usr/bin/env node
// Decompress glb files with the reference decoders: meshoptimizer's own decoder (npm `meshoptimizer`) for
// EXT_meshopt_compression buffer views and Google's Draco decoder (npm `draco3d`) for KHR_draco_mesh_compression
// primitives. The output is the same asset without those two extensions (plain buffer views and accessors), so any
// tool that does not know them (the Khronos validator, a test) can read every vertex a client would decode.
//
// usage: node tools/decompress_glb.mjs IN.glb OUT.glb [IN.glb OUT.glb ...]
// Prints one JSON line per file: {"in", "out", "meshoptViews", "dracoPrimitives"}; exit 1 on any failure.
import fs from "node:fs/promises";
import { createRequire } from "node:module";
import { MeshoptDecoder } from "meshoptimizer";

const require = createRequire(import.meta.url);
const draco3d = require("draco3d");

const JSON_CHUNK = 0x4e4f534a;
const BIN_CHUNK = 0x004e4942;
const WIDTH = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4 };

function parseGlb(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== 0x46546c67) throw new Error("not a glb");
  let pos = 12;
  let json = null;
  let bin = new Uint8Array(0);
  while (pos + 8 <= bytes.length) {
    const len = dv.getUint32(pos, true);
    const kind = dv.getUint32(pos + 4, true);
    const chunk = bytes.subarray(pos + 8, pos + 8 + len);
    if (kind === JSON_CHUNK) json = JSON.parse(new TextDecoder().decode(chunk));
    else if (kind === BIN_CHUNK) bin = chunk;
    pos += 8 + len;
  }
  return { json, bin };
}

function writeGlb(json, bin) {
  let text = new TextEncoder().encode(JSON.stringify(json));
  const tpad = (4 - (text.length % 4)) % 4;
  const bpad = (4 - (bin.length % 4)) % 4;
  const total = 12 + 8 + text.length + tpad + 8 + bin.length + bpad;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0x46546c67, true);
  dv.setUint32(4, 2, true);
  dv.setUint32(8, total, true);
  dv.setUint32(12, text.length + tpad, true);
  dv.setUint32(16, JSON_CHUNK, true);
  out.set(text, 20);
  out.fill(0x20, 20 + text.length, 20 + text.length + tpad);
  let pos = 20 + text.length + tpad;
  dv.setUint32(pos, bin.length + bpad, true);
  dv.setUint32(pos + 4, BIN_CHUNK, true);
  out.set(bin, pos + 8);
  return out;
}

class BinWriter {
  constructor() { this.parts = []; this.length = 0; }
  add(bytes) {
    const pad = (8 - (this.length % 8)) % 8;
    if (pad) { this.parts.push(new Uint8Array(pad)); this.length += pad; }
    const start = this.length;
    this.parts.push(bytes);
    this.length += bytes.length;
    return start;
  }
  bytes() {
    const out = new Uint8Array(this.length);
    let pos = 0;
    for (const p of this.parts) { out.set(p, pos); pos += p.length; }
    return out;
  }
}

async function decompress(input, output, draco) {
  const { json, bin } = parseGlb(new Uint8Array(await fs.readFile(input)));
  const writer = new BinWriter();
  let meshoptViews = 0;
  let dracoPrimitives = 0;
  const views = json.bufferViews || [];
  const newViews = views.map((view) => {
    const ext = view.extensions && view.extensions.EXT_meshopt_compression;
    let data;
    if (ext) {
      const source = bin.subarray(ext.byteOffset || 0, (ext.byteOffset || 0) + ext.byteLength);
      data = new Uint8Array(ext.count * ext.byteStride);
      MeshoptDecoder.decodeGltfBuffer(data, ext.count, ext.byteStride, source, ext.mode, ext.filter || "NONE");
      meshoptViews++;
    } else {
      if ((view.buffer || 0) !== 0) throw new Error(`bufferView in buffer ${view.buffer}`);
      data = bin.slice(view.byteOffset || 0, (view.byteOffset || 0) + view.byteLength);
    }
    const out = { buffer: 0, byteOffset: writer.add(data), byteLength: data.length };
    if (view.byteStride) out.byteStride = view.byteStride;
    if (view.target) out.target = view.target;
    return out;
  });
  json.bufferViews = newViews;
  for (const mesh of json.meshes || []) {
    for (const prim of mesh.primitives) {
      const ext = prim.extensions && prim.extensions.KHR_draco_mesh_compression;
      if (!ext) continue;
      const view = views[ext.bufferView];
      const raw = bin.subarray(view.byteOffset || 0, (view.byteOffset || 0) + view.byteLength);
      const decoder = new draco.Decoder();
      const buffer = new draco.DecoderBuffer();
      buffer.Init(new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength), raw.byteLength);
      const dmesh = new draco.Mesh();
      const status = decoder.DecodeBufferToMesh(buffer, dmesh);
      if (!status.ok()) throw new Error(`Draco: ${status.error_msg()}`);
      const points = dmesh.num_points();
      for (const [semantic, id] of Object.entries(ext.attributes)) {
        const accessor = json.accessors[prim.attributes[semantic]];
        const attr = decoder.GetAttributeByUniqueId(dmesh, id);
        const n = points * WIDTH[accessor.type];
        const [type, Array_, heap] = accessor.componentType === 5123
          ? [draco.DT_UINT16, Uint16Array, "HEAPU16"] : [draco.DT_FLOAT32, Float32Array, "HEAPF32"];
        const bytes = n * Array_.BYTES_PER_ELEMENT;
        const ptr = draco._malloc(bytes);
        decoder.GetAttributeDataArrayForAllPoints(dmesh, attr, type, bytes, ptr);
        const values = new Array_(draco[heap].buffer, ptr, n).slice();
        draco._free(ptr);
        if (accessor.count !== points) throw new Error(`${semantic}: accessor count ${accessor.count}, Draco ${points}`);
        let data = new Uint8Array(values.buffer);
        let stride;
        if (Array_ === Uint16Array) { // pad each uint16 to 4 bytes: glTF aligns vertex attribute elements to 4
          const padded = new Uint16Array(points * 2);
          for (let i = 0; i < points; i++) padded[2 * i] = values[i];
          data = new Uint8Array(padded.buffer);
          stride = 4;
        }
        json.bufferViews.push({ buffer: 0, byteOffset: writer.add(data), byteLength: data.length, target: 34962,
          ...(stride ? { byteStride: stride } : {}) });
        accessor.bufferView = json.bufferViews.length - 1;
      }
      const indexAccessor = json.accessors[prim.indices];
      const faces = dmesh.num_faces();
      const wide = indexAccessor.componentType === 5125;
      const bytes = faces * 3 * (wide ? 4 : 2);
      const ptr = draco._malloc(bytes);
      if (wide) decoder.GetTrianglesUInt32Array(dmesh, bytes, ptr);
      else decoder.GetTrianglesUInt16Array(dmesh, bytes, ptr);
      const indices = new Uint8Array(draco.HEAPU8.buffer, ptr, bytes).slice();
      draco._free(ptr);
      if (indexAccessor.count !== faces * 3) throw new Error(`indices: accessor ${indexAccessor.count}, Draco ${faces * 3}`);
      json.bufferViews.push({ buffer: 0, byteOffset: writer.add(indices), byteLength: bytes, target: 34963 });
      indexAccessor.bufferView = json.bufferViews.length - 1;
      delete prim.extensions.KHR_draco_mesh_compression;
      if (!Object.keys(prim.extensions).length) delete prim.extensions;
      draco.destroy(dmesh); draco.destroy(buffer); draco.destroy(decoder);
      dracoPrimitives++;
    }
  }
  const drop = new Set(["EXT_meshopt_compression", "KHR_draco_mesh_compression"]);
  for (const key of ["extensionsUsed", "extensionsRequired"]) {
    if (json[key]) {
      json[key] = json[key].filter((e) => !drop.has(e));
      if (!json[key].length) delete json[key];
    }
  }
  const out = writer.bytes();
  json.buffers = [{ byteLength: out.length + ((4 - (out.length % 4)) % 4) }];
  await fs.writeFile(output, writeGlb(json, out));
  return { in: input, out: output, meshoptViews, dracoPrimitives };
}

async function main() {
  const args = process.argv.slice(2);
  if (!args.length || args.length % 2) {
    process.stderr.write("usage: decompress_glb.mjs IN.glb OUT.glb [IN.glb OUT.glb ...]\n");
    return 2;
  }
  await MeshoptDecoder.ready;
  const draco = await draco3d.createDecoderModule({});
  let failed = 0;
  for (let i = 0; i < args.length; i += 2) {
    try {
      process.stdout.write(JSON.stringify(await decompress(args[i], args[i + 1], draco)) + "\n");
    } catch (err) {
      failed++;
      process.stdout.write(JSON.stringify({ in: args[i], failure: String(err && err.message ? err.message : err) }) + "\n");
    }
  }
  return failed ? 1 : 0;
}

process.exitCode = await main();

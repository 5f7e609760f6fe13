#!/usr/bin/env node
// Validate .glb/.gltf files with the Khronos glTF validator (npm `gltf-validator`).
//
// usage: node tools/validate_gltf.mjs [--max-issues N] [--ignore CODE[,CODE...]] PATH [PATH...]
//
// Each PATH is a .glb/.gltf file or a directory searched recursively. Prints one JSON report per file, one per line:
//   {"path", "numErrors", "numWarnings", "numInfos", "numHints", "truncated",
//    "messages": [{"code", "severity", "pointer", "offset", "message"}], "extensionsUsed", "failure"}
// severity: 0 error, 1 warning, 2 info, 3 hint. `failure` is set (and counted as an error) when the validator could
// not read the file at all. Exit status: 0 when no file has errors, 1 when one does, 2 on bad usage.
import fs from "node:fs/promises";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");

function parseArgs(argv) {
  const opts = { maxIssues: 0, ignored: [], paths: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--max-issues") opts.maxIssues = Number(argv[++i]);
    else if (arg === "--ignore") opts.ignored.push(...String(argv[++i]).split(",").filter(Boolean));
    else if (arg === "-h" || arg === "--help") return null;
    else opts.paths.push(arg);
  }
  return Number.isInteger(opts.maxIssues) && opts.paths.length ? opts : null;
}

async function collect(p, out) {
  const stat = await fs.stat(p);
  if (stat.isDirectory()) {
    const entries = (await fs.readdir(p)).sort();
    for (const name of entries) {
      const child = path.join(p, name);
      if ((await fs.stat(child)).isDirectory() || /\.(glb|gltf)$/i.test(name)) await collect(child, out);
    }
  } else {
    out.push(p);
  }
}

async function validateFile(file, opts) {
  const report = {
    path: file, numErrors: 0, numWarnings: 0, numInfos: 0, numHints: 0, truncated: false,
    messages: [], extensionsUsed: [], failure: null,
  };
  try {
    const bytes = new Uint8Array(await fs.readFile(file));
    const result = await validator.validateBytes(bytes, {
      uri: path.basename(file),
      maxIssues: opts.maxIssues,
      ignoredIssues: opts.ignored,
      writeTimestamp: false,
      // Buffers and images referenced by relative URI are read next to the file, so they are validated too.
      externalResourceFunction: (uri) =>
        fs.readFile(path.resolve(path.dirname(file), decodeURIComponent(uri))).then((b) => new Uint8Array(b)),
    });
    const issues = result.issues;
    Object.assign(report, {
      numErrors: issues.numErrors, numWarnings: issues.numWarnings, numInfos: issues.numInfos,
      numHints: issues.numHints, truncated: Boolean(issues.truncated),
      messages: issues.messages.map((m) => ({
        code: m.code, severity: m.severity, pointer: m.pointer ?? null, offset: m.offset ?? null, message: m.message,
      })),
      extensionsUsed: (result.info && result.info.extensionsUsed) || [],
    });
  } catch (err) {
    report.numErrors = 1;
    report.failure = String(err && err.message ? err.message : err);
  }
  return report;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!opts) {
    process.stderr.write("usage: validate_gltf.mjs [--max-issues N] [--ignore CODE[,CODE...]] PATH [PATH...]\n");
    return 2;
  }
  const files = [];
  for (const p of opts.paths) {
    try {
      await collect(p, files);
    } catch (err) {
      files.push(p); // reported below as a failure that names the path
    }
  }
  let failed = false;
  for (const file of files) {
    const report = await validateFile(file, opts);
    failed ||= report.numErrors > 0;
    process.stdout.write(JSON.stringify(report) + "\n");
  }
  return failed ? 1 : 0;
}

process.exitCode = await main();

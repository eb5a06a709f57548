#!/usr/bin/env -S node --max-semi-space-size=8
// The `hmc` command: runs the compiled CLI (built by `npm install` through the `prepare` script).
// A smaller young generation (8 MB semi-spaces) keeps the server under 150 MB RSS with no measurable loss (bench).
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err instanceof Error ? err.message : err); process.exitCode = 1; },
);

/**
 * `npm run bench [-- --suite spine|mail] [options]`: the spine benchmark (bench/run.ts, issue 2; the default)
 * or the Hosted Email benchmark (bench/mail.ts, issue 3). Each prints one JSON object; see bench/README.md.
 */
const i = process.argv.indexOf('--suite');
const suite = i >= 0 ? process.argv[i + 1] : 'spine';
if (i >= 0) process.argv.splice(i, 2);
if (suite === 'mail') await (await import('./mail.js')).runMailBench();
else if (suite === 'placement') await (await import('./placement.js')).runPlacementBench();
else if (suite === 'spine') await import('./run.js');
else {
  process.stderr.write(`unknown --suite ${suite}; use spine or mail\n`);
  process.exitCode = 2;
}

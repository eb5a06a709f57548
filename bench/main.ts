/**
 * `npm run bench [-- --suite spine|mail|placement|dataplane] [options]`: the spine benchmark (bench/run.ts,
 * issue 2; the default), Hosted Email (bench/mail.ts, issue 3), placement (bench/placement.ts, issue 4) or the
 * mail data plane (bench/dataplane.ts, issue 5), the transport domain cache (bench/domain-cache.ts, issue 6) or the transport agent (bench/transport.ts, issue 6). Each prints one JSON object; see bench/README.md.
 */
const SUITES = ['spine', 'mail', 'placement', 'dataplane', 'domain-cache', 'transport'];
const i = process.argv.indexOf('--suite');
const suite = i >= 0 ? process.argv[i + 1] : 'spine';
if (i >= 0) process.argv.splice(i, 2);
if (suite === 'mail') await (await import('./mail.js')).runMailBench();
else if (suite === 'placement') await (await import('./placement.js')).runPlacementBench();
else if (suite === 'dataplane') await (await import('./dataplane.js')).runDataplaneBench();
else if (suite === 'domain-cache') await (await import('./domain-cache.js')).runDomainCacheBench();
else if (suite === 'transport') await (await import('./transport.js')).runTransportBench();
else if (suite === 'spine') await import('./run.js');
else {
  process.stderr.write(`unknown --suite ${suite}; use one of ${SUITES.join(', ')}\n`);
  process.exitCode = 2;
}

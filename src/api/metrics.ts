import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineMetrics } from '../engine/engine.js';
import type { Db } from '../store/db.js';
import { queueStats } from '../engine/queue.js';

/**
 * Prometheus metrics: per-procedure count, latency and failures (rejected at submission, and failed later when a
 * job failed for good: `hmc_requests_finished_total{state="failed"}`); job outcomes; queue depth and age.
 */
export function createMetrics(getDb: () => Db): { registry: Registry; engine: EngineMetrics; http: Histogram<string> } {
  const registry = new Registry();
  const procTotal = new Counter({ name: 'hmc_procedure_requests_total', help: 'Procedure calls by outcome (ok, rejected = 4xx, error = 5xx)', labelNames: ['procedure', 'outcome'], registers: [registry] });
  const procLatency = new Histogram({ name: 'hmc_procedure_duration_seconds', help: 'Procedure latency until commit', labelNames: ['procedure'], buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] });
  const reqTotal = new Counter({ name: 'hmc_requests_finished_total', help: 'Requests that became terminal, by procedure and state (failed = a job failed for good and the request was compensated)', labelNames: ['procedure', 'state'], registers: [registry] });
  const reqLatency = new Histogram({ name: 'hmc_request_completion_seconds', help: 'Request time from submission until terminal (its jobs included)', labelNames: ['procedure', 'state'], buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600], registers: [registry] });
  const jobsTotal = new Counter({ name: 'hmc_jobs_finished_total', help: 'Job attempts by kind and outcome (done, retry, failed)', labelNames: ['kind', 'outcome'], registers: [registry] });
  const jobLatency = new Histogram({ name: 'hmc_job_duration_seconds', help: 'Job run time', labelNames: ['kind'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: [registry] });
  const http = new Histogram({ name: 'hmc_http_request_duration_seconds', help: 'HTTP latency', labelNames: ['method', 'route', 'status'], buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1], registers: [registry] });
  // the three gauges read the queue once per scrape: prom-client collects every metric of a scrape concurrently,
  // so each awaits the same query (setting the others from the first one's collect showed the last scrape's values)
  let pending: ReturnType<typeof queueStats> | null = null;
  const stats = () => {
    if (!pending) {
      pending = queueStats(getDb());
      const clear = () => { pending = null; };
      pending.then(clear, clear);
    }
    return pending;
  };
  new Gauge({ name: 'hmc_jobs_queued', help: 'Jobs waiting (including those in backoff)', registers: [registry], async collect() { this.set((await stats()).queued); } });
  new Gauge({ name: 'hmc_jobs_running', help: 'Jobs claimed by a worker', registers: [registry], async collect() { this.set((await stats()).running); } });
  new Gauge({ name: 'hmc_jobs_oldest_age_seconds', help: 'Age of the oldest open job', registers: [registry], async collect() { this.set((await stats()).oldestAgeMs / 1000); } });
  return {
    registry,
    http,
    engine: {
      observe(procedure, outcome, seconds) {
        procTotal.inc({ procedure, outcome });
        if (outcome === 'ok') procLatency.observe({ procedure }, seconds);
      },
      requestFinished(procedure, state, seconds) {
        reqTotal.inc({ procedure, state });
        reqLatency.observe({ procedure, state }, seconds);
      },
      jobFinished(kind, outcome, seconds) {
        jobsTotal.inc({ kind, outcome });
        jobLatency.observe({ kind }, seconds);
      },
    },
  };
}

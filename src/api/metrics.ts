import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineMetrics } from '../engine/engine.js';
import type { Db } from '../store/db.js';
import { queueStats } from '../engine/queue.js';

/** Prometheus metrics: per-procedure count, latency and failures; job outcomes; queue depth and age. */
export function createMetrics(getDb: () => Db): { registry: Registry; engine: EngineMetrics; http: Histogram<string> } {
  const registry = new Registry();
  const procTotal = new Counter({ name: 'hmc_procedure_requests_total', help: 'Procedure calls by outcome (ok, rejected = 4xx, error = 5xx)', labelNames: ['procedure', 'outcome'], registers: [registry] });
  const procLatency = new Histogram({ name: 'hmc_procedure_duration_seconds', help: 'Procedure latency until commit', labelNames: ['procedure'], buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] });
  const jobsTotal = new Counter({ name: 'hmc_jobs_finished_total', help: 'Job attempts by kind and outcome (done, retry, failed)', labelNames: ['kind', 'outcome'], registers: [registry] });
  const jobLatency = new Histogram({ name: 'hmc_job_duration_seconds', help: 'Job run time', labelNames: ['kind'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: [registry] });
  const http = new Histogram({ name: 'hmc_http_request_duration_seconds', help: 'HTTP latency', labelNames: ['method', 'route', 'status'], buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1], registers: [registry] });
  // depth is registered first; its collect() reads the queue once and sets the two gauges after it
  const running = new Gauge({ name: 'hmc_jobs_running', help: 'Jobs claimed by a worker', registers: [] });
  const oldest = new Gauge({ name: 'hmc_jobs_oldest_age_seconds', help: 'Age of the oldest open job', registers: [] });
  new Gauge({
    name: 'hmc_jobs_queued', help: 'Jobs waiting (including those in backoff)', registers: [registry],
    async collect() {
      const s = await queueStats(getDb());
      this.set(s.queued);
      running.set(s.running);
      oldest.set(s.oldestAgeMs / 1000);
    },
  });
  registry.registerMetric(running);
  registry.registerMetric(oldest);
  return {
    registry,
    http,
    engine: {
      observe(procedure, outcome, seconds) {
        procTotal.inc({ procedure, outcome });
        if (outcome === 'ok') procLatency.observe({ procedure }, seconds);
      },
      jobFinished(kind, outcome, seconds) {
        jobsTotal.inc({ kind, outcome });
        jobLatency.observe({ kind }, seconds);
      },
    },
  };
}

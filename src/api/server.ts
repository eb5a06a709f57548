import { createRequire } from 'node:module';
import Fastify, { type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { Registry, Histogram } from 'prom-client';
import { Errors } from '../core/errors.js';
import { idKind } from '../core/ids.js';
import type { Engine } from '../engine/engine.js';
import { Problem, type Registrar, type VisibilityRegistry } from '../engine/http.js';
import { authenticate } from './auth.js';
import { sendProblem } from './problem.js';

export interface ApiDeps {
  engine: Engine;
  registrars: Registrar[];
  visibility: VisibilityRegistry;
  metrics: { registry: Registry; http: Histogram<string> };
  logger?: boolean | { level: string };
  /** Answers /readyz: false while starting or stopping. */
  ready: () => boolean;
}

const PUBLIC = new Set(['/healthz', '/readyz', '/metrics', '/api/v1/openapi.json']);
/** Methods that submit a request (and so may carry an Idempotency-Key); HEAD runs a GET handler. */
const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Bodies are validated strictly: no type coercion, unknown fields are errors (not silently dropped).
 * Query strings and path parameters are text on the wire, so they are coerced to the schema's types.
 */
function validatorCompiler() {
  const body = new Ajv({ allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: false, strict: false });
  const text = new Ajv({ allErrors: false, coerceTypes: true, removeAdditional: false, useDefaults: true, strict: false });
  addFormats.default(body);
  addFormats.default(text);
  return ({ schema, httpPart }: { schema: object; httpPart?: string }) => {
    const ajv = httpPart === 'body' ? body : text;
    let check: ValidateFunction | null = null;
    // compiled on first use (see lazySerializers); Fastify reads `errors` off the function it was given
    const validate = (data: unknown) => {
      check ??= ajv.compile(schema);
      const ok = check(data);
      validate.errors = check.errors;
      return ok;
    };
    validate.errors = null as ValidateFunction['errors'];
    return validate;
  };
}

/**
 * Response serializers and (above) validators are compiled on a route's first call, not at start. The
 * API has a couple of hundred routes, each with validators and one fast-json-stringify function per
 * response status; compiling them all up front held ~18 MB of the server's memory (idle RSS 124 ->
 * 106 MB, bench/) for code most processes never run, against a 150 MB budget. A broken schema now
 * fails on the route's first call instead of at start: the OpenAPI walk and the fuzz test call every route.
 * Fastify's own default serializer is used, loaded from Fastify's dependencies so the versions match.
 */
function lazySerializers() {
  const fromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'));
  const { SerializerSelector } = fromFastify('@fastify/fast-json-stringify-compiler') as {
    SerializerSelector(): (externalSchemas: unknown, options: unknown) => (route: object) => (data: unknown) => string;
  };
  const build = SerializerSelector();
  return (externalSchemas: unknown, options: unknown) => {
    const compile = build(externalSchemas, options);
    return (route: object) => {
      let serialize: ((data: unknown) => string) | null = null;
      return (data: unknown) => (serialize ??= compile(route))(data);
    };
  };
}

/** The HTTP API: `buildApi(deps)` makes a Fastify instance; tests call `app.inject()` on it, no port needed. */
export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const db = deps.engine.store.db;
  const app = Fastify({
    logger: deps.logger ?? false,
    schemaController: { compilersFactory: { buildSerializer: lazySerializers() as never } },
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { strict: false } },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    // errors the router raises before any route or hook (bad percent-encoding, over-long path
    // segments) would otherwise answer Fastify's own JSON instead of problem+json
    frameworkErrors: (err, req, reply) => sendProblem(err, req, reply),
  });
  app.setValidatorCompiler(validatorCompiler());
  app.addSchema(Problem);
  app.decorateRequest('principal', null as never);
  app.addContentTypeParser('text/csv', { parseAs: 'string', bodyLimit: 50 * 1024 * 1024 }, (_req, body, done) => done(null, body));

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'HMC API', version: '1', description: 'Hosted Messaging and Collaboration: provisioning API. Every change is a request: see /api/v1/requests/{id}.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    refResolver: { buildLocalReference: (json, _base, _frag, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/api/docs' });

  app.setErrorHandler((err, req, reply) => sendProblem(err, req, reply));
  app.setNotFoundHandler((req, reply) => sendProblem(Errors.notFound(`no route ${req.method} ${req.url.split('?')[0]}`), req, reply));

  // PostgreSQL text cannot hold U+0000: refuse it in the URL on every dialect alike, before it reaches SQL
  app.addHook('onRequest', async (req) => {
    if (req.url.includes('%00')) throw Errors.invalidRequest('the URL may not contain NUL characters (%00)');
  });
  app.addHook('onRequest', async (req) => {
    const path = req.url.split('?')[0]!;
    if (PUBLIC.has(path) || path.startsWith('/api/docs') || !path.startsWith('/api/')) return;
    req.principal = await authenticate(db, req);
  });
  // Objects of other tenants answer 404 on every route, before body validation could say anything else:
  // every path parameter that is an id is checked against the caller's scope by its kind.
  app.addHook('preValidation', async (req) => {
    if (!req.principal) return;
    // A mutation re-sent with an Idempotency-Key this token already used is answered by the engine
    // from the stored request, even when its object is gone since (a DELETE re-sent after a crash,
    // whose first attempt committed and was purged). No leak: the answer is the caller's own request,
    // or idempotency_key_reused whatever the path names.
    const key = req.headers['idempotency-key'];
    if (MUTATIONS.has(req.method) && typeof key === 'string' && key.length <= 200 && (await deps.engine.hasRequestForKey(req.principal, key))) return;
    for (const value of Object.values((req.params ?? {}) as Record<string, unknown>)) {
      if (typeof value !== 'string') continue;
      const kind = idKind(value);
      const check = kind ? deps.visibility[kind] : undefined;
      if (check && !(await check(db, req.principal, value))) throw Errors.notFound(`${value} not found`);
    }
  });
  app.addHook('onResponse', async (req, reply) => {
    deps.metrics.http.observe({ method: req.method, route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    if (!deps.ready()) return reply.code(503).send({ status: 'starting or stopping' });
    try {
      await db.selectFrom('hmc_migrations').select('id').limit(1).execute();
    } catch {
      // a load balancer's question: not ready while the database cannot be read (never a 500)
      return reply.code(503).send({ status: 'database unavailable' });
    }
    return { status: 'ready' };
  });
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.type(deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
  app.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const routeDeps = { engine: deps.engine, db };
  for (const r of deps.registrars) r(app, routeDeps);
  await app.ready();
  return app;
}

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { HmcError, isHmcError } from '../core/errors.js';
import { STATUS } from '../engine/http.js';

/**
 * The one place errors become HTTP (RFC 9457 problem+json). Every answer carries a stable `code`;
 * anything unexpected is a 500 `internal_error` whose details stay in the log.
 */
export function toProblem(err: unknown, req: FastifyRequest): { status: number; body: Record<string, unknown> } {
  const e = classify(err);
  if (e.kind === 'internal') req.log.error({ err }, 'internal error');
  const status = STATUS[e.kind];
  return {
    status,
    body: {
      type: `https://hmc.invalid/problems/${e.code}`,
      title: e.code.replace(/_/g, ' '),
      status,
      detail: e.kind === 'internal' ? 'internal error; see the server log' : e.message,
      code: e.code,
      ...(e.errors ? { errors: e.errors } : {}),
    },
  };
}

function classify(err: unknown): HmcError {
  if (isHmcError(err)) return err;
  const fe = err as FastifyError & { validation?: Array<{ instancePath?: string; message?: string; params?: Record<string, unknown> }>; validationContext?: string };
  if (fe?.validation) {
    const where = fe.validationContext ?? 'body';
    const errors = fe.validation.slice(0, 20).map((v) => ({
      path: `${where}${v.instancePath ?? ''}${v.params?.additionalProperty ? `/${String(v.params.additionalProperty)}` : ''}`,
      message: v.params?.additionalProperty ? 'unknown field' : (v.message ?? 'invalid'),
    }));
    return new HmcError('invalid_request', 'invalid', `${errors[0]?.path}: ${errors[0]?.message}`, { errors });
  }
  const code = fe?.code;
  const sc = fe?.statusCode;
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new HmcError('unsupported_media_type', 'invalid', 'send application/json (or text/csv where documented)');
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new HmcError('payload_too_large', 'limit', 'request body too large');
  if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return new HmcError('invalid_json', 'invalid', 'empty JSON body');
  if (code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') return new HmcError('invalid_request', 'invalid', 'invalid Content-Length');
  if (code === 'FST_ERR_BAD_URL') return new HmcError('invalid_request', 'invalid', 'the URL is not validly percent-encoded');
  if (code === 'FST_ERR_MAX_PARAM_LENGTH') return new HmcError('invalid_request', 'invalid', 'a path segment is longer than 200 characters');
  if (sc === 400 && (fe instanceof SyntaxError || /JSON/i.test(fe?.message ?? ''))) return new HmcError('invalid_json', 'invalid', 'the body is not valid JSON');
  if (sc && sc >= 400 && sc < 500) return new HmcError('invalid_request', 'invalid', fe.message);
  return new HmcError('internal_error', 'internal', 'internal error', { cause: err });
}

export function sendProblem(err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const { status, body } = toProblem(err, req);
  // 413/415 keep their own status codes, everything else follows the error kind
  const code = body.code === 'payload_too_large' ? 413 : body.code === 'unsupported_media_type' ? 415 : status;
  return reply.code(code).type('application/problem+json').send({ ...body, status: code });
}

import { z } from 'zod';
import * as p from '@runt/protocol';

type Auth = 'admin' | 'workstation' | 'admin or workstation' | 'none';
interface Operation {
  /** The operationId: stable, camelCase, unique (client generators name their methods after it). */
  id: string;
  method: 'get' | 'post' | 'put';
  path: string;
  summary: string;
  auth: Auth;
  body?: z.ZodType;
  /** Raw (non-JSON) request body, e.g. bundle bytes. */
  rawBody?: string;
  query?: z.ZodObject;
  response?: z.ZodType;
  status?: number;
  /** Another success status with the same body, e.g. 200 for an idempotent repeat of a 201. */
  alsoStatus?: { status: number; description: string };
}

/** Every route the control plane serves, with its schemas: the single source of `/openapi.json`. */
export const OPERATIONS: Operation[] = [
  { id: 'getHealth', method: 'get', path: '/healthz', summary: 'The process answers', auth: 'none' },
  { id: 'getReadiness', method: 'get', path: '/readyz', summary: 'The database answers too', auth: 'none' },
  { id: 'getMetrics', method: 'get', path: '/metrics', summary: 'Prometheus metrics', auth: 'none' },
  { id: 'getOpenApi', method: 'get', path: '/openapi.json', summary: 'This document', auth: 'none' },
  {
    id: 'mintPairingCode',
    method: 'post',
    path: '/api/workstations/pairing-codes',
    summary: 'Mint a one-time pairing code',
    auth: 'admin',
    body: p.mintPairingCodeRequestSchema,
    response: p.mintPairingCodeResponseSchema,
    status: 201,
  },
  {
    id: 'getPairingCodeStatus',
    method: 'get',
    path: '/api/workstations/pairing-codes/{id}/status',
    summary: 'Where a pairing code stands',
    auth: 'admin',
    response: p.pairingCodeStatusResponseSchema,
  },
  {
    id: 'redeemPairingCode',
    method: 'post',
    path: '/api/workstations/pairing-codes/redeem',
    summary: 'Redeem a code for a workstation credential',
    auth: 'none',
    body: p.redeemPairingCodeRequestSchema,
    response: p.redeemPairingCodeResponseSchema,
    status: 201,
  },
  {
    id: 'registerWorkstation',
    method: 'post',
    path: '/api/workstations',
    summary: 'Registration / heartbeat of the calling workstation',
    auth: 'workstation',
    body: p.registerWorkstationRequestSchema,
    response: p.registerWorkstationResponseSchema,
  },
  {
    id: 'listWorkstations',
    method: 'get',
    path: '/api/workstations',
    summary: 'The fleet',
    auth: 'admin or workstation',
    response: p.listWorkstationsResponseSchema,
  },
  {
    id: 'listCredentials',
    method: 'get',
    path: '/api/workstations/credentials',
    summary: 'Credentials, never their secrets',
    auth: 'admin',
    response: p.listCredentialsResponseSchema,
  },
  {
    id: 'drainWorkstation',
    method: 'post',
    path: '/api/workstations/{id}/drain',
    summary: 'Drain a workstation: no new runs; its agent finishes the runs it holds and exits',
    auth: 'admin',
    response: p.registerWorkstationResponseSchema,
  },
  {
    id: 'undrainWorkstation',
    method: 'post',
    path: '/api/workstations/{id}/undrain',
    summary:
      'Take a drain back: the workstation is offered runs again (an agent already draining still stops)',
    auth: 'admin',
    response: p.registerWorkstationResponseSchema,
  },
  {
    id: 'revokeOwnCredential',
    method: 'post',
    path: '/api/workstations/self/revoke',
    summary: "Revoke the calling workstation's own credential",
    auth: 'workstation',
    response: p.revokeCredentialResponseSchema,
  },
  {
    id: 'revokeCredential',
    method: 'post',
    path: '/api/workstations/credentials/{id}/revoke',
    summary: 'Revoke a credential at once',
    auth: 'admin',
    response: p.revokeCredentialResponseSchema,
  },
  {
    id: 'listWorkstationRuns',
    method: 'get',
    path: '/api/workstations/{id}/runs',
    summary: 'Runs offered to a workstation (the polling path)',
    auth: 'admin or workstation',
    query: z.object({ status: p.runStatusSchema.optional() }),
    response: p.listRunsResponseSchema,
  },
  {
    id: 'submitRun',
    method: 'post',
    path: '/api/runs',
    summary: 'Submit a run',
    auth: 'admin',
    body: p.submitRunRequestSchema,
    response: p.runResponseSchema,
    status: 201,
    alsoStatus: {
      status: 200,
      description: 'An idempotent repeat (same idempotency_key): the run it created first',
    },
  },
  {
    id: 'submitRuns',
    method: 'post',
    path: '/api/runs/batch',
    summary:
      'Submit up to 1,000 runs in one request (one insert); each as POST /api/runs would, answered in order. A bad run is a 400 naming its index (`runs[3].…`, `details[].index`) and nothing is submitted',
    auth: 'admin',
    body: p.submitRunsBatchRequestSchema,
    response: p.submitRunsBatchResponseSchema,
    status: 201,
    alsoStatus: {
      status: 200,
      description: 'Every run was an idempotent repeat (same idempotency_key): nothing new was created',
    },
  },
  {
    id: 'listRuns',
    method: 'get',
    path: '/api/runs',
    summary: 'List runs',
    auth: 'admin or workstation',
    query: p.listRunsQuerySchema,
    response: p.listRunsResponseSchema,
  },
  {
    id: 'getRun',
    method: 'get',
    path: '/api/runs/{id}',
    summary: 'Read a run',
    auth: 'admin or workstation',
    response: p.runResponseSchema,
  },
  {
    id: 'cancelRun',
    method: 'post',
    path: '/api/runs/{id}/cancel',
    summary: 'Cancel a run',
    auth: 'admin',
    response: p.runResponseSchema,
  },
  {
    id: 'listRunEvents',
    method: 'get',
    path: '/api/runs/{id}/events',
    summary: 'Page events after after_seq; Accept: text/event-stream follows live',
    auth: 'admin',
    query: p.listEventsQuerySchema,
    response: p.listEventsResponseSchema,
  },
  {
    id: 'queueCommand',
    method: 'post',
    path: '/api/runs/{id}/commands',
    summary: 'Queue a command into a live run',
    auth: 'admin',
    body: p.queueCommandRequestSchema,
    response: p.commandResponseSchema,
    status: 201,
  },
  {
    id: 'listCommands',
    method: 'get',
    path: '/api/runs/{id}/commands',
    summary: 'Commands after after_seq',
    auth: 'admin or workstation',
    query: z.object({ after_seq: z.number().int().optional() }),
    response: p.listCommandsResponseSchema,
  },
  {
    id: 'claimRun',
    method: 'post',
    path: '/api/runs/{id}/claim',
    summary: 'Take the run lease',
    auth: 'workstation',
    body: p.claimRunRequestSchema,
    response: p.claimRunResponseSchema,
  },
  {
    id: 'heartbeatRun',
    method: 'post',
    path: '/api/runs/{id}/heartbeat',
    summary: 'Renew the lease (fenced)',
    auth: 'workstation',
    body: p.heartbeatRunRequestSchema,
    response: p.heartbeatRunResponseSchema,
  },
  {
    id: 'appendRunEvents',
    method: 'post',
    path: '/api/runs/{id}/events',
    summary: 'Append events (fenced, idempotent by seq)',
    auth: 'workstation',
    body: p.appendEventsRequestSchema,
    response: p.appendEventsResponseSchema,
  },
  {
    id: 'reportRunStatus',
    method: 'post',
    path: '/api/runs/{id}/status',
    summary: 'Report running or a terminal status (fenced), optionally with the last events',
    auth: 'workstation',
    body: p.reportRunStatusRequestSchema,
    response: p.reportRunStatusResponseSchema,
  },
  {
    id: 'releaseRun',
    method: 'post',
    path: '/api/runs/{id}/release',
    summary: 'Release the lease (fenced)',
    auth: 'workstation',
    body: p.releaseRunRequestSchema,
    response: p.okResponseSchema,
  },
  {
    id: 'handBackRun',
    method: 'post',
    path: '/api/runs/{id}/hand-back',
    summary: 'Hand back a run claimed on offer and never started: queued again, no attempt used (fenced)',
    auth: 'workstation',
    body: p.handBackRunRequestSchema,
    response: p.handBackRunResponseSchema,
  },
  {
    id: 'ackCommand',
    method: 'post',
    path: '/api/commands/{id}/ack',
    summary: 'Acknowledge a command (fenced)',
    auth: 'workstation',
    body: p.ackCommandRequestSchema,
    response: p.commandResponseSchema,
  },
  {
    id: 'reportCommandStatus',
    method: 'post',
    path: '/api/commands/{id}/status',
    summary: 'Report a command result (fenced)',
    auth: 'workstation',
    body: p.commandStatusRequestSchema,
    response: p.commandResponseSchema,
  },
  {
    id: 'uploadBundle',
    method: 'put',
    path: '/api/bundles/{sha256}',
    summary: 'Upload a bundle (tar or tar.gz), checked against its sha256',
    auth: 'admin',
    rawBody: 'application/octet-stream',
    response: p.bundleResponseSchema,
  },
  {
    id: 'downloadBundle',
    method: 'get',
    path: '/api/bundles/{sha256}',
    summary: 'Download a bundle',
    auth: 'admin or workstation',
  },
  {
    id: 'openAgentLink',
    method: 'get',
    path: '/api/agent/link',
    summary:
      'The agent link: a WebSocket (Upgrade: websocket); carries offers and cancels, and the agent’s fenced run calls as request/reply messages (docs/runs.md)',
    auth: 'workstation',
  },
];

const json = (schema: z.ZodType, io: 'input' | 'output') =>
  z.toJSONSchema(schema, { io, unrepresentable: 'any' });

/**
 * The OpenAPI 3.1 document of the API, built from the same zod schemas the routes validate
 * with, so it cannot drift from them.
 *
 * @example
 * app.get('/openapi.json', (c) => c.json(openApiDocument('0.1.0')));
 */
export function openApiDocument(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const errorSchema = json(p.errorBodySchema, 'output');
  for (const op of OPERATIONS) {
    const params = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    const query = op.query
      ? Object.entries(op.query.shape).map(([name, s]) => ({
          name,
          in: 'query',
          required: false,
          schema: json(s as z.ZodType, 'input'),
        }))
      : [];
    paths[op.path] ??= {};
    const content = op.response
      ? { content: { 'application/json': { schema: json(op.response, 'output') } } }
      : {};
    paths[op.path]![op.method] = {
      operationId: op.id,
      summary: op.summary,
      ...(op.auth === 'none' ? { security: [] } : { description: `Bearer token: ${op.auth}.` }),
      ...(params.length + query.length > 0 ? { parameters: [...params, ...query] } : {}),
      ...(op.body
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: json(op.body, 'input') } },
            },
          }
        : {}),
      ...(op.rawBody
        ? {
            requestBody: {
              required: true,
              content: { [op.rawBody]: { schema: { type: 'string', format: 'binary' } } },
            },
          }
        : {}),
      responses: {
        [String(op.status ?? 200)]: { description: 'OK', ...content },
        ...(op.alsoStatus
          ? { [String(op.alsoStatus.status)]: { description: op.alsoStatus.description, ...content } }
          : {}),
        '4XX': { description: 'Client error', content: { 'application/json': { schema: errorSchema } } },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'runt control plane', version, license: { name: 'MIT', identifier: 'MIT' } },
    // Relative: the API is served by the same control plane that serves this document.
    servers: [{ url: '/', description: 'This control plane' }],
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths,
  };
}

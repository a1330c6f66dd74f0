import { z } from 'zod';
import * as p from '@runt/protocol';

type Auth = 'admin' | 'workstation' | 'admin or workstation' | 'none';
interface Operation {
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
}

/** Every route the control plane serves, with its schemas: the single source of `/openapi.json`. */
export const OPERATIONS: Operation[] = [
  { method: 'get', path: '/healthz', summary: 'The process answers', auth: 'none' },
  { method: 'get', path: '/readyz', summary: 'The database answers too', auth: 'none' },
  { method: 'get', path: '/metrics', summary: 'Prometheus metrics', auth: 'none' },
  { method: 'get', path: '/openapi.json', summary: 'This document', auth: 'none' },
  { method: 'post', path: '/api/workstations/pairing-codes', summary: 'Mint a one-time pairing code', auth: 'admin', body: p.mintPairingCodeRequestSchema, response: p.mintPairingCodeResponseSchema, status: 201 },
  { method: 'get', path: '/api/workstations/pairing-codes/{id}', summary: 'Where a pairing code stands', auth: 'admin', response: p.pairingCodeStatusResponseSchema },
  { method: 'post', path: '/api/workstations/pairing-codes/redeem', summary: 'Redeem a code for a workstation credential', auth: 'none', body: p.redeemPairingCodeRequestSchema, response: p.redeemPairingCodeResponseSchema, status: 201 },
  { method: 'post', path: '/api/workstations', summary: 'Registration / heartbeat of the calling workstation', auth: 'workstation', body: p.registerWorkstationRequestSchema, response: p.registerWorkstationResponseSchema },
  { method: 'get', path: '/api/workstations', summary: 'The fleet', auth: 'admin or workstation', response: p.listWorkstationsResponseSchema },
  { method: 'get', path: '/api/workstations/credentials', summary: 'Credentials, never their secrets', auth: 'admin', response: p.listCredentialsResponseSchema },
  { method: 'post', path: '/api/workstations/{id}/drain', summary: 'Drain a workstation: no new runs; its agent finishes the runs it holds and exits', auth: 'admin', response: p.registerWorkstationResponseSchema },
  { method: 'post', path: '/api/workstations/self/revoke', summary: "Revoke the calling workstation's own credential", auth: 'workstation', response: p.revokeCredentialResponseSchema },
  { method: 'post', path: '/api/workstations/credentials/{id}/revoke', summary: 'Revoke a credential at once', auth: 'admin', response: p.revokeCredentialResponseSchema },
  { method: 'get', path: '/api/workstations/{id}/runs', summary: 'Runs offered to a workstation (the polling path)', auth: 'admin or workstation', query: z.object({ status: p.runStatusSchema.optional() }), response: p.listRunsResponseSchema },
  { method: 'post', path: '/api/runs', summary: 'Submit a run', auth: 'admin', body: p.submitRunRequestSchema, response: p.runResponseSchema, status: 201 },
  { method: 'get', path: '/api/runs', summary: 'List runs', auth: 'admin or workstation', query: p.listRunsQuerySchema, response: p.listRunsResponseSchema },
  { method: 'get', path: '/api/runs/{id}', summary: 'Read a run', auth: 'admin or workstation', response: p.runResponseSchema },
  { method: 'post', path: '/api/runs/{id}/cancel', summary: 'Cancel a run', auth: 'admin', response: p.runResponseSchema },
  { method: 'get', path: '/api/runs/{id}/events', summary: 'Page events after after_seq; Accept: text/event-stream follows live', auth: 'admin', query: p.listEventsQuerySchema, response: p.listEventsResponseSchema },
  { method: 'post', path: '/api/runs/{id}/commands', summary: 'Queue a command into a live run', auth: 'admin', body: p.queueCommandRequestSchema, response: p.commandResponseSchema, status: 201 },
  { method: 'get', path: '/api/runs/{id}/commands', summary: 'Commands after after_seq', auth: 'admin or workstation', query: z.object({ after_seq: z.number().int().optional() }), response: p.listCommandsResponseSchema },
  { method: 'post', path: '/api/runs/{id}/claim', summary: 'Take the run lease', auth: 'workstation', body: p.claimRunRequestSchema, response: p.claimRunResponseSchema },
  { method: 'post', path: '/api/runs/{id}/heartbeat', summary: 'Renew the lease (fenced)', auth: 'workstation', body: p.heartbeatRunRequestSchema, response: p.heartbeatRunResponseSchema },
  { method: 'post', path: '/api/runs/{id}/events', summary: 'Append events (fenced, idempotent by seq)', auth: 'workstation', body: p.appendEventsRequestSchema, response: p.appendEventsResponseSchema },
  { method: 'post', path: '/api/runs/{id}/status', summary: 'Report running or a terminal status (fenced), optionally with the last events', auth: 'workstation', body: p.reportRunStatusRequestSchema, response: p.reportRunStatusResponseSchema },
  { method: 'post', path: '/api/runs/{id}/release', summary: 'Release the lease (fenced)', auth: 'workstation', body: p.releaseRunRequestSchema, response: p.okResponseSchema },
  { method: 'post', path: '/api/commands/{id}/ack', summary: 'Acknowledge a command (fenced)', auth: 'workstation', body: p.ackCommandRequestSchema, response: p.commandResponseSchema },
  { method: 'post', path: '/api/commands/{id}/status', summary: 'Report a command result (fenced)', auth: 'workstation', body: p.commandStatusRequestSchema, response: p.commandResponseSchema },
  { method: 'put', path: '/api/bundles/{sha256}', summary: 'Upload a bundle (tar or tar.gz), checked against its sha256', auth: 'admin', rawBody: 'application/octet-stream', response: p.bundleResponseSchema },
  { method: 'get', path: '/api/bundles/{sha256}', summary: 'Download a bundle', auth: 'admin or workstation' },
  { method: 'get', path: '/api/agent/link', summary: 'The agent link: a WebSocket (Upgrade: websocket)', auth: 'workstation' },
];

const json = (schema: z.ZodType, io: 'input' | 'output') => z.toJSONSchema(schema, { io, unrepresentable: 'any' });

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
    const params = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const query = op.query
      ? Object.entries(op.query.shape).map(([name, s]) => ({ name, in: 'query', required: false, schema: json(s as z.ZodType, 'input') }))
      : [];
    paths[op.path] ??= {};
    paths[op.path]![op.method] = {
      summary: op.summary,
      ...(op.auth === 'none' ? { security: [] } : { description: `Bearer token: ${op.auth}.` }),
      ...(params.length + query.length > 0 ? { parameters: [...params, ...query] } : {}),
      ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: json(op.body, 'input') } } } } : {}),
      ...(op.rawBody ? { requestBody: { required: true, content: { [op.rawBody]: { schema: { type: 'string', format: 'binary' } } } } } : {}),
      responses: {
        [String(op.status ?? 200)]: { description: 'OK', ...(op.response ? { content: { 'application/json': { schema: json(op.response, 'output') } } } : {}) },
        '4XX': { description: 'Client error', content: { 'application/json': { schema: errorSchema } } },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'runt control plane', version },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths,
  };
}

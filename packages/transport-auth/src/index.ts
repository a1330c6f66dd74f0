export { TOKEN_PREFIXES, mintToken, type TokenKind } from './mint-token.js';
export { parseToken } from './parse-token.js';
export { hashToken } from './hash-token.js';
export { verifyToken } from './verify-token.js';
export {
  bearerAuth,
  type AuthEnv,
  type BearerAuthOptions,
  type Principal,
  type PrincipalResolver,
} from './bearer-auth.js';
export { bearerHook } from './bearer-hook.js';
export { requestHeader } from './request-header.js';
export { redactSecrets } from './redact-secrets.js';
export { redactingLogOptions } from './redacting-log-options.js';
export { AuthError, isAuthError, type AuthErrorCode } from './auth-error.js';

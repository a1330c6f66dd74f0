import type { BeforeRequestHook } from 'ky';

/**
 * A ky `beforeRequest` hook that sets `Authorization: Bearer <token>`. Pass a function to read
 * the token at request time (after a re-pair, from the environment); when it returns
 * `undefined` the header is left alone.
 *
 * @example
 * const api = ky.create({ prefixUrl: cred.cloud_url, hooks: { beforeRequest: [bearerHook(() => cred.token)] } });
 */
export function bearerHook(token: string | (() => string | undefined)): BeforeRequestHook {
  return (request) => {
    const value = typeof token === 'function' ? token() : token;
    if (value !== undefined && value !== '') request.headers.set('Authorization', `Bearer ${value}`);
  };
}

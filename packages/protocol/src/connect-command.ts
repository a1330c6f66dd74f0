/**
 * The npm package that carries the runt CLI. The unscoped name `runt` belongs to an unrelated
 * package, so every printed one-liner names this scoped package (its bin is still `runt`).
 */
export const CLI_PACKAGE = '@runt/cli';

/**
 * The one shell line an operator hands to a workstation to pair it: the control plane's start
 * banner, `POST /api/pairing-codes`, `runt admin pairing-code` and the panel all print this.
 */
export function connectCommand(publicUrl: string, code: string): string {
  return `npx ${CLI_PACKAGE} workstation connect ${publicUrl} --code ${code}`;
}

/** One thing a claimer saw happen to a lease it held, in the order it saw it. */
export interface HeldInterval {
  holder: string;
  token: number;
  /** Database time of the claim that produced `token` (ms since epoch). */
  acquiredAt: number;
  /** Database time the lease ends as far as this event knows: expiry, or the release time. */
  end: number;
}

/**
 * Checks the exclusivity of a run of claims: every token belongs to one holder and one
 * acquisition, tokens are exactly 1..n (no granted claim unaccounted for), and the database-time
 * interval of token k+1 starts no earlier than the interval of token k ends. `perHolder` lists
 * each claimer's events in the order it saw them, so the last event of a token is its final end.
 */
export function checkExclusiveIntervals(perHolder: HeldInterval[][]): { tokens: number; problems: string[] } {
  const byToken = new Map<number, HeldInterval>();
  const problems: string[] = [];
  for (const events of perHolder) {
    for (const e of events) {
      const seen = byToken.get(e.token);
      if (!seen) {
        byToken.set(e.token, { ...e });
        continue;
      }
      if (seen.holder !== e.holder)
        problems.push(`token ${e.token} granted to ${seen.holder} and ${e.holder}`);
      if (seen.acquiredAt !== e.acquiredAt) problems.push(`token ${e.token} acquired twice`);
      seen.end = e.end;
    }
  }
  const tokens = [...byToken.keys()].sort((a, b) => a - b);
  tokens.forEach((t, i) => {
    if (t !== i + 1) problems.push(`tokens are not 1..n: position ${i} holds ${t}`);
  });
  for (let i = 1; i < tokens.length; i++) {
    const prev = byToken.get(tokens[i - 1]!)!;
    const next = byToken.get(tokens[i]!)!;
    if (next.acquiredAt < prev.end) {
      problems.push(
        `token ${tokens[i]} (${next.holder}) acquired at ${next.acquiredAt} before token ${tokens[i - 1]} (${prev.holder}) ended at ${prev.end}`,
      );
    }
  }
  return { tokens: tokens.length, problems };
}

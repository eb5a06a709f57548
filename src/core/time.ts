/** Epoch milliseconds (as stored) to the UTC ISO-8601 string the API shows; null stays null. */
export function iso(ms: number | string | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(Number(ms)).toISOString();
}

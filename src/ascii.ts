// ASCII helpers for the per-request path, where a lower-cased copy of a string is an allocation.

/**
 * `s` from `at` equals `lower` (lower case: letters and "-") ignoring ASCII case, without
 * allocating a lower-cased copy. For field names (tokens) and field values only: `| 0x20`
 * maps "A"–"Z" onto "a"–"z" and "-" onto itself; the only other character it maps onto one of
 * those is CR (onto "-"), which neither can contain. The caller checks the length.
 */
export function lowerEq(s: string, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) if ((s.charCodeAt(at + i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

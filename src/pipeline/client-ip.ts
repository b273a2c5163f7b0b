// Client IP (SPEC §3.8): the peer address; when the peer is a trusted proxy, the right-most
// untrusted address of X-Forwarded-For (or the first entry of `clientIPHeader`).
import type { CompiledConfig } from "../config/compile.ts";
import { parseIp, normalizeIp } from "../policy/ip.ts";

export function normalizePeer(addr: string): string {
  return normalizeIp(addr);
}

export function clientIpOf(req: Request, peer: string, c: CompiledConfig): string {
  if (c.clientIPHeader !== "") {
    const v = req.headers.get(c.clientIPHeader);
    if (v === null) return peer;
    const first = stripPort(v.split(",")[0]!.trim());
    return parseIp(first) ? normalizeIp(first) : peer;
  }
  const xff = req.headers.get("x-forwarded-for");
  if (xff === null) return peer;
  const parts = xff.split(",");
  for (let i = parts.length - 1; i >= 0; i--) {
    const a = stripPort(parts[i]!.trim());
    const bytes = parseIp(a);
    if (!bytes) return peer; // garbage in the chain: believe nothing left of it
    if (!c.trusted.has(bytes)) return normalizeIp(a);
  }
  // every hop trusted: the left-most is the client
  const left = stripPort(parts[0]!.trim());
  return normalizeIp(left);
}

/** "1.2.3.4:5678" → "1.2.3.4"; "[::1]:80" → "::1"; bare addresses unchanged. */
function stripPort(a: string): string {
  if (a.startsWith("[")) {
    const e = a.indexOf("]");
    return e > 0 ? a.slice(1, e) : a;
  }
  const c = a.indexOf(":");
  if (c > 0 && c === a.lastIndexOf(":")) return a.slice(0, c);
  return a;
}

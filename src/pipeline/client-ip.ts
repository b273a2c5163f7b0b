// Client IP (SPEC §3.8): the peer address; when the peer is a trusted proxy, the right-most
// untrusted address of X-Forwarded-For (or the first entry of `clientIPHeader`).
// An untrusted peer's X-Forwarded-For / clientIPHeader is never read: the handler calls
// clientIpOf only for trusted peers. Results are canonical text (IPv4-mapped IPv6 → IPv4,
// IPv6 in RFC 5952 form), so one client has one rate-limit key and one log value.
import type { CompiledConfig } from "../config/compile.ts";
import { parseIpInto, formatIp, normalizeIp } from "../policy/ip.ts";

const BUF = new Uint8Array(16);

export function normalizePeer(addr: string): string {
  return normalizeIp(addr);
}

/** Client IP of a request whose peer is trusted. Anything unparsable falls back to the peer. */
export function clientIpOf(req: Request, peer: string, c: Pick<CompiledConfig, "clientIPHeader" | "trusted">): string {
  if (c.clientIPHeader !== "") {
    const v = req.headers.get(c.clientIPHeader);
    if (v === null) return peer;
    const comma = v.indexOf(",");
    const n = parseIpInto(stripPort((comma < 0 ? v : v.slice(0, comma)).trim()), BUF);
    return n === 0 ? peer : formatIp(BUF, n);
  }
  const xff = req.headers.get("x-forwarded-for");
  if (xff === null) return peer;
  const parts = xff.split(",");
  for (let i = parts.length - 1; i >= 0; i--) {
    const n = parseIpInto(stripPort(parts[i]!.trim()), BUF);
    // garbage in the chain (written by a trusted hop): believe nothing left of it
    if (n === 0) return peer;
    if (!c.trusted.has(BUF, n)) return formatIp(BUF, n);
  }
  // every hop trusted: the left-most is the client (it parsed above)
  const n = parseIpInto(stripPort(parts[0]!.trim()), BUF);
  return formatIp(BUF, n);
}

/** "1.2.3.4:5678" → "1.2.3.4"; "[::1]:80" → "::1"; bare addresses unchanged. */
function stripPort(a: string): string {
  if (a.charCodeAt(0) === 91 /* [ */) {
    const e = a.indexOf("]");
    return e > 0 ? a.slice(1, e) : a;
  }
  const c = a.indexOf(":");
  if (c > 0 && c === a.lastIndexOf(":")) return a.slice(0, c);
  return a;
}

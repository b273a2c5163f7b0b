// One upstream of one route, precomputed at compile time so the hot path only reads fields.
import type { UpstreamState } from "./registry.ts";

export interface UpstreamTarget {
  /** The URL as configured (the identity used for health, stickiness and the admin API). */
  readonly url: string;
  /** `scheme://host:port` with the port always present: the breaker and metrics key. */
  readonly origin: string;
  readonly https: boolean;
  readonly hostname: string;
  readonly port: number;
  /** Base path without a trailing slash ("" for none): joined as basePath + request path. */
  readonly basePath: string;
  readonly weight: number;
  /** Opaque sticky id: first 16 hex digits of SHA-256("<route> <url>"). */
  readonly stickyId: string;
  /** Index of this upstream in its route's list (file order). */
  readonly index: number;
  readonly state: UpstreamState;
}

export function parseUpstreamUrl(url: string): { https: boolean; hostname: string; port: number; basePath: string; origin: string } {
  const u = new URL(url);
  const https = u.protocol === "https:";
  const port = u.port ? Number(u.port) : https ? 443 : 80;
  const hostname = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  let basePath = u.pathname;
  while (basePath.endsWith("/")) basePath = basePath.slice(0, -1);
  const hostPart = u.hostname; // keeps [] around IPv6
  return { https, hostname, port, basePath, origin: `${u.protocol}//${hostPart}:${port}` };
}

export function stickyIdFor(route: string, url: string): string {
  const h = new Bun.CryptoHasher("sha256");
  h.update(`${route} ${url}`);
  return h.digest("hex").slice(0, 16);
}

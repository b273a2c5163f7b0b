// The configuration contract (SPEC §2): every key, its type, its default and its unit.
// This file is the single source of keys: the unknown-key check (load.ts) walks these
// schemas, and `Config` (the validated shape with defaults applied) is inferred from them.
//
// Defaults apply key by key, also inside a block that is present (Fix: the Go original
// zeroed missing keys inside a present block). Defaults that depend on a sibling
// (`burst` = max(1, ceil(rps)), sticky cookie name = hecate_sticky_<route>) are resolved in
// compile.ts, where the whole object is known.
//
// Messages are written to follow the key path: `proxy.limits.rps: must be a number (got "abc")`
// (load.ts appends the "(got …)" part). Values that have a syntax of their own (listen
// addresses, CIDRs, upstream URLs, host patterns) are checked here too, so that every such
// error is reported together with the others, not only once the rest of the file is valid.
import * as v from "valibot";
import { parseListen } from "./listen.ts";
import { CidrSet, parseIp } from "../policy/ip.ts";
import { parseUpstreamUrl } from "../upstream/target.ts";

const int = (min = 0) => v.pipe(v.number("must be a number"), v.integer("must be a whole number"), v.minValue(min, `must be ≥ ${min}`));
const num = (min = 0) => v.pipe(v.number("must be a number"), v.minValue(min, `must be ≥ ${min}`));
const str = () => v.string("must be a string");
const bool = () => v.boolean("must be true or false");
const strList = () => v.array(str(), "must be a list of strings");
/** A mapping with known keys (unknown keys are reported by load.ts, with a suggestion). */
const obj = <T extends v.ObjectEntries>(entries: T) => v.object(entries, "must be a mapping");
/** An object whose every key is optional and filled with its default when absent. */
const block = <T extends v.ObjectEntries>(entries: T) => v.optional(obj(entries), {} as never);

/** "host:port", ":port" or "[v6]:port". */
const listenAddr = () =>
  v.pipe(
    v.string('must be an address such as ":8443" or "127.0.0.1:8443"'),
    v.check((s) => parseListen(s) !== null, 'must be "host:port", ":port" or "[ipv6]:port" with a port from 0 to 65535'),
  );

function cidrProblem(s: string): string | undefined {
  const err = new CidrSet().add(s);
  if (err === undefined) return undefined;
  const slash = s.indexOf("/");
  if (parseIp((slash < 0 ? s : s.slice(0, slash)).trim()) === null) return "must be an IP address or CIDR such as 10.0.0.0/8 or 2001:db8::/32";
  if (/prefix length/.test(err) && !/IPv4-mapped/.test(err)) return "prefix length must be /0 to /32 for IPv4, /0 to /128 for IPv6";
  // CidrSet's own words, without the quoted value (load.ts adds "(got …)")
  return err.replace(` in ${JSON.stringify(s)}`, "").replace(` ${JSON.stringify(s)}`, "");
}
/** An IPv4/IPv6 CIDR or a bare address (/32 or /128). */
const cidr = () =>
  v.pipe(
    str(),
    v.check((s) => cidrProblem(s) === undefined, (issue) => cidrProblem(issue.input as string) ?? "must be a CIDR"),
  );
const cidrList = () => v.array(cidr(), "must be a list of CIDRs");

/** Exact host names, `*.example.com` wildcards, IPv4 literals and `[v6]` literals. */
export const HOST_PATTERN = /^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$|^\[[0-9a-f:.]+\]$|^[0-9.]+$/i;

/** Why `s` is not an upstream URL (`http[s]://host[:port][/basePath]`), or undefined when it is one. */
function urlProblem(s: string): string | undefined {
  if (!/^https?:\/\//i.test(s)) return 'must start with "http://" or "https://"';
  if (/[?#]/.test(s)) return "must not have a query or fragment (only scheme://host[:port][/basePath])";
  if (/^https?:\/\/[^/]*@/i.test(s)) return "must not contain user info (user:password@)";
  if (!/^https?:\/\/[^/\s]+(\/\S*)?$/i.test(s)) return "is not a valid URL";
  try {
    return parseUpstreamUrl(s).port === 0 ? "needs a port from 1 to 65535" : undefined;
  } catch {
    return "is not a valid URL (check the host name and the port, 1 to 65535)";
  }
}
const upstreamUrl = () =>
  v.pipe(
    str(),
    v.check((s) => urlProblem(s) === undefined, (issue) => urlProblem(issue.input as string) ?? "is not a valid URL"),
  );

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

// --- shared pieces -------------------------------------------------------------------

export const BasicAuthSchema = obj({
  username: str(),
  password: str(),
});

export const AuthSchema = obj({
  bearerToken: v.optional(v.pipe(str(), v.minLength(1, "must not be empty"))),
  basic: v.optional(BasicAuthSchema),
});

export const RateLimitSchema = obj({
  rps: v.pipe(v.number("must be a number"), v.gtValue(0, "must be > 0")),
  burst: v.optional(int(1)),
  key: v.optional(
    v.pipe(
      str(),
      v.regex(/^(ip|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/, 'must be "ip", "header:<Name>" or "cookie:<Name>"'),
    ),
    "ip",
  ),
});

const CacheKeys = {
  cacheTtlSeconds: v.optional(int(0), 300),
  cacheMaxEntries: v.optional(int(1), 10000),
  failOpen: v.optional(bool(), true),
};

const countryList = () => v.array(v.pipe(str(), v.regex(/^[A-Za-z]{2}$/, "must be a two-letter ISO country code")), "must be a list of country codes");

export const GeoIpSchema = obj({
  dbPath: v.pipe(str(), v.minLength(1, "must not be empty")),
  allowCountries: v.optional(countryList(), []),
  denyCountries: v.optional(countryList(), []),
  ...CacheKeys,
});

export const AsnSchema = obj({
  dbPath: v.pipe(str(), v.minLength(1, "must not be empty")),
  allowAsn: v.optional(v.array(int(0), "must be a list of AS numbers"), []),
  denyAsn: v.optional(v.array(int(0), "must be a list of AS numbers"), []),
  ...CacheKeys,
});

export const IpAclSchema = obj({
  allowCidrs: v.optional(cidrList(), []),
  denyCidrs: v.optional(cidrList(), []),
});

const policyEntries = {
  ipAcl: v.optional(IpAclSchema),
  rateLimit: v.optional(RateLimitSchema),
  geoIp: v.optional(GeoIpSchema),
  asn: v.optional(AsnSchema),
  // Go Hecate: "expose LRU cache stats to /debug/vars". Accepted so that such configs keep
  // working; it changes nothing here.
  cacheStats: v.optional(bool(), false),
};

export const PathRuleSchema = obj({
  pathPrefix: v.pipe(str(), v.startsWith("/", 'must start with "/"')),
  rateLimit: RateLimitSchema,
});

export const RoutePolicySchema = obj({
  ...policyEntries,
  paths: v.optional(v.array(PathRuleSchema, "must be a list of { pathPrefix, rateLimit }"), []),
});

export const StoreSchema = obj({
  redis: obj({ url: v.pipe(str(), v.regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL")) }),
  failOpen: v.optional(bool(), true),
});

export const GlobalPolicySchema = obj({
  ...policyEntries,
  store: v.optional(StoreSchema),
});

const retryEntries = {
  maxRetries: v.optional(int(0), 2),
  perTryTimeoutSec: v.optional(num(0), 2),
  retryOn5xx: v.optional(bool(), true),
  retryOnConnectErr: v.optional(bool(), true),
  retryIdempotent: v.optional(bool(), true),
  backoffBaseMs: v.optional(int(0), 50),
  backoffMaxMs: v.optional(int(0), 500),
  retryBufferBytes: v.optional(int(0), 65536),
};
export const RetrySchema = obj(retryEntries);
/** A route's retry block: only the keys it sets override the global ones. */
export const RouteRetrySchema = obj(
  Object.fromEntries(Object.entries(retryEntries).map(([k, s]) => [k, v.optional(s.wrapped)])) as {
    [K in keyof typeof retryEntries]: v.OptionalSchema<(typeof retryEntries)[K]["wrapped"], undefined>;
  },
);

const headerOps = block({
  set: v.optional(v.record(str(), str(), "must be a mapping of header names to values"), {}),
  remove: v.optional(strList(), []),
});

const UpstreamObjectSchema = obj({
  url: upstreamUrl(),
  weight: v.optional(int(1), 1),
});
const NotAnUpstream = v.never("must be a URL string or { url, weight }");
/** A URL string or `{ url, weight }`. Picked by the value's type so that an error inside the
 *  object names its key (`upstreams[0].weight: …`) instead of "not a string or object". */
export const UpstreamSchema = v.lazy((input) =>
  typeof input === "string" ? upstreamUrl() : typeof input === "object" && input !== null && !Array.isArray(input) ? UpstreamObjectSchema : NotAnUpstream,
);

export const RouteSchema = obj({
  name: v.pipe(str(), v.minLength(1, "must not be empty"), v.regex(/^[A-Za-z0-9._:-]+$/, "may contain only letters, digits, '.', '_', ':' and '-'")),
  hosts: v.optional(v.array(v.pipe(str(), v.regex(HOST_PATTERN, 'must be a host name or a wildcard such as "*.example.com"')), "must be a list of host names"), []),
  pathPrefix: v.optional(v.pipe(str(), v.startsWith("/", 'must start with "/"')), "/"),
  stripPrefix: v.optional(bool(), false),
  upstreams: v.pipe(v.array(UpstreamSchema, "must be a list of upstream URLs"), v.minLength(1, "must list at least one upstream")),
  lb: block({
    algorithm: v.optional(
      v.picklist(["round_robin", "least_request", "random", "consistent_hash", "maglev"], "must be one of round_robin, least_request, random, consistent_hash, maglev"),
      "round_robin",
    ),
    hashKey: v.optional(str(), ""),
    maglevTableSize: v.optional(v.pipe(int(7), v.check(isPrime, "must be a prime number")), 65537),
  }),
  stickiness: block({
    enabled: v.optional(bool(), false),
    mode: v.optional(v.picklist(["cookie", "header"], 'must be "cookie" or "header"'), "cookie"),
    cookieName: v.optional(str(), ""),
    headerName: v.optional(str(), "X-Hecate-Sticky"),
    ttlSeconds: v.optional(int(1), 3600),
    strict: v.optional(bool(), false),
  }),
  auth: v.optional(AuthSchema),
  policy: v.optional(RoutePolicySchema),
  retry: v.optional(RouteRetrySchema),
  timeoutSec: v.optional(num(0), 0),
  headers: block({ request: headerOps, response: headerOps }),
});

export const TlsSchema = obj({
  certFiles: v.optional(strList(), []),
  keyFiles: v.optional(strList(), []),
  selfSigned: v.optional(bool(), true),
  clientCAFile: v.optional(str(), ""),
  requireClientCert: v.optional(bool(), false),
  minVersion: v.optional(v.picklist(["1.2", "1.3"], 'must be "1.2" or "1.3"'), "1.2"),
});

export const ConfigSchema = obj({
  admin: block({
    listen: v.optional(listenAddr(), ":9000"),
    auth: v.optional(AuthSchema),
  }),
  proxy: block({
    listen: v.optional(listenAddr(), ":8443"),
    http3Listen: v.optional(v.union([v.literal(""), listenAddr()], 'must be "" or an address such as ":8444"'), ""),
    enableHTTP3: v.optional(bool(), false),
    enableH2C: v.optional(bool(), false),
    enableUpstreamH2C: v.optional(bool(), false),
    workers: v.optional(v.union([int(1), v.literal("auto")], 'must be a whole number ≥ 1 or "auto"'), 1),
    trustedProxies: v.optional(cidrList(), []),
    limits: block({
      rps: v.optional(num(0), 0),
      burst: v.optional(int(1)),
      headerBytesCap: v.optional(int(1), 1048576),
      bodyBytesCap: v.optional(int(0), 10485760),
      clientIPHeader: v.optional(str(), ""),
    }),
    health: block({
      intervalSec: v.optional(num(0), 0),
      timeoutSec: v.optional(num(0), 2),
      failThreshold: v.optional(int(1), 3),
      successReset: v.optional(int(1), 2),
      path: v.optional(v.pipe(str(), v.startsWith("/", 'must start with "/"')), "/healthz"),
      expectStatus: v.optional(v.pipe(int(100), v.maxValue(599, "must be ≤ 599"))),
    }),
    routes: v.optional(v.array(RouteSchema, "must be a list of routes"), []),
    policy: v.optional(GlobalPolicySchema, {} as never),
    retry: block(retryEntries),
    circuitBreaker: block({
      openAfterConsecutiveFailures: v.optional(int(1), 5),
      cooldownSec: v.optional(num(0), 30),
      halfOpenMaxRequests: v.optional(int(1), 10),
      enabled: v.optional(bool(), true),
    }),
    server: block({
      readHeaderTimeoutSec: v.optional(num(0), 10),
      readTimeoutSec: v.optional(num(0), 0),
      writeTimeoutSec: v.optional(num(0), 0),
      idleTimeoutSec: v.optional(num(0), 90),
      maxHeaderBytes: v.optional(int(1), 1048576),
      shutdownTimeoutSec: v.optional(num(0), 15),
      sendLowWatermarkBytes: v.optional(int(0), 16384),
    }),
  }),
  tls: v.optional(TlsSchema),
  telemetry: block({
    serviceName: v.optional(str(), "hecate"),
    otlpEndpoint: v.optional(str(), ""),
    protocol: v.optional(v.picklist(["grpc", "http/protobuf"], 'must be "grpc" or "http/protobuf"')),
    headers: v.optional(v.record(str(), str(), "must be a mapping of header names to values"), {}),
    insecure: v.optional(bool(), false),
    sampling: v.optional(v.pipe(num(0), v.maxValue(1, "must be ≤ 1")), 0.1),
    accessLog: v.optional(bool(), true),
    logLevel: v.optional(v.picklist(["debug", "info", "warn", "error"], "must be one of debug, info, warn, error"), "info"),
  }),
});

export type Config = v.InferOutput<typeof ConfigSchema>;
export type RouteConfig = v.InferOutput<typeof RouteSchema>;
export type RetryConfig = v.InferOutput<typeof RetrySchema>;
export type RateLimitConfig = v.InferOutput<typeof RateLimitSchema>;
export type AuthConfig = v.InferOutput<typeof AuthSchema>;
export type GlobalPolicyConfig = v.InferOutput<typeof GlobalPolicySchema>;
export type RoutePolicyConfig = v.InferOutput<typeof RoutePolicySchema>;
export type TlsConfig = v.InferOutput<typeof TlsSchema>;

// The configuration contract (SPEC §2): every key, its type, its default and its unit.
// This file is the single source of keys: the unknown-key check (load.ts) walks these
// schemas, and `Config` (the validated shape with defaults applied) is inferred from them.
//
// Defaults apply key by key, also inside a block that is present (Fix: the Go original
// zeroed missing keys inside a present block). Defaults that depend on a sibling
// (`burst` = max(1, ceil(rps)), sticky cookie name = hecate_sticky_<route>) are resolved in
// compile.ts, where the whole object is known.
import * as v from "valibot";

const int = (min = 0) => v.pipe(v.number("must be a number"), v.integer("must be a whole number"), v.minValue(min, `must be ≥ ${min}`));
const num = (min = 0) => v.pipe(v.number("must be a number"), v.minValue(min, `must be ≥ ${min}`));
const str = () => v.string("must be a string");
const bool = () => v.boolean("must be true or false");
const strList = () => v.array(str(), "must be a list of strings");
/** An object whose every key is optional and filled with its default when absent. */
const block = <T extends v.ObjectEntries>(entries: T) => v.optional(v.object(entries), {} as never);

// --- shared pieces -------------------------------------------------------------------

export const BasicAuthSchema = v.object({
  username: str(),
  password: str(),
});

export const AuthSchema = v.object({
  bearerToken: v.optional(v.pipe(str(), v.minLength(1, "must not be empty"))),
  basic: v.optional(BasicAuthSchema),
});

export const RateLimitSchema = v.object({
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

export const GeoIpSchema = v.object({
  dbPath: str(),
  allowCountries: v.optional(v.array(v.pipe(str(), v.regex(/^[A-Za-z]{2}$/, "must be a two-letter ISO country code"))), []),
  denyCountries: v.optional(v.array(v.pipe(str(), v.regex(/^[A-Za-z]{2}$/, "must be a two-letter ISO country code"))), []),
  ...CacheKeys,
});

export const AsnSchema = v.object({
  dbPath: str(),
  allowAsn: v.optional(v.array(int(0)), []),
  denyAsn: v.optional(v.array(int(0)), []),
  ...CacheKeys,
});

export const IpAclSchema = v.object({
  allowCidrs: v.optional(strList(), []),
  denyCidrs: v.optional(strList(), []),
});

const policyEntries = {
  ipAcl: v.optional(IpAclSchema),
  rateLimit: v.optional(RateLimitSchema),
  geoIp: v.optional(GeoIpSchema),
  asn: v.optional(AsnSchema),
};

export const PathRuleSchema = v.object({
  pathPrefix: v.pipe(str(), v.startsWith("/", 'must start with "/"')),
  rateLimit: RateLimitSchema,
});

export const RoutePolicySchema = v.object({
  ...policyEntries,
  paths: v.optional(v.array(PathRuleSchema), []),
});

export const StoreSchema = v.object({
  redis: v.object({ url: v.pipe(str(), v.regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL")) }),
  failOpen: v.optional(bool(), true),
});

export const GlobalPolicySchema = v.object({
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
export const RetrySchema = v.object(retryEntries);
/** A route's retry block: only the keys it sets override the global ones. */
export const RouteRetrySchema = v.object(
  Object.fromEntries(Object.entries(retryEntries).map(([k, s]) => [k, v.optional(s.wrapped)])) as {
    [K in keyof typeof retryEntries]: v.OptionalSchema<(typeof retryEntries)[K]["wrapped"], undefined>;
  },
);

const headerOps = block({
  set: v.optional(v.record(str(), str()), {}),
  remove: v.optional(strList(), []),
});

export const UpstreamSchema = v.union(
  [
    v.pipe(str(), v.regex(/^https?:\/\/[^/?#]+(\/[^?#]*)?$/, "must be an http:// or https:// URL")),
    v.object({
      url: v.pipe(str(), v.regex(/^https?:\/\/[^/?#]+(\/[^?#]*)?$/, "must be an http:// or https:// URL")),
      weight: v.optional(int(1), 1),
    }),
  ],
  'must be a URL string or { url, weight }',
);

export const RouteSchema = v.object({
  name: v.pipe(str(), v.minLength(1, "must not be empty"), v.regex(/^[A-Za-z0-9._:-]+$/, "may contain only letters, digits, '.', '_', ':' and '-'")),
  hosts: v.optional(strList(), []),
  pathPrefix: v.optional(v.pipe(str(), v.startsWith("/", 'must start with "/"')), "/"),
  stripPrefix: v.optional(bool(), false),
  upstreams: v.pipe(v.array(UpstreamSchema, "must be a list"), v.minLength(1, "needs at least one upstream")),
  lb: block({
    algorithm: v.optional(
      v.picklist(["round_robin", "least_request", "random", "consistent_hash", "maglev"], "must be one of round_robin, least_request, random, consistent_hash, maglev"),
      "round_robin",
    ),
    hashKey: v.optional(str(), ""),
    maglevTableSize: v.optional(int(7), 65537),
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

export const TlsSchema = v.object({
  certFiles: v.optional(strList(), []),
  keyFiles: v.optional(strList(), []),
  selfSigned: v.optional(bool(), true),
  clientCAFile: v.optional(str(), ""),
  requireClientCert: v.optional(bool(), false),
  minVersion: v.optional(v.picklist(["1.2", "1.3"], 'must be "1.2" or "1.3"'), "1.2"),
});

export const ConfigSchema = v.object({
  admin: block({
    listen: v.optional(str(), ":9000"),
    auth: v.optional(AuthSchema),
  }),
  proxy: block({
    listen: v.optional(str(), ":8443"),
    http3Listen: v.optional(str(), ""),
    enableHTTP3: v.optional(bool(), false),
    enableH2C: v.optional(bool(), false),
    enableUpstreamH2C: v.optional(bool(), false),
    workers: v.optional(v.union([int(1), v.literal("auto")], 'must be a whole number ≥ 1 or "auto"'), 1),
    trustedProxies: v.optional(strList(), []),
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
    }),
  }),
  tls: v.optional(TlsSchema),
  telemetry: block({
    serviceName: v.optional(str(), "hecate"),
    otlpEndpoint: v.optional(str(), ""),
    protocol: v.optional(v.picklist(["grpc", "http/protobuf"], 'must be "grpc" or "http/protobuf"')),
    headers: v.optional(v.record(str(), str()), {}),
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

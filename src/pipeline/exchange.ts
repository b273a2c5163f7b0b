// Per-request state. Fixed shape: every field is initialised in the constructor.
import type { Server } from "bun";
import type { Generation } from "../runtime/generation.ts";
import type { CompiledRoute } from "../config/compile.ts";
import type { UpstreamTarget } from "../upstream/target.ts";
import type { RequestFields } from "./headers.ts";

export class Exchange {
  readonly req: Request;
  readonly server: Server<unknown>;
  readonly gen: Generation;
  readonly start: number; // performance.now()
  readonly method: string;
  /** Raw Host value as received ("" when absent). */
  hostHeader: string;
  /** Normalised host: lower case, no port. */
  host: string;
  /** Path without the query, as received. */
  path: string;
  /** Query including "?" ("" when none). */
  query: string;
  /** TCP peer address (IPv4-mapped IPv6 normalised). */
  peer: string;
  /** The peer is in proxy.trustedProxies. */
  peerTrusted: boolean;
  /** Client IP after trusted-proxy processing (SPEC §3.8). */
  clientIp: string;
  requestId: string;
  tls: boolean;
  /** "HTTP/1.1", "HTTP/2", "HTTP/3" when known, else "". */
  proto: string;
  route: CompiledRoute | null;
  upstream: UpstreamTarget | null;
  attempts: number;
  status: number;
  bytes: number;
  traceId: string;
  /** Name of the policy that denied the request ("" when none), for metrics. */
  denied: string;
  /** Set when the response carries a sticky marker that must be (re)issued. */
  stickyIssue: UpstreamTarget | null;
  /** Free slot for stages (e.g. the rate-limit rule name used). */
  note: string;
  finished: boolean;
  /** Slot for the tracing module (the SERVER span); null when not traced. */
  span: unknown;
  /** All request fields, read once by the handler (headers.ts requestFields); null until then. */
  reqFields: RequestFields | null;
  /** Request fields noted while upstreamRequestHeaders walks them (headers.ts). */
  reqContentLength: string | null;
  reqChunked: boolean;
  reqIdempotencyKey: boolean;

  constructor(req: Request, server: Server<unknown>, gen: Generation, start: number, tls: boolean) {
    this.req = req;
    this.server = server;
    this.gen = gen;
    this.start = start;
    this.method = req.method;
    this.hostHeader = "";
    this.host = "";
    this.path = "/";
    this.query = "";
    this.peer = "";
    this.peerTrusted = false;
    this.clientIp = "";
    this.requestId = "";
    this.tls = tls;
    this.proto = "";
    this.route = null;
    this.upstream = null;
    this.attempts = 0;
    this.status = 0;
    this.bytes = 0;
    this.traceId = "";
    this.denied = "";
    this.stickyIssue = null;
    this.note = "";
    this.finished = false;
    this.span = null;
    this.reqFields = null;
    this.reqContentLength = null;
    this.reqChunked = false;
    this.reqIdempotencyKey = false;
  }
}

// Idle timeout of a streamed response (SPEC §3.6: "idle streams end by server.idleTimeoutSec";
// a stream that makes progress is never cut).
//
// Why not Bun's own timer: measured on Bun 1.4.5, Bun.serve's `idleTimeout` cuts a streamed
// response that keeps writing — idleTimeout 2 or 4: cut at 4 s with a chunk every 500 ms;
// idleTimeout 8: cut at 12 s with a chunk every 6 s. Response writes do not reliably reset it,
// and neither does `server.timeout(req, n)` per chunk. `server.timeout(req, 0)` does switch it
// off for the connection, for good (an idle keep-alive connection then stays open forever), and
// `server.timeout(req, n)` once the body is done switches it back on.
//
// So a streamed response turns Bun's timer off while it streams and runs this watchdog instead:
// when no chunk has been passed on for idleTimeoutSec — the upstream is silent or the client
// does not read — the stream is ended with an error (the client connection is aborted, the
// upstream request cancelled). When the stream ends, the connection gets its idle timeout back.
import type { Exchange } from "../pipeline/exchange.ts";

export class StreamIdle {
  private readonly ex: Exchange;
  private readonly seconds: number;
  private timer: Timer | null = null;

  constructor(ex: Exchange, onIdle: () => void) {
    this.ex = ex;
    const s = ex.gen.compiled.config.proxy.server.idleTimeoutSec;
    this.seconds = s;
    if (s <= 0) return; // no idle timeout configured: nothing to replace
    try {
      ex.server.timeout(ex.req, 0);
    } catch {
      // a listener without per-request timers: keep its own
    }
    this.timer = setTimeout(onIdle, s * 1000);
  }

  /** A chunk went to the client. */
  progress(): void {
    this.timer?.refresh();
  }

  /** The stream ended (any way): stop watching, give the connection its idle timeout back. */
  end(): void {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = null;
    try {
      this.ex.server.timeout(this.ex.req, Math.max(1, Math.min(255, Math.round(this.seconds))));
    } catch {
      // the connection is gone
    }
  }
}

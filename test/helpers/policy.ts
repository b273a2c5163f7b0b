// Helpers of the policy e2e tests: requests that present a client address through a trusted
// X-Forwarded-For, a raw HTTP/1.1 exchange (to see repeated header fields as sent), and a
// recorder on the `denied` hook.
import { connect } from "node:net";
import { hooks } from "../../src/pipeline/hooks.ts";

/** GET through the proxy as client `ip` (the proxy must trust 127.0.0.1). */
export function getAs(url: string, ip: string | null, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { headers: ip === null ? headers : { "x-forwarded-for": ip, ...headers } });
}

/** Send one raw HTTP/1.1 request; returns the status and the header fields in wire order. */
export function rawRequest(port: number, path: string, headers: Record<string, string> = {}, host = "127.0.0.1"): Promise<{ status: number; fields: [string, string][]; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host);
    let buf = "";
    s.setEncoding("latin1");
    s.on("connect", () => {
      const lines = [`GET ${path} HTTP/1.1`, `Host: test.local`, "Connection: close", ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      s.write(lines.join("\r\n") + "\r\n\r\n");
    });
    s.on("data", (d) => (buf += d));
    s.on("error", reject);
    s.on("close", () => {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return reject(new Error(`no response head: ${JSON.stringify(buf.slice(0, 200))}`));
      const [statusLine, ...rest] = buf.slice(0, end).split("\r\n");
      const fields = rest.map((l) => {
        const c = l.indexOf(":");
        return [l.slice(0, c).toLowerCase(), l.slice(c + 1).trim()] as [string, string];
      });
      resolve({ status: Number(statusLine!.split(" ")[1]), fields, body: buf.slice(end + 4) });
    });
  });
}

export interface Denial {
  route: string;
  policy: string;
}

/** Record every call of hooks.denied (the metrics hook keeps working underneath). */
export function recordDenials(): { list: Denial[]; stop(): void } {
  const prev = hooks.denied;
  const list: Denial[] = [];
  hooks.denied = (ex, policy) => {
    list.push({ route: ex.route?.name ?? "", policy });
    prev(ex, policy);
  };
  return {
    list,
    stop() {
      hooks.denied = prev;
    },
  };
}

/** Expect a Hecate-generated error: status, text/plain body ending in a newline, X-Request-Id. */
export async function expectGenerated(r: Response, status: number, body: string, expect: (v: unknown) => any): Promise<void> {
  expect(r.status).toBe(status);
  expect(r.headers.get("content-type")).toBe("text/plain; charset=utf-8");
  expect(r.headers.get("x-request-id")).toBeTruthy();
  expect(await r.text()).toBe(body);
}

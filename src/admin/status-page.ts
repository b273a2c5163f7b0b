// `GET /` on the admin listener (SPEC §4): the built-in status page. One self-contained HTML
// document (inline CSS and JS, no external assets) that polls `/admin/stats` every second and
// offers drain/resume and the request explainer. The HTML is imported as text, so
// `bun build --compile` embeds it in the binary. Importing this module also registers
// `/admin/stats` and `/admin/explain`.
import page from "./status.html" with { type: "text" };
import { adminRoute } from "./server.ts";
import "./stats.ts";
import "./explain.ts";

const html = page as unknown as string;

/** CSP source expressions ('sha256-…') for every inline <tag> block of the page. */
function hashesOf(tag: string): string {
  const re = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g");
  const out: string[] = [];
  for (const m of html.matchAll(re)) out.push(`'sha256-${new Bun.CryptoHasher("sha256").update(m[1]!).digest("base64")}'`);
  return out.join(" ");
}

// Only the page's own inline script and style may run; data comes from this origin only.
const CSP = [
  "default-src 'none'",
  `script-src ${hashesOf("script")}`,
  `style-src ${hashesOf("style")}`,
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join("; ");

const HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

const body = new TextEncoder().encode(html);

export function statusPage(): Response {
  return new Response(body, { headers: HEADERS });
}

adminRoute("/", { GET: statusPage });

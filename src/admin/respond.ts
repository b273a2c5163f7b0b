// Response helpers of the admin listener: JSON answers are `application/json`, text answers
// are short `text/plain; charset=utf-8` bodies ending in a newline.
const JSON_HEADERS = { "content-type": "application/json" };
const TEXT_HEADERS = { "content-type": "text/plain; charset=utf-8" };

export function json(body: unknown, status = 200, extra?: Record<string, string>): Response {
  return new Response(JSON.stringify(body), { status, headers: extra ? { ...JSON_HEADERS, ...extra } : JSON_HEADERS });
}

export function text(body: string, status = 200, extra?: Record<string, string>): Response {
  return new Response(body.endsWith("\n") ? body : body + "\n", { status, headers: { ...TEXT_HEADERS, ...extra } });
}

// Listen addresses as written in the config: "host:port", ":port" (every interface) or
// "[v6]:port". Shared by the schema (validation) and compile (the parsed address).

export interface ListenAddress {
  hostname: string;
  port: number;
  text: string;
}

/** Parse a listen address; null when it is not one. Port 0 (any free port) is allowed. */
export function parseListen(text: string): ListenAddress | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]\s]*)):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  const host = m[1] ?? m[2] ?? "";
  return { hostname: host === "" ? "0.0.0.0" : host, port, text };
}

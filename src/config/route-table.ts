// The route table as text, in precedence order (SPEC §3.2): what `hecate check` prints.
import type { CompiledConfig } from "./compile.ts";

export function routeTable(c: CompiledConfig): string {
  const rows: string[][] = [["#", "ROUTE", "HOSTS", "PATH", "STRIP", "LB", "UPSTREAMS"]];
  c.router.ordered.forEach((r, i) => {
    rows.push([
      String(i + 1),
      r.name,
      r.hosts.length ? r.hosts.join(",") : "*",
      r.pathPrefix,
      r.stripPrefix ? "yes" : "no",
      r.config.lb.algorithm + (r.sticky ? `+sticky(${r.sticky.mode}:${r.sticky.mode === "cookie" ? r.sticky.name : r.sticky.headerName})` : ""),
      r.upstreams.map((u) => (u.weight !== 1 ? `${u.url} (w=${u.weight})` : u.url)).join(" "),
    ]);
  });
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  const lines = rows.map((r) => r.map((cell, col) => (col === r.length - 1 ? cell : cell.padEnd(widths[col]!))).join("  ").trimEnd());
  const p = c.config.proxy;
  const proto = c.config.tls
    ? `TLS${p.enableHTTP3 ? `, HTTP/3 on ${p.http3Listen || p.listen}` : ""}`
    : `plain HTTP${p.enableH2C ? ", h2c" : ""}`;
  const summary =
    `${c.routes.length} route${c.routes.length === 1 ? "" : "s"}, ${c.upstreamUrls.size} upstream${c.upstreamUrls.size === 1 ? "" : "s"}; ` +
    `listen ${p.listen} (${proto}), admin ${c.config.admin.listen}`;
  return (c.routes.length ? lines.join("\n") + "\n" : "no routes\n") + summary + "\n";
}

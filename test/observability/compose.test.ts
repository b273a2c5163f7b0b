// docker-compose.yml and the configs under config/ (Docker is not available here): the files
// parse, they refer to each other consistently (service names, ports, mounted paths), Hecate's
// config compiles, and the dashboard's queries use only metrics and labels that metrics.ts
// defines (plus Prometheus' own target labels) and cover every one of them.
import { test, expect } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { METRIC_NAMES, METRIC_LABELS } from "../../src/observability/metrics.ts";
import { resolveExporterTarget } from "../../src/observability/tracing-target.ts";
import { loadAndCompile } from "../../src/runtime/reload.ts";
import { UpstreamRegistry } from "../../src/upstream/registry.ts";

const ROOT = join(import.meta.dir, "../..");
const read = (p: string) => readFileSync(join(ROOT, p), "utf8");
const yaml = (p: string) => parse(read(p)) as any;

const compose = yaml("docker-compose.yml");
const services = compose.services as Record<string, any>;
const hecateConfig = yaml("config/compose.yaml");
const dashboard = JSON.parse(read("config/grafana/dashboards/hecate.json"));

/** host:port of a URL or "host:port" string. */
function hostPort(s: string): { host: string; port: number } {
  const m = /^(?:[a-z]+:\/\/)?([^/:]+):(\d+)/.exec(s);
  if (!m) throw new Error(`no host:port in ${s}`);
  return { host: m[1]!, port: Number(m[2]) };
}
/** "./x:/y:ro" → { source: "./x", target: "/y" } */
function bind(v: string) {
  const [source, target] = v.split(":");
  return { source: source!, target: target! };
}

test("docker-compose.yml: the seven services, images pinned, every bind-mounted file exists", () => {
  expect(Object.keys(services).sort()).toEqual(["blue", "grafana", "green", "hecate", "otel-collector", "prometheus", "tempo"]);
  expect(services.hecate.build).toBe(".");
  expect(existsSync(join(ROOT, "Dockerfile"))).toBe(true);
  for (const [name, s] of Object.entries(services)) {
    if (s.image) expect(s.image, name).toMatch(/:[0-9v][\w.-]*$/); // a version, not "latest"
    for (const d of s.depends_on ?? []) expect(services[d], `${name} depends on ${d}`).toBeDefined();
    for (const v of s.volumes ?? []) {
      const { source } = bind(v);
      if (source.startsWith("./")) expect(existsSync(join(ROOT, source)), `${name}: ${source}`).toBe(true);
    }
  }
});

test("config/compose.yaml is a valid Hecate config that the hecate service runs", async () => {
  const mount = services.hecate.volumes.map(bind).find((b: any) => b.source === "./config/compose.yaml");
  expect(mount).toBeDefined();
  expect(services.hecate.command).toContain(`-config=${mount.target}`);
  const res = await loadAndCompile(join(ROOT, "config/compose.yaml"), new UpstreamRegistry());
  if (!res.ok) throw new Error(JSON.stringify(res.errors));
  res.compiled.dispose();
  // published ports are the listeners of the config
  const published = services.hecate.ports.map((p: string) => Number(p.split(":").at(-1)));
  expect(published).toContain(hostPort(`x${hecateConfig.proxy.listen}`).port);
  expect(published).toContain(hostPort(`x${hecateConfig.admin.listen}`).port);
});

test("the upstreams are the demo services, on the ports those services listen on", () => {
  const urls = new Set<string>();
  for (const r of hecateConfig.proxy.routes) for (const u of r.upstreams) urls.add(typeof u === "string" ? u : u.url);
  expect(urls.size).toBe(2);
  for (const url of urls) {
    const { host, port } = hostPort(url);
    const s = services[host];
    expect(s, url).toBeDefined();
    expect(s.image).toStartWith("oven/bun:");
    expect(s.command).toEqual(["bun", "scripts/demo-upstreams.ts"]);
    expect(s.environment.DEMO_PORTS).toBe(String(port));
    expect(s.environment.DEMO_HOST).toBe("0.0.0.0");
    expect(s.volumes.map(bind)).toContainEqual({ source: "./scripts", target: `${s.working_dir}/scripts` });
  }
});

test("the demo upstream runs as compose runs it: on 0.0.0.0 with its own name", async () => {
  const proc = Bun.spawn([join(ROOT, "node_modules/.bin/bun"), "scripts/demo-upstreams.ts"], {
    cwd: ROOT,
    env: { ...process.env, DEMO_HOST: "0.0.0.0", DEMO_PORTS: "0", DEMO_NAMES: "green" },
    stdout: "pipe",
    stderr: "inherit",
  });
  try {
    const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`demo upstream exited: ${out}`);
      out += new TextDecoder().decode(value);
    }
    const port = hostPort(JSON.parse(out.slice(0, out.indexOf("\n"))).url).port;
    const r = await fetch(`http://127.0.0.1:${port}/hello`);
    expect(((await r.json()) as any).upstream).toBe("green");
    expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).text()).toBe("ok\n");
  } finally {
    proc.kill();
    await proc.exited;
  }
});

test("traces: Hecate → collector (OTLP/gRPC) → Tempo", () => {
  const t = resolveExporterTarget(hecateConfig.telemetry);
  expect(t).toEqual({ protocol: "grpc", url: "http://otel-collector:4317", insecure: true, headers: {} });
  const mount = services["otel-collector"].volumes.map(bind).find((b: any) => b.source === "./config/otel-collector.yaml");
  expect(services["otel-collector"].command).toContain(`--config=${mount.target}`);

  const col = yaml("config/otel-collector.yaml");
  expect(hostPort(col.receivers.otlp.protocols.grpc.endpoint).port).toBe(4317);
  expect(hostPort(col.receivers.otlp.protocols.http.endpoint).port).toBe(4318);
  const p = col.service.pipelines.traces;
  expect(p.receivers).toEqual(["otlp"]);
  for (const x of p.receivers) expect(col.receivers[x]).toBeDefined();
  for (const x of p.processors) expect(col.processors[x]).toBeDefined();
  for (const x of p.exporters) expect(col.exporters[x]).toBeDefined();
  for (const x of col.service.extensions ?? []) expect(col.extensions[x]).toBeDefined();
  const toTempo = p.exporters.map((x: string) => col.exporters[x]).find((e: any) => e.endpoint?.startsWith("tempo:"));
  expect(toTempo).toBeDefined();
  expect(toTempo.tls.insecure).toBe(true);

  const tempo = yaml("config/tempo.yaml");
  const tempoMount = services.tempo.volumes.map(bind).find((b: any) => b.source === "./config/tempo.yaml");
  expect(services.tempo.command).toContain(`-config.file=${tempoMount.target}`);
  expect(hostPort(tempo.distributor.receivers.otlp.protocols.grpc.endpoint).port).toBe(hostPort(toTempo.endpoint).port);
  for (const path of [tempo.storage.trace.wal.path, tempo.storage.trace.local.path]) expect(services.tempo.tmpfs.some((t: string) => path.startsWith(t))).toBe(true);
});

test("metrics: Prometheus scrapes Hecate's admin /metrics directly", () => {
  const prom = yaml("config/prometheus.yml");
  const mount = services.prometheus.volumes.map(bind).find((b: any) => b.source === "./config/prometheus.yml");
  expect(services.prometheus.command).toContain(`--config.file=${mount.target}`);
  const job = prom.scrape_configs.find((j: any) => j.job_name === "hecate");
  expect(job.metrics_path ?? "/metrics").toBe("/metrics");
  const targets = job.static_configs.flatMap((s: any) => s.targets);
  expect(targets).toEqual([`hecate:${hostPort(`x${hecateConfig.admin.listen}`).port}`]);
  expect(hecateConfig.admin.auth).toBeUndefined(); // the scrape config sends no credentials
});

test("Grafana: provisioned data sources and dashboard folder match the compose services and mounts", () => {
  const mounts = services.grafana.volumes.map(bind);
  const prov = mounts.find((b: any) => b.source === "./config/grafana/provisioning");
  expect(prov.target).toBe("/etc/grafana/provisioning");
  const ds = yaml("config/grafana/provisioning/datasources/datasources.yaml").datasources;
  const prom = ds.find((d: any) => d.type === "prometheus");
  const tempo = ds.find((d: any) => d.type === "tempo");
  expect(hostPort(prom.url)).toEqual({ host: "prometheus", port: 9090 });
  expect(hostPort(tempo.url)).toEqual({ host: "tempo", port: yaml("config/tempo.yaml").server.http_listen_port });
  const providers = yaml("config/grafana/provisioning/dashboards/dashboards.yaml").providers;
  const dashMount = mounts.find((b: any) => b.source === "./config/grafana/dashboards");
  expect(providers[0].options.path).toBe(dashMount.target);
  expect(statSync(join(ROOT, "config/grafana/dashboards/hecate.json")).isFile()).toBe(true);
  // every data source the dashboard names is provisioned
  const uids = new Set(ds.map((d: any) => d.uid));
  for (const p of allPanels()) {
    if (p.datasource) expect(uids.has(p.datasource.uid), p.title).toBe(true);
    for (const t of p.targets ?? []) if (t.datasource) expect(uids.has(t.datasource.uid), p.title).toBe(true);
  }
});

function allPanels(): any[] {
  const out: any[] = [];
  const walk = (ps: any[]) => {
    for (const p of ps) {
      out.push(p);
      if (p.panels) walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

const promExprs = () =>
  allPanels()
    .filter((p) => p.datasource?.type === "prometheus")
    .flatMap((p) => (p.targets ?? []).map((t: any) => ({ panel: p.title as string, expr: t.expr as string })));

/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = ["job", "instance"];
const PROCESS_METRICS = new Set(["process_cpu_seconds_total", "process_resident_memory_bytes", "nodejs_heap_size_used_bytes"]);

/** The Hecate metric a series name belongs to (histogram series carry a suffix). */
function baseMetric(series: string): { name: string; suffix: string } {
  for (const suffix of ["_bucket", "_sum", "_count"]) if (series.endsWith(suffix) && METRIC_LABELS.has(series.slice(0, -suffix.length))) return { name: series.slice(0, -suffix.length), suffix };
  return { name: series, suffix: "" };
}

test("dashboard: unique panel ids, on the grid, queries use only defined metrics and labels", () => {
  expect(dashboard.uid).toBe("hecate");
  const ids = allPanels().map((p) => p.id);
  expect(new Set(ids).size).toBe(ids.length);
  for (const p of allPanels()) {
    expect(p.gridPos.w + p.gridPos.x).toBeLessThanOrEqual(24);
    expect(typeof p.title).toBe("string");
  }
  const exprs = promExprs();
  expect(exprs.length).toBeGreaterThan(10);
  for (const { panel, expr } of exprs) {
    const where = `${panel}: ${expr}`;
    // balanced brackets
    for (const [o, c] of [["(", ")"], ["{", "}"], ["[", "]"]]) expect(expr.split(o).length, where).toBe(expr.split(c).length);
    const series = [...expr.matchAll(/\b((?:hecate|process|nodejs)_[a-z_]+)\b/g)].map((m) => m[1]!);
    expect(series.length, where).toBeGreaterThan(0);
    const labelsInExpr = new Set<string>(TARGET_LABELS);
    for (const s of series) {
      if (PROCESS_METRICS.has(s)) continue;
      const { name, suffix } = baseMetric(s);
      expect(METRIC_NAMES, where).toContain(name);
      if (suffix !== "") expect(name, where).toEndWith("_seconds"); // only the histograms have _bucket/_sum/_count
      for (const l of METRIC_LABELS.get(name)!) labelsInExpr.add(l);
      if (suffix === "_bucket") labelsInExpr.add("le");
    }
    // label matchers of each selector belong to its metric
    for (const m of expr.matchAll(/\b((?:hecate|process|nodejs)_[a-z_]+)\{([^}]*)\}/g)) {
      const { name, suffix } = baseMetric(m[1]!);
      const allowed = new Set([...(METRIC_LABELS.get(name) ?? []), ...TARGET_LABELS, ...(suffix === "_bucket" ? ["le"] : [])]);
      for (const matcher of m[2]!.matchAll(/([a-zA-Z_]+)\s*(=~|!~|!=|=)/g)) expect(allowed.has(matcher[1]!), `${where}: label ${matcher[1]}`).toBe(true);
    }
    // grouping labels exist on the metrics of the expression
    for (const m of expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g))
      for (const l of m[1]!.split(",").map((x: string) => x.trim()).filter(Boolean)) expect(labelsInExpr.has(l), `${where}: by ${l}`).toBe(true);
  }
  // the route variable queries a real metric and label
  const v = dashboard.templating.list.find((x: any) => x.name === "route");
  expect(v.definition).toBe("label_values(hecate_requests_total, route)");
});

test("dashboard: the required panels, and every Hecate metric is shown somewhere", () => {
  const exprs = promExprs().map((e) => e.expr);
  const all = exprs.join("\n");
  for (const name of METRIC_NAMES) expect(all.includes(name), name).toBe(true);
  const has = (re: RegExp) => exprs.some((e) => re.test(e));
  expect(has(/rate\(hecate_requests_total/)).toBe(true); // request rate
  expect(has(/code=~"5\.\."/)).toBe(true); // error rate
  for (const q of ["0.5", "0.95", "0.99"]) expect(has(new RegExp(`histogram_quantile\\(${q.replace(".", "\\.")}, sum by \\(route, le\\) \\(rate\\(hecate_request_duration_seconds_bucket`))).toBe(true);
  expect(has(/hecate_upstream_healthy/)).toBe(true);
  expect(has(/hecate_circuit_breaker_state/)).toBe(true);
  expect(has(/rate\(hecate_retries_total/)).toBe(true);
  expect(has(/hecate_policy_denied_total\{policy=~"rate_limit\|limits"\}/)).toBe(true);
  // breaker state is shown with the SPEC's meaning of the values
  const breaker = allPanels().find((p) => p.targets?.some((t: any) => t.expr?.includes("hecate_circuit_breaker_state")));
  const texts = breaker.fieldConfig.defaults.mappings[0].options;
  expect([texts["0"].text, texts["1"].text, texts["2"].text]).toEqual(["closed", "half-open", "open"]);
  // a traces panel reads Tempo
  expect(allPanels().some((p) => p.datasource?.type === "tempo")).toBe(true);
});

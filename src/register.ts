// Wires the optional modules into the pipeline hooks and background services. Importing this
// file once (main.ts, tests) turns them on; the core never imports them directly.
import "./upstream/health.ts";
import "./admin/status-page.ts";
import "./observability/metrics-hooks.ts";
import "./observability/tracing-service.ts";
import "./observability/lifecycle.ts";

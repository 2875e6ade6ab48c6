// Fleet health from what sidecars report (GET /api/v1/gateways/{id}), and the copyable
// snippets that call an agent through a gateway on each channel.

/** How long an instance may stay silent before it is flagged (the server's STALE_AFTER). */
export const SILENT_AFTER_MS = 60_000;

export interface InstanceReport {
  instance: string;
  bundle_revision: number | null;
  reported_at: string;
  stale: boolean;
}

export type InstanceState = "in_sync" | "behind" | "silent";
export type GatewayHealth = "healthy" | "degraded" | "down" | "unreported";

/** Why an instance is (not) stale: silent wins over behind, since a silent one may have synced. */
export function instanceState(
  instance: InstanceReport,
  currentRevision: number | null,
  now: number = Date.now(),
): InstanceState {
  const reported = Date.parse(instance.reported_at);
  if (Number.isNaN(reported) || now - reported > SILENT_AFTER_MS) return "silent";
  if (currentRevision !== null && (instance.bundle_revision ?? 0) < currentRevision) return "behind";
  return instance.stale ? "behind" : "in_sync";
}

export function gatewayHealth(
  instances: readonly InstanceReport[],
  currentRevision: number | null,
  now: number = Date.now(),
): GatewayHealth {
  if (instances.length === 0) return "unreported";
  const states = instances.map((i) => instanceState(i, currentRevision, now));
  if (states.every((s) => s === "in_sync")) return "healthy";
  if (states.every((s) => s === "silent")) return "down";
  return "degraded";
}

export const HEALTH_TEXT: Record<GatewayHealth, string> = {
  healthy: "healthy",
  degraded: "degraded",
  down: "down",
  unreported: "no sidecar has reported",
};

export const INSTANCE_TEXT: Record<InstanceState, string> = {
  in_sync: "in sync",
  behind: "behind the current revision",
  silent: "silent for over a minute",
};

/** "3 revisions behind" / "current" for a sidecar's bundle revision. */
export function revisionLag(revision: number | null, current: number | null): string {
  if (current === null) return "nothing published";
  if (revision === null) return "no bundle loaded";
  const lag = current - revision;
  if (lag <= 0) return "current";
  return lag === 1 ? "1 revision behind" : `${lag} revisions behind`;
}

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function ago(value: string | null | undefined, now: number = Date.now()): string {
  if (!value) return "never";
  const then = Date.parse(value);
  if (Number.isNaN(then)) return value;
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86_400)} d ago`;
}

export type Channel = "api" | "cli" | "mcp";
export type TargetKind = "agent" | "pipeline";

/** POSIX shell single-quoting: safe for any text, including quotes. */
export function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'"'"'`)}'`;
}

function hostOf(url: string): string {
  try {
    return new URL(url).hostname || "gateway";
  } catch {
    return "gateway";
  }
}

/** What the control plane says a deployment is reachable at (Deployment.endpoints). */
export interface Endpoints {
  api: string;
  cli?: string | null;
  mcp: string;
}

/** Where `name` is reachable through the gateway at `gatewayUrl` (the server's own view wins). */
export function endpointsFor(gatewayUrl: string, kind: TargetKind, name: string): Endpoints {
  const base = gatewayUrl.replace(/\/+$/, "");
  const path =
    kind === "agent" ? `/v1/agents/${encodeURIComponent(name)}/invoke` : `/v1/pipelines/${encodeURIComponent(name)}/run`;
  return {
    api: base + path,
    cli: kind === "agent" ? `kaizen-studio call ${shellQuote(name)} --gateway ${shellQuote(base)} --input 'Hello'` : null,
    mcp: `${base}/mcp`,
  };
}

/**
 * How to call a workload on each channel. The API key stays a placeholder
 * ($KAIZEN_API_KEY): a secret is never put into a snippet.
 */
export function snippets(endpoints: Endpoints): Record<Channel, string> {
  const api = [
    `curl -sS -X POST ${shellQuote(endpoints.api)} \\`,
    `  -H "Authorization: Bearer $KAIZEN_API_KEY" \\`,
    `  -H 'Content-Type: application/json' \\`,
    `  -d '{"input": "Hello"}'`,
  ].join("\n");
  const cli = endpoints.cli
    ? `export KAIZEN_API_KEY=ks_…\n${endpoints.cli}`
    : `# the CLI calls agents; run a pipeline over the HTTP API or MCP\n${api}`;
  const mcp = JSON.stringify(
    {
      mcpServers: {
        [`kaizen-${hostOf(endpoints.mcp)}`]: {
          type: "http",
          url: endpoints.mcp,
          headers: { Authorization: "Bearer ${KAIZEN_API_KEY}" },
        },
      },
    },
    null,
    2,
  );
  return { api, cli, mcp };
}

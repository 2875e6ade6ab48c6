// The Connectors page's logic: the create body from the form, and what a test result says.
export const CONNECTOR_TYPES = ["postgresql", "mysql"] as const;
export const TLS_MODES = ["verify-full", "require", "disable"] as const;
export const DEFAULT_PORTS: Record<string, number> = { postgresql: 5432, mysql: 3306 };

export interface ConnectorForm {
  name: string;
  type: string;
  host: string;
  port: string;
  database: string;
  username: string;
  password: string;
  tls: string;
  readOnly: boolean;
  maxRows: string;
}

export const EMPTY_FORM: ConnectorForm = {
  name: "",
  type: "postgresql",
  host: "",
  port: "",
  database: "",
  username: "",
  password: "",
  tls: "verify-full",
  readOnly: true,
  maxRows: "1000",
};

/** What the form checks before sending (the API checks everything again). */
export function formProblems(form: ConnectorForm): Record<string, string> {
  const problems: Record<string, string> = {};
  if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(form.name)) {
    problems.name = "lowercase letters, digits, '_' or '-', at most 63";
  }
  if (!form.host.trim()) problems["settings.host"] = "required";
  if (form.port && !/^\d{1,5}$/.test(form.port)) problems["settings.port"] = "a port number";
  if (!/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/.test(form.database)) problems["settings.database"] = "an identifier";
  if (!form.username.trim()) problems["settings.username"] = "required";
  if (!/^\d+$/.test(form.maxRows)) problems["settings.max_rows"] = "a number of rows";
  return problems;
}

export function createBody(form: ConnectorForm): Record<string, unknown> {
  const settings: Record<string, unknown> = {
    host: form.host.trim(),
    database: form.database,
    username: form.username.trim(),
    tls: form.tls,
    read_only: form.readOnly,
    max_rows: Number(form.maxRows),
  };
  if (form.port) settings.port = Number(form.port);
  const body: Record<string, unknown> = { name: form.name, type: form.type, settings };
  if (form.password) body.password = form.password; // write-only: never shown again
  return body;
}

export interface TestResult {
  ok: boolean;
  code?: string | null;
  message: string;
  server_version?: string | null;
}

const WHAT: Record<string, string> = {
  auth_failed: "The database refused the user or password.",
  unreachable: "Nothing answered at that host and port.",
  tls: "TLS failed (not offered, or the certificate does not fit the host).",
  refused: "The outbound guard will not contact this host (KAIZEN_OUTBOUND_ALLOW_CIDRS admits private networks).",
  database: "The database does not exist or may not be used.",
  credential_missing: "No password is stored: set one to connect.",
};

/** One line for the person who pressed "Test". */
export function describeTest(result: TestResult): string {
  if (result.ok) return `Connected and authenticated${result.server_version ? ` — ${result.server_version}` : ""}.`;
  const what = (result.code && WHAT[result.code]) || "The connection failed.";
  return `${what} ${result.message}`;
}

export function target(settings: Record<string, unknown>): string {
  return `${String(settings.host)}:${String(settings.port)}/${String(settings.database)}`;
}

/** The decision-log filter of one connector's calls. */
export function decisionsPath(name: string, limit = 10): string {
  return `/api/v1/decisions?resource=${encodeURIComponent(`connector:${name}`)}&limit=${limit}`;
}

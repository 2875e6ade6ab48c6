// The Connectors page's logic: the create body from the form, and what a test result says.
export const CONNECTOR_TYPES = ["postgresql", "mysql", "s3", "azure_blob"] as const;
export const TYPE_LABELS: Record<string, string> = {
  postgresql: "PostgreSQL",
  mysql: "MySQL / MariaDB",
  s3: "S3 (or an S3-compatible service)",
  azure_blob: "Azure Blob Storage",
};
/** Object stores serve objects.list / get / put; the others, sql.query. */
export function isObjectStore(type: string): boolean {
  return type === "s3" || type === "azure_blob";
}
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
  // object stores
  endpointUrl: string; // s3: endpoint_url; azure_blob: account_url (both optional)
  region: string;
  accessKeyId: string;
  accountName: string;
  buckets: string; // comma-separated
  maxBytes: string;
  maxObjects: string;
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
  endpointUrl: "",
  region: "us-east-1",
  accessKeyId: "",
  accountName: "",
  buckets: "",
  maxBytes: "1000000",
  maxObjects: "1000",
};

function bucketList(form: ConnectorForm): string[] {
  return form.buckets.split(",").map((b) => b.trim()).filter(Boolean);
}

function endpointField(type: string): string {
  return type === "s3" ? "settings.endpoint_url" : "settings.account_url";
}

/** What the form checks before sending (the API checks everything again). */
export function formProblems(form: ConnectorForm): Record<string, string> {
  const problems: Record<string, string> = {};
  if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(form.name)) {
    problems.name = "lowercase letters, digits, '_' or '-', at most 63";
  }
  if (isObjectStore(form.type)) {
    if (form.type === "s3" && !/^[A-Za-z0-9]{1,128}$/.test(form.accessKeyId.trim())) {
      problems["settings.access_key_id"] = "letters and digits";
    }
    if (form.type === "azure_blob" && !/^[a-z0-9]{3,24}$/.test(form.accountName.trim())) {
      problems["settings.account_name"] = "3-24 lowercase letters or digits";
    }
    if (form.endpointUrl.trim() && !/^https?:\/\/[^\s]+$/.test(form.endpointUrl.trim())) {
      problems[endpointField(form.type)] = "an http(s) URL";
    }
    if (bucketList(form).some((b) => !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(b))) {
      problems["settings.buckets"] = "bucket names: 3-63 of a-z, 0-9, '.', '-'";
    }
    if (!/^\d+$/.test(form.maxBytes)) problems["settings.max_bytes"] = "a number of bytes";
    if (!/^\d+$/.test(form.maxObjects)) problems["settings.max_objects"] = "a number of objects";
    return problems;
  }
  if (!form.host.trim()) problems["settings.host"] = "required";
  if (form.port && !/^\d{1,5}$/.test(form.port)) problems["settings.port"] = "a port number";
  if (!/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/.test(form.database)) problems["settings.database"] = "an identifier";
  if (!form.username.trim()) problems["settings.username"] = "required";
  if (!/^\d+$/.test(form.maxRows)) problems["settings.max_rows"] = "a number of rows";
  return problems;
}

function objectSettings(form: ConnectorForm): Record<string, unknown> {
  const settings: Record<string, unknown> = {
    buckets: bucketList(form),
    read_only: form.readOnly,
    max_bytes: Number(form.maxBytes),
    max_objects: Number(form.maxObjects),
  };
  const endpoint = form.endpointUrl.trim();
  if (form.type === "s3") {
    settings.access_key_id = form.accessKeyId.trim();
    settings.region = form.region.trim() || "us-east-1";
    if (endpoint) settings.endpoint_url = endpoint;
  } else {
    settings.account_name = form.accountName.trim();
    if (endpoint) settings.account_url = endpoint;
  }
  return settings;
}

export function createBody(form: ConnectorForm): Record<string, unknown> {
  if (isObjectStore(form.type)) {
    const body: Record<string, unknown> = { name: form.name, type: form.type, settings: objectSettings(form) };
    if (form.password) body.password = form.password; // the secret key: write-only
    return body;
  }
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
const WHAT_STORE: Record<string, string> = {
  ...WHAT,
  auth_failed: "The store refused the key (wrong secret, or no access).",
  unreachable: "Nothing answered at that endpoint.",
  refused: "The outbound guard will not contact this endpoint (KAIZEN_OUTBOUND_ALLOW_CIDRS admits private networks).",
  no_bucket: "A bucket (container) named in the settings does not exist.",
  credential_missing: "No key is stored: set one to connect.",
};

/** One line for the person who pressed "Test". */
export function describeTest(result: TestResult, type = "postgresql"): string {
  if (result.ok) return `Connected and authenticated${result.server_version ? ` — ${result.server_version}` : ""}.`;
  const table = isObjectStore(type) ? WHAT_STORE : WHAT;
  const what = (result.code && table[result.code]) || "The connection failed.";
  return `${what} ${result.message}`;
}

export function target(settings: Record<string, unknown>, type = "postgresql"): string {
  if (type === "s3") {
    const where = settings.endpoint_url ? String(settings.endpoint_url) : `AWS ${String(settings.region)}`;
    return `${where}${bucketsOf(settings)}`;
  }
  if (type === "azure_blob") {
    const where = settings.account_url ? String(settings.account_url) : `${String(settings.account_name)}.blob.core.windows.net`;
    return `${where}${bucketsOf(settings)}`;
  }
  return `${String(settings.host)}:${String(settings.port)}/${String(settings.database)}`;
}

function bucketsOf(settings: Record<string, unknown>): string {
  const buckets = Array.isArray(settings.buckets) ? (settings.buckets as string[]) : [];
  return buckets.length ? ` [${buckets.join(", ")}]` : "";
}

/** The decision-log filter of one connector's calls. */
export function decisionsPath(name: string, limit = 10): string {
  return `/api/v1/decisions?resource=${encodeURIComponent(`connector:${name}`)}&limit=${limit}`;
}

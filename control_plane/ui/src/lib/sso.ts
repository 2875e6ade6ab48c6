// SSO provider form logic: presets, email domains, the group mapping editor's rows, and
// the request bodies (the client secret is write-only: blank means "keep the stored one").
import { ROLES, type GroupMapping, type Role, type SsoProvider, type SsoProviderCreate, type SsoProviderUpdate } from "../api/types";

export const PROVIDER_TYPES = ["oidc", "saml"] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];
export const PRESETS = ["generic", "azure_ad", "okta", "google"] as const;
export type Preset = (typeof PRESETS)[number];
/** Roles a group can map to: any but owner (owners are made by hand, never by an IdP). */
export type MappedRole = Exclude<Role, "owner">;
export const MAPPED_ROLES: readonly MappedRole[] = ROLES.filter((r): r is MappedRole => r !== "owner");

export const PRESET_HINTS: Record<Preset, string> = {
  generic: "Any OpenID Connect provider: give its issuer (or discovery URL).",
  azure_ad: "Microsoft Entra ID: issuer https://login.microsoftonline.com/<tenant id>/v2.0",
  okta: "Okta: issuer https://<your org>.okta.com (or a custom authorization server)",
  google: "Google Workspace: the issuer is filled in; restrict it with email domains.",
};

export interface MappingRow {
  group: string;
  role: MappedRole | "";
  teams: string;
}

export interface ProviderForm {
  type: ProviderType;
  name: string;
  preset: Preset;
  enabled: boolean;
  domains: string;
  issuer: string;
  discoveryUrl: string;
  clientId: string;
  clientSecret: string;
  samlMetadata: string;
  groupsClaim: string;
  mapping: MappingRow[];
}

export function emptyForm(type: ProviderType = "oidc"): ProviderForm {
  return {
    type,
    name: "",
    preset: "generic",
    enabled: true,
    domains: "",
    issuer: "",
    discoveryUrl: "",
    clientId: "",
    clientSecret: "",
    samlMetadata: "",
    groupsClaim: "groups",
    mapping: [],
  };
}

export function formOf(provider: SsoProvider): ProviderForm {
  return {
    type: provider.type,
    name: provider.name,
    preset: provider.preset,
    enabled: provider.enabled,
    domains: provider.email_domains.join(", "),
    issuer: provider.issuer ?? "",
    discoveryUrl: provider.discovery_url ?? "",
    clientId: provider.client_id ?? "",
    clientSecret: "",
    samlMetadata: "",
    groupsClaim: provider.groups_claim,
    mapping: mappingRows(provider.group_mapping),
  };
}

/** "a.com, b.com\nc.com" → ["a.com", "b.com", "c.com"] (lower case, no repeats). */
export function parseDomains(text: string): string[] {
  const seen = new Set<string>();
  for (const part of text.split(/[\s,;]+/)) {
    const domain = part.trim().toLowerCase().replace(/^@/, "");
    if (domain) seen.add(domain);
  }
  return [...seen];
}

export function mappingRows(mapping: readonly Record<string, unknown>[]): MappingRow[] {
  return mapping.map((m) => ({
    group: typeof m.group === "string" ? m.group : "",
    role: (typeof m.role === "string" ? m.role : "") as MappedRole | "",
    teams: Array.isArray(m.teams) ? m.teams.filter((t) => typeof t === "string").join(", ") : "",
  }));
}

/** Rows as the API takes them; fully blank rows (a freshly added one) are left out. */
export function mappingBody(rows: readonly MappingRow[]): GroupMapping[] {
  return rows
    .filter((r) => r.group.trim() || r.role || r.teams.trim())
    .map((r) => ({
      group: r.group.trim(),
      role: r.role || null,
      teams: r.teams.split(",").map((t) => t.trim()).filter(Boolean),
    }));
}

const orNull = (value: string): string | null => (value.trim() ? value.trim() : null);

export function createBody(form: ProviderForm): SsoProviderCreate {
  const body: SsoProviderCreate = {
    type: form.type,
    name: form.name.trim(),
    preset: form.type === "oidc" ? form.preset : "generic",
    enabled: form.enabled,
    email_domains: parseDomains(form.domains),
    groups_claim: form.groupsClaim.trim() || "groups",
    group_mapping: mappingBody(form.mapping),
  };
  if (form.type === "oidc") {
    body.issuer = orNull(form.issuer);
    body.discovery_url = orNull(form.discoveryUrl);
    body.client_id = orNull(form.clientId);
    if (form.clientSecret) body.client_secret = form.clientSecret;
  } else if (form.samlMetadata.trim()) {
    body.saml_idp_metadata = form.samlMetadata;
  }
  return body;
}

/** A PATCH with what the form holds; a blank secret or metadata keeps what is stored. */
export function updateBody(form: ProviderForm): SsoProviderUpdate {
  const body: SsoProviderUpdate = {
    name: form.name.trim(),
    enabled: form.enabled,
    email_domains: parseDomains(form.domains),
    groups_claim: form.groupsClaim.trim() || "groups",
    group_mapping: mappingBody(form.mapping),
  };
  if (form.type === "oidc") {
    if (form.issuer.trim()) body.issuer = form.issuer.trim();
    if (form.discoveryUrl.trim()) body.discovery_url = form.discoveryUrl.trim();
    if (form.clientId.trim()) body.client_id = form.clientId.trim();
    if (form.clientSecret) body.client_secret = form.clientSecret;
  } else if (form.samlMetadata.trim()) {
    body.saml_idp_metadata = form.samlMetadata;
  }
  return body;
}

/** The API's field path of a mapping row's field ("group_mapping.2.group") → row index and key. */
export function mappingFieldError(fields: Record<string, string>, index: number, key: "group" | "role" | "teams"): string | undefined {
  const prefix = `group_mapping.${index}`;
  return fields[`${prefix}.${key}`] ?? Object.entries(fields).find(([f]) => f.startsWith(`${prefix}.${key}.`))?.[1];
}

/** Where our SP publishes its SAML metadata (the entity id is that URL). */
export function spMetadataUrl(provider: SsoProvider): string | null {
  return provider.type === "saml" ? provider.sp_entity_id ?? null : null;
}

/** The first error of a field or of anything under it ("email_domains" or "email_domains.1"). */
export function errorUnder(fields: Record<string, string>, field: string): string | undefined {
  if (fields[field]) return fields[field];
  const hit = Object.entries(fields).find(([f]) => f.startsWith(`${field}.`));
  return hit ? `${hit[0]}: ${hit[1]}` : undefined;
}

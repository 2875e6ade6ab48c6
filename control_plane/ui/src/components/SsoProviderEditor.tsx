// The identity provider form: OIDC (presets, client secret write-only) or SAML (IdP
// metadata pasted or imported from a file), email domains, and the group mapping rows.
import { useId, useState, type FormEvent } from "react";
import { api, ApiError } from "../api/client";
import type { SsoProvider } from "../api/types";
import {
  MAPPED_ROLES,
  PRESETS,
  PRESET_HINTS,
  PROVIDER_TYPES,
  createBody,
  emptyForm,
  errorUnder,
  formOf,
  mappingFieldError,
  updateBody,
  type MappedRole,
  type MappingRow,
  type Preset,
  type ProviderForm,
  type ProviderType,
} from "../lib/sso";
import { ErrorMessage, Field, Select } from "./ui";

function MappingEditor({
  rows,
  onChange,
  fields,
}: {
  rows: MappingRow[];
  onChange(rows: MappingRow[]): void;
  fields: Record<string, string>;
}) {
  const set = (i: number, patch: Partial<MappingRow>) => onChange(rows.map((r, j) => (j === i ? { ...r, ...patch } : r)));
  return (
    <fieldset className="mapping">
      <legend>Group mapping</legend>
      <p className="hint">
        IdP groups grant an organisation role and team memberships at every login. Users in no mapped group get the
        default role.
      </p>
      {rows.length === 0 && <p className="hint">No groups mapped.</p>}
      {rows.map((row, i) => {
        const groupError = mappingFieldError(fields, i, "group");
        const roleError = mappingFieldError(fields, i, "role");
        const teamsError = mappingFieldError(fields, i, "teams");
        return (
          <div className="mapping-row" key={i} role="group" aria-label={`Mapping ${i + 1}`}>
            <Field label={`Group ${i + 1}`} value={row.group} error={groupError} onChange={(e) => set(i, { group: e.target.value })} />
            <Select label={`Role for group ${i + 1}`} value={row.role} error={roleError}
              options={["", ...MAPPED_ROLES]} labels={{ "": "no role (teams only)" }}
              onChange={(v) => set(i, { role: v as MappedRole | "" })} />
            <Field label={`Teams for group ${i + 1}`} value={row.teams} error={teamsError} hint="comma-separated"
              onChange={(e) => set(i, { teams: e.target.value })} />
            <button type="button" className="button-secondary" onClick={() => onChange(rows.filter((_, j) => j !== i))}
              aria-label={`Remove mapping ${i + 1}`}>
              Remove
            </button>
          </div>
        );
      })}
      <button type="button" className="button-secondary" onClick={() => onChange([...rows, { group: "", role: "", teams: "" }])}>
        Add a group
      </button>
    </fieldset>
  );
}

export function SsoProviderEditor({
  provider,
  onSaved,
  onCancel,
}: {
  provider: SsoProvider | null;
  onSaved(provider: SsoProvider): void;
  onCancel(): void;
}) {
  const [form, setForm] = useState<ProviderForm>(() => (provider ? formOf(provider) : emptyForm()));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [fileError, setFileError] = useState<string | null>(null);
  const metadataId = useId();
  const fields = error instanceof ApiError ? error.fieldErrors : {};
  const set = (patch: Partial<ProviderForm>) => setForm((f) => ({ ...f, ...patch }));
  const editing = provider !== null;

  const save = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const saved = editing
        ? await api.patch<SsoProvider>(`/api/v1/sso/providers/${provider.id}`, updateBody(form))
        : await api.post<SsoProvider>("/api/v1/sso/providers", createBody(form));
      onSaved(saved);
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  const importMetadata = async (file: File | undefined) => {
    setFileError(null);
    if (!file) return;
    if (file.size > 200_000) {
      setFileError("the metadata file is larger than 200 kB");
      return;
    }
    const text = await file.text();
    if (!/EntityDescriptor/.test(text)) setFileError("this file does not look like SAML metadata (no EntityDescriptor)");
    set({ samlMetadata: text });
  };

  return (
    <form className="card" onSubmit={save} noValidate aria-labelledby="provider-form-heading">
      <h2 id="provider-form-heading">{editing ? `Edit ${provider.name}` : "Add an identity provider"}</h2>
      <ErrorMessage error={error} />
      <div className="form-row">
        <Select label="Protocol" value={form.type} options={PROVIDER_TYPES} error={fields.type} disabled={editing}
          onChange={(v) => set({ type: v as ProviderType })} />
        <Field label="Name" value={form.name} error={fields.name} onChange={(e) => set({ name: e.target.value })} required
          hint="Letters, digits, . _ - (e.g. okta); shown on the login page" />
        {form.type === "oidc" && (
          <Select label="Preset" value={form.preset} options={PRESETS} error={fields.preset} disabled={editing}
            onChange={(v) => set({ preset: v as Preset })} />
        )}
      </div>
      {form.type === "oidc" && <p className="hint">{PRESET_HINTS[form.preset]}</p>}
      <Field label="Email domains" value={form.domains} error={errorUnder(fields, "email_domains")}
        onChange={(e) => set({ domains: e.target.value })}
        hint="Comma-separated; people entering such an address on the login page are sent to this provider" />
      {form.type === "oidc" ? (
        <div className="form-row">
          <Field label="Issuer" value={form.issuer} error={fields.issuer} onChange={(e) => set({ issuer: e.target.value })}
            placeholder="https://idp.example.com" />
          <Field label="Discovery URL (optional)" value={form.discoveryUrl} error={fields.discovery_url}
            onChange={(e) => set({ discoveryUrl: e.target.value })} hint="Default: the issuer's .well-known/openid-configuration" />
          <Field label="Client ID" value={form.clientId} error={fields.client_id} onChange={(e) => set({ clientId: e.target.value })} />
          <Field label="Client secret" type="password" autoComplete="off" value={form.clientSecret} error={fields.client_secret}
            onChange={(e) => set({ clientSecret: e.target.value })}
            hint={provider?.has_client_secret ? "A secret is stored (never shown); leave empty to keep it" : "Write-only: it is never shown again"} />
        </div>
      ) : (
        <div className="field">
          <label htmlFor={metadataId}>IdP metadata (XML)</label>
          <textarea id={metadataId} rows={6} value={form.samlMetadata} spellCheck={false}
            aria-invalid={fields.saml_idp_metadata ? true : undefined}
            placeholder={editing ? "Leave empty to keep the imported metadata" : "<md:EntityDescriptor …>"}
            onChange={(e) => set({ samlMetadata: e.target.value })} />
          {fields.saml_idp_metadata && <small className="field-error" role="alert">{fields.saml_idp_metadata}</small>}
          <label htmlFor={`${metadataId}-file`}>…or import the metadata file</label>
          <input id={`${metadataId}-file`} type="file" accept=".xml,application/xml,text/xml,application/samlmetadata+xml"
            onChange={(e) => void importMetadata(e.target.files?.[0])} />
          {fileError && <small className="field-error" role="alert">{fileError}</small>}
          {provider?.saml_idp_entity_id && (
            <small className="hint">Imported: {provider.saml_idp_entity_id} · {provider.saml_idp_sso_url}</small>
          )}
        </div>
      )}
      <div className="form-row">
        <Field label="Groups claim" value={form.groupsClaim} error={fields.groups_claim}
          onChange={(e) => set({ groupsClaim: e.target.value })} hint="ID-token claim or SAML attribute holding groups" />
      </div>
      <p className="hint">
        No default role: a new user is provisioned only with a role one of their groups maps to,
        and only for email domains this organisation has verified.
      </p>
      <MappingEditor rows={form.mapping} onChange={(mapping) => set({ mapping })} fields={fields} />
      <div className="field checkbox">
        <input id={`${metadataId}-enabled`} type="checkbox" checked={form.enabled} onChange={(e) => set({ enabled: e.target.checked })} />
        <label htmlFor={`${metadataId}-enabled`}>Enabled</label>
      </div>
      <div className="actions">
        <button type="button" className="button-secondary" onClick={onCancel}>Cancel</button>
        <button type="submit" disabled={busy}>{busy ? "Saving…" : editing ? "Save provider" : "Add provider"}</button>
      </div>
    </form>
  );
}

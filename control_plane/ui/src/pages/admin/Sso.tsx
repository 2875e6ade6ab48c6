import { useEffect, useState } from "react";
import { useNavigate } from "react-router";
import { api } from "../../api/client";
import { ROLES, type Member, type MfaPolicy, type MfaStatus, type SsoProvider, type SsoSettings } from "../../api/types";
import { useAuth } from "../../auth/AuthContext";
import { DomainsPanel } from "../../components/DomainsPanel";
import { SsoProviderEditor } from "../../components/SsoProviderEditor";
import { ConfirmDialog, CopyButton, Empty, ErrorMessage, Loading, formatTime } from "../../components/ui";
import { roleLabel } from "../../lib/roles";
import { spMetadataUrl } from "../../lib/sso";
import { toggle } from "../../lib/webhooks";
import { usePaged, useResource } from "../../lib/useApi";

function CopyLine({ label, value }: { label: string; value: string }) {
  return (
    <>
      <dt>{label}</dt>
      <dd className="copy-line">
        <code>{value}</code> <CopyButton text={value} label={`Copy ${label.toLowerCase()}`} />
      </dd>
    </>
  );
}

function ProviderCard({ provider, onEdit, onDelete }: { provider: SsoProvider; onEdit(): void; onDelete(): void }) {
  const { can } = useAuth();
  const metadata = spMetadataUrl(provider);
  return (
    <article className="card" aria-labelledby={`provider-${provider.id}`}>
      <div className="page-header">
        <h3 id={`provider-${provider.id}`}>
          {provider.name} <span className="badge">{provider.type.toUpperCase()}</span>
          {provider.type === "oidc" && provider.preset !== "generic" && <span className="badge">{provider.preset.replace("_", " ")}</span>}
          {!provider.enabled && <span className="badge badge-deleted">disabled</span>}
        </h3>
        <div className="toolbar">
          {can("sso:update") && <button type="button" className="button-secondary" onClick={onEdit}>Edit</button>}
          {can("sso:delete") && <button type="button" className="button-secondary" onClick={onDelete}>Delete…</button>}
        </div>
      </div>
      <dl className="facts">
        <dt>Email domains</dt>
        <dd>{provider.email_domains.length ? provider.email_domains.join(", ") : <span className="hint">none (no login-page routing)</span>}</dd>
        {provider.type === "oidc" ? (
          <>
            <dt>Issuer</dt>
            <dd>{provider.issuer ?? "—"}</dd>
            <dt>Client</dt>
            <dd>
              {provider.client_id ?? "—"} · secret {provider.has_client_secret ? "stored" : "none"}
            </dd>
            {provider.redirect_uri && <CopyLine label="Redirect URI" value={provider.redirect_uri} />}
          </>
        ) : (
          <>
            <dt>IdP</dt>
            <dd>{provider.saml_idp_entity_id ?? <span className="text-error">no metadata imported</span>}</dd>
            {metadata && <CopyLine label="SP metadata URL" value={metadata} />}
            {provider.sp_acs_url && <CopyLine label="ACS URL" value={provider.sp_acs_url} />}
          </>
        )}
        <CopyLine label="Login URL" value={provider.login_url} />
        <dt>Groups</dt>
        <dd>
          claim <code>{provider.groups_claim}</code>; {provider.group_mapping.length} mapped; no default role
          (unmapped users are refused)
        </dd>
        <dt>Updated</dt>
        <dd>{formatTime(provider.updated_at)}</dd>
      </dl>
    </article>
  );
}

function EnforceSso() {
  const { can } = useAuth();
  const settings = useResource<SsoSettings>("/api/v1/sso/settings");
  const members = usePaged<Member>("/api/v1/users");
  const [required, setRequired] = useState(false);
  const [breakGlass, setBreakGlass] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    if (!settings.data) return;
    setRequired(settings.data.sso_required);
    setBreakGlass(settings.data.break_glass_user_ids);
  }, [settings.data]);
  const owners = (members.data ?? []).filter((m) => m.role === "owner");
  const editable = can("sso:update");

  const save = async () => {
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      await api.put<SsoSettings>("/api/v1/sso/settings", { sso_required: required, break_glass_user_ids: breakGlass });
      setSaved(true);
      settings.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="card" aria-labelledby="enforce-heading">
      <h2 id="enforce-heading">Require single sign-on</h2>
      <ErrorMessage error={settings.error ?? members.error ?? error} />
      {settings.loading && !settings.data && <Loading what="Loading SSO settings" />}
      {settings.data && (
        <>
          <div className="field checkbox">
            <input id="sso-required" type="checkbox" checked={required} disabled={!editable}
              onChange={(e) => setRequired(e.target.checked)} />
            <label htmlFor="sso-required">Members must sign in through an identity provider (password login refused)</label>
          </div>
          <fieldset className="checkbox-group">
            <legend>Break-glass owners (may still use their password)</legend>
            {owners.length === 0 && <p className="hint">{members.loading ? "Loading owners…" : "No owners found."}</p>}
            {owners.map((o) => (
              <div className="field checkbox" key={o.id}>
                <input id={`glass-${o.id}`} type="checkbox" disabled={!editable} checked={breakGlass.includes(o.id)}
                  onChange={(e) => setBreakGlass(toggle(breakGlass, o.id, e.target.checked))} />
                <label htmlFor={`glass-${o.id}`}>{o.email}</label>
              </div>
            ))}
          </fieldset>
          {required && breakGlass.length === 0 && (
            <p className="text-error">With no break-glass owner, an IdP outage locks everyone out.</p>
          )}
          {saved && <div className="alert alert-ok" role="status">SSO settings saved.</div>}
          {editable && <button type="button" onClick={save} disabled={busy}>{busy ? "Saving…" : "Save SSO settings"}</button>}
        </>
      )}
    </section>
  );
}

function RequireMfa() {
  const { can, me, logout } = useAuth();
  const navigate = useNavigate();
  const policy = useResource<MfaPolicy>("/api/v1/organization/mfa");
  const mine = useResource<MfaStatus>(me?.kind === "user" ? "/api/v1/me/mfa" : null);
  const [roles, setRoles] = useState<string[]>([]);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    if (policy.data) setRoles(policy.data.required_roles);
  }, [policy.data]);
  const editable = can("organization:configure_mfa");
  const locksMeOut = !!me && roles.includes(me.role) && mine.data?.totp_enabled === false;

  const save = async () => {
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      await api.put<MfaPolicy>("/api/v1/organization/mfa", { required_roles: roles });
      setConfirming(false);
      if (locksMeOut) {
        await logout();
        navigate("/login");
        return;
      }
      setSaved(true);
      policy.reload();
    } catch (e) {
      setError(e as Error);
      setConfirming(false);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="card" aria-labelledby="mfa-rule-heading">
      <h2 id="mfa-rule-heading">Require two-factor authentication</h2>
      <ErrorMessage error={policy.error ?? error} />
      {policy.loading && !policy.data && <Loading what="Loading the MFA rule" />}
      {policy.data && (
        <>
          <fieldset className="checkbox-group">
            <legend>Roles that must use an authenticator app</legend>
            {ROLES.map((r) => (
              <div className="field checkbox" key={r}>
                <input id={`mfa-${r}`} type="checkbox" disabled={!editable} checked={roles.includes(r)}
                  onChange={(e) => setRoles(toggle(roles, r, e.target.checked))} />
                <label htmlFor={`mfa-${r}`}>{roleLabel(r)}</label>
              </div>
            ))}
          </fieldset>
          <p className="hint">
            Members of these roles without a second factor are signed out when you save, and set one up at their next
            login. Last changed {formatTime(policy.data.updated_at)}.
          </p>
          {saved && <div className="alert alert-ok" role="status">MFA rule saved.</div>}
          {editable && <button type="button" onClick={() => setConfirming(true)}>Save MFA rule…</button>}
        </>
      )}
      <ConfirmDialog open={confirming} title="Save the MFA rule?" confirmLabel="Save" busy={busy}
        onConfirm={save} onCancel={() => setConfirming(false)} danger={locksMeOut}>
        <p>Members of the chosen roles who have no authenticator app are signed out now.</p>
        {locksMeOut && (
          <p className="text-error">
            That includes you: you have no authenticator app yet. You will be asked to set one up when you log in again.
          </p>
        )}
      </ConfirmDialog>
    </section>
  );
}

export function SsoPage() {
  const { can } = useAuth();
  const providers = usePaged<SsoProvider>("/api/v1/sso/providers");
  const [editing, setEditing] = useState<SsoProvider | "new" | null>(null);
  const [deleting, setDeleting] = useState<SsoProvider | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  return (
    <section>
      <h1>Sign-in and SSO</h1>
      <p className="hint">Identity providers (OpenID Connect or SAML 2.0), who must use them, and who must use MFA.</p>
      <DomainsPanel />
      <div className="page-header">
        <h2>Identity providers</h2>
        {can("sso:create") && editing === null && (
          <button type="button" onClick={() => { setNotice(null); setEditing("new"); }}>Add identity provider</button>
        )}
      </div>
      {notice && <div className="alert alert-ok" role="status">{notice}</div>}
      <ErrorMessage error={providers.error ?? error} />
      {editing !== null && (
        <SsoProviderEditor
          key={editing === "new" ? "new" : editing.id}
          provider={editing === "new" ? null : editing}
          onCancel={() => setEditing(null)}
          onSaved={(saved) => {
            setNotice(`${saved.name} saved.${saved.type === "saml" ? " Give the IdP the SP metadata URL below." : saved.redirect_uri ? " Register the redirect URI below at the IdP." : ""}`);
            setEditing(null);
            providers.reload();
          }}
        />
      )}
      {providers.loading && !providers.data && <Loading what="Loading identity providers" />}
      {providers.data && providers.data.length === 0 && editing === null && (
        <Empty>No identity providers yet. Members sign in with their passwords.</Empty>
      )}
      {providers.data?.map((p) => (
        <ProviderCard key={p.id} provider={p} onEdit={() => { setNotice(null); setEditing(p); }} onDelete={() => setDeleting(p)} />
      ))}
      {providers.more && <button type="button" className="button-secondary" onClick={providers.loadMore}>Load more</button>}
      <EnforceSso />
      <RequireMfa />
      <ConfirmDialog open={deleting !== null} title={`Delete ${deleting?.name}?`} confirmLabel="Delete" danger
        onConfirm={async () => {
          const provider = deleting;
          setDeleting(null);
          if (!provider) return;
          setError(null);
          try {
            await api.delete(`/api/v1/sso/providers/${provider.id}`);
            providers.reload();
          } catch (e) {
            setError(e as Error);
          }
        }}
        onCancel={() => setDeleting(null)}>
        <p>Its users can no longer sign in through it; their accounts stay.</p>
      </ConfirmDialog>
    </section>
  );
}

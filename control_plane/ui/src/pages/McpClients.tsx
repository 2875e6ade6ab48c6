import { useState } from "react";
import { api } from "../api/client";
import type { OAuthClient, OAuthClients, OAuthGrant, OAuthSettings } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { ConfirmDialog, Empty, ErrorMessage, Loading, formatTime } from "../components/ui";
import { useResource } from "../lib/useApi";

/** The MCP clients a person authorized (revoke), and for administrators every client of the
 * organisation (block), every live grant and the registration switches. */
export function McpClientsPage() {
  const { can } = useAuth();
  return (
    <section>
      <h1>MCP clients</h1>
      <p className="hint">
        IDEs, desktop assistants and agent frameworks you let connect to a gateway's MCP server by OAuth.
        Revoking ends the client's refresh token at once and its access token at the gateways with the next bundle.
      </p>
      <MyGrants />
      {can("oauth_clients:read") && <OrganizationClients canUpdate={can("oauth_clients:update")} />}
    </section>
  );
}

function GrantRows({ grants, onRevoke, showUser }: { grants: OAuthGrant[]; onRevoke?(g: OAuthGrant): void; showUser?: boolean }) {
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">Client</th>
          {showUser && <th scope="col">Person</th>}
          <th scope="col">Gateway</th>
          <th scope="col">Scopes</th>
          <th scope="col">Authorized</th>
          <th scope="col">Last used</th>
          {onRevoke && <th scope="col"><span className="sr-only">Actions</span></th>}
        </tr>
      </thead>
      <tbody>
        {grants.map((g) => (
          <tr key={g.id}>
            <td>{g.client_name || g.client_id}</td>
            {showUser && <td>{g.user}</td>}
            <td>{g.gateway}</td>
            <td>{g.scopes.map((s) => <code key={s}>{s} </code>)}</td>
            <td>{formatTime(g.created_at)}</td>
            <td>{g.last_used_at ? formatTime(g.last_used_at) : "never"}</td>
            {onRevoke && (
              <td>
                <button type="button" className="button-danger" onClick={() => onRevoke(g)}>Revoke</button>
              </td>
            )}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function MyGrants() {
  const { data, error, loading, reload } = useResource<OAuthGrant[]>("/api/v1/oauth/grants");
  const [revoking, setRevoking] = useState<OAuthGrant | null>(null);
  const [busy, setBusy] = useState(false);
  const [failed, setFailed] = useState<Error | null>(null);
  const revoke = async () => {
    if (!revoking) return;
    setBusy(true);
    setFailed(null);
    try {
      await api.delete(`/api/v1/oauth/grants/${encodeURIComponent(revoking.id)}`);
      setRevoking(null);
      reload();
    } catch (e) {
      setFailed(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <h2>Authorized by you</h2>
      <ErrorMessage error={error ?? failed} />
      {loading && !data ? (
        <Loading />
      ) : data && data.length ? (
        <GrantRows grants={data} onRevoke={setRevoking} />
      ) : (
        <Empty>You have not authorized any MCP client.</Empty>
      )}
      <ConfirmDialog
        open={revoking !== null}
        title={`Revoke ${revoking?.client_name || revoking?.client_id || ""}?`}
        confirmLabel="Revoke"
        danger
        busy={busy}
        onConfirm={() => void revoke()}
        onCancel={() => setRevoking(null)}
      >
        <p>It loses access to {revoking?.gateway}; connecting again asks for your consent again.</p>
      </ConfirmDialog>
    </>
  );
}

function OrganizationClients({ canUpdate }: { canUpdate: boolean }) {
  const { data, error, loading, reload } = useResource<OAuthClients>("/api/v1/oauth/clients");
  const [blocking, setBlocking] = useState<OAuthClient | null>(null);
  const [busy, setBusy] = useState(false);
  const [failed, setFailed] = useState<Error | null>(null);
  const toggle = async () => {
    if (!blocking) return;
    setBusy(true);
    setFailed(null);
    try {
      await api.put(`/api/v1/oauth/clients/${encodeURIComponent(blocking.id)}/blocked`, { blocked: !blocking.blocked });
      setBlocking(null);
      reload();
    } catch (e) {
      setFailed(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <h2>Every client of the organisation</h2>
      <RegistrationSettings canUpdate={canUpdate} />
      <ErrorMessage error={error ?? failed} />
      {loading && !data ? (
        <Loading />
      ) : data && data.clients.length ? (
        <table>
          <thead>
            <tr>
              <th scope="col">Client</th>
              <th scope="col">Registered by</th>
              <th scope="col">Redirect URIs</th>
              <th scope="col">Since</th>
              <th scope="col">State</th>
              {canUpdate && <th scope="col"><span className="sr-only">Actions</span></th>}
            </tr>
          </thead>
          <tbody>
            {data.clients.map((c) => (
              <tr key={c.id}>
                <td>{c.client_name || "(unnamed)"} <code>{c.client_id}</code></td>
                <td>{c.kind}</td>
                <td>{c.redirect_uris.map((u) => <code key={u}>{u} </code>)}</td>
                <td>{formatTime(c.created_at)}</td>
                <td>{c.blocked ? "blocked" : "allowed"}</td>
                {canUpdate && (
                  <td>
                    <button type="button" className={c.blocked ? "button-secondary" : "button-danger"} onClick={() => setBlocking(c)}>
                      {c.blocked ? "Unblock" : "Block"}
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <Empty>No MCP client has registered or been authorized yet.</Empty>
      )}
      {data && data.grants.length > 0 && (
        <>
          <h3>Live grants</h3>
          <GrantRows grants={data.grants} showUser />
        </>
      )}
      <ConfirmDialog
        open={blocking !== null}
        title={`${blocking?.blocked ? "Unblock" : "Block"} ${blocking?.client_name || blocking?.client_id || ""}?`}
        confirmLabel={blocking?.blocked ? "Unblock" : "Block"}
        danger={!blocking?.blocked}
        busy={busy}
        onConfirm={() => void toggle()}
        onCancel={() => setBlocking(null)}
      >
        <p>
          {blocking?.blocked
            ? "People can authorize it again."
            : "Every grant of this client ends now, and nobody in the organisation can authorize it."}
        </p>
      </ConfirmDialog>
    </>
  );
}

function RegistrationSettings({ canUpdate }: { canUpdate: boolean }) {
  const { data, error, reload } = useResource<OAuthSettings>("/api/v1/oauth/settings");
  const [failed, setFailed] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  if (!data) return <ErrorMessage error={error} />;
  const save = async (change: Partial<OAuthSettings>) => {
    setBusy(true);
    setFailed(null);
    try {
      await api.put("/api/v1/oauth/settings", {
        dynamic_registration: change.dynamic_registration ?? data.dynamic_registration,
        metadata_documents: change.metadata_documents ?? data.metadata_documents,
      });
      reload();
    } catch (e) {
      setFailed(e as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <fieldset disabled={!canUpdate || busy}>
      <legend>How clients register with the issuer <code>{data.issuer}</code></legend>
      <label>
        <input type="checkbox" checked={data.dynamic_registration}
          onChange={(e) => void save({ dynamic_registration: e.target.checked })} />{" "}
        Dynamic client registration (RFC 7591): any client may register itself
      </label>
      <label>
        <input type="checkbox" checked={data.metadata_documents}
          onChange={(e) => void save({ metadata_documents: e.target.checked })} />{" "}
        Client ID Metadata Documents: an https client id, fetched through the outbound guard
      </label>
      <ErrorMessage error={failed} />
    </fieldset>
  );
}

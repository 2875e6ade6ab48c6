import { useState } from "react";
import { api } from "../api/client";
import type { OrgDomain } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { CopyButton, Empty, ErrorMessage, Field, Loading, formatTime } from "./ui";
import { usePaged } from "../lib/useApi";

/** Email domains the organisation proves by DNS: SSO signs in only their addresses. */
export function DomainsPanel() {
  const { can } = useAuth();
  const domains = usePaged<OrgDomain>("/api/v1/domains");
  const [domain, setDomain] = useState("");
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);

  const run = async (key: string, action: () => Promise<unknown>) => {
    setBusy(key);
    setError(null);
    try {
      await action();
      domains.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(null);
    }
  };

  return (
    <section className="card" aria-labelledby="domains-heading">
      <h2 id="domains-heading">Verified domains</h2>
      <p className="hint">
        Identity providers sign in only addresses of domains verified here. Publish the TXT record at the domain, then
        verify; a claim alone grants nothing, and a domain verified by another organisation cannot be verified here.
      </p>
      <ErrorMessage error={domains.error ?? error} />
      {domains.loading && !domains.data && <Loading what="Loading email domains" />}
      {domains.data && domains.data.length === 0 && <Empty>No email domains yet.</Empty>}
      {domains.data && domains.data.length > 0 && (
        <table>
          <thead>
            <tr><th>Domain</th><th>Status</th><th>TXT record</th><th /></tr>
          </thead>
          <tbody>
            {domains.data.map((d) => (
              <tr key={d.id}>
                <td>{d.domain}</td>
                <td>
                  {d.verified ? <span className="badge">verified {formatTime(d.verified_at)}</span> : <span className="badge badge-deleted">unverified</span>}
                </td>
                <td className="copy-line">
                  <code>{d.txt_value}</code> <CopyButton text={d.txt_value} label={`Copy the TXT record for ${d.domain}`} />
                </td>
                <td className="toolbar">
                  {!d.verified && can("sso:update") && (
                    <button type="button" disabled={busy !== null} onClick={() => run(d.id, () => api.post(`/api/v1/domains/${d.id}/verify`))}>
                      {busy === d.id ? "Checking DNS…" : `Verify ${d.domain}`}
                    </button>
                  )}
                  {can("sso:delete") && (
                    <button type="button" className="button-secondary" disabled={busy !== null}
                      onClick={() => run(`delete-${d.id}`, () => api.delete(`/api/v1/domains/${d.id}`))}>
                      Remove
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {can("sso:create") && (
        <form className="form-row" onSubmit={(e) => {
          e.preventDefault();
          void run("claim", async () => {
            await api.post<OrgDomain>("/api/v1/domains", { domain: domain.trim() });
            setDomain("");
          });
        }}>
          <Field label="Domain" value={domain} placeholder="example.com" onChange={(e) => setDomain(e.target.value)} />
          <button type="submit" disabled={busy !== null || !domain.trim()}>Claim domain</button>
        </form>
      )}
    </section>
  );
}

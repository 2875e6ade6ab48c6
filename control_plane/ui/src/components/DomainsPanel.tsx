import { useState } from "react";
import { api } from "../api/client";
import type { OrgDomain } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { AdminTable } from "./AdminTable";
import { CopyButton, Field, formatTime } from "./ui";
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

  const intro = (
    <p className="hint">
      Identity providers sign in only addresses of domains verified here. Publish the TXT record at the domain, then
      verify; a claim alone grants nothing, and a domain verified by another organisation cannot be verified here.
    </p>
  );

  return (
    <AdminTable title="Verified domains" variant="panel" plural="email domains" rows={domains} rowKey={(d) => d.id}
      before={intro} error={error}
      columns={[
        { header: "Domain", cell: (d) => d.domain },
        {
          header: "Status",
          cell: (d) =>
            d.verified ? <span className="badge">verified {formatTime(d.verified_at)}</span> : <span className="badge badge-deleted">unverified</span>,
        },
        {
          header: "TXT record",
          cell: (d) => (
            <span className="copy-line">
              <code>{d.txt_value}</code> <CopyButton text={d.txt_value} label={`Copy the TXT record for ${d.domain}`} />
            </span>
          ),
        },
      ]}
      actions={(d) =>
        !d.verified && can("sso:update") && (
          <button type="button" disabled={busy !== null} onClick={() => run(d.id, () => api.post(`/api/v1/domains/${d.id}/verify`))}>
            {busy === d.id ? "Checking DNS…" : `Verify ${d.domain}`}
          </button>
        )
      }
      remove={{
        allowed: () => can("sso:delete"),
        verb: "Remove",
        path: (d) => `/api/v1/domains/${d.id}`,
        title: (d) => `Remove ${d.domain}?`,
        label: (d) => `Remove ${d.domain}`,
        consequence: (d) => (
          <p>
            Single sign-on stops routing and signing in addresses at <strong>{d.domain}</strong>; using it again takes a
            new claim and DNS proof.
          </p>
        ),
      }}>
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
    </AdminTable>
  );
}

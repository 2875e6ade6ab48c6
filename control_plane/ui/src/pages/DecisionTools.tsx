// The decision explorer's export (the filtered set, streamed by the server) and the
// verification of the decision log's hash chain.
import { useState } from "react";
import { api, qs } from "../api/client";
import type { DecisionChainVerification } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { ErrorMessage, Loading } from "../components/ui";
import { useResource } from "../lib/useApi";

export function DecisionExport({ params }: { params: Record<string, string> }) {
  const { can } = useAuth();
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  if (!can("decisions:export")) return null;
  const download = async (format: "csv" | "ndjson") => {
    setBusy(format);
    setError(null);
    try {
      const { blob, filename } = await api.download(`/api/v1/decisions/export${qs({ ...params, format })}`);
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      link.download = filename ?? `decisions.${format}`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(null);
    }
  };
  return (
    <div className="toolbar" aria-label="Export">
      <span className="hint">Export the filtered decisions:</span>
      <button type="button" className="button-secondary" disabled={busy !== null} onClick={() => download("csv")}>
        {busy === "csv" ? "Exporting…" : "CSV"}
      </button>
      <button type="button" className="button-secondary" disabled={busy !== null} onClick={() => download("ndjson")}>
        {busy === "ndjson" ? "Exporting…" : "NDJSON"}
      </button>
      <ErrorMessage error={error} />
    </div>
  );
}

export function DecisionVerification() {
  const { can } = useAuth();
  const allowed = can("audit_events:verify");
  const verify = useResource<DecisionChainVerification>(allowed ? "/api/v1/decisions/verify" : null);
  if (!allowed) return null;
  const v = verify.data;
  return (
    <div className="card" aria-live="polite">
      <h2>Decision log integrity</h2>
      <ErrorMessage error={verify.error} />
      {verify.loading && <Loading what="Verifying the decision chain" />}
      {v && !verify.loading && (v.ok ? (
        <p className="text-ok" role="status" data-testid="chain-status">
          Chain intact: {v.checked} decisions checked, head #{v.head_sequence} <code>{v.head_hash.slice(0, 16)}</code>
          {v.expired_ranges > 0 ? ` (${v.expired_ranges} expired ranges past retention)` : ""}
        </p>
      ) : (
        <p className="text-error" role="alert" data-testid="chain-status">
          Chain broken at #{v.first_broken?.sequence ?? "?"}
          {v.first_broken?.decision_id ? ` (decision ${v.first_broken.decision_id})` : ""}: {v.first_broken?.reason ?? "mismatch"}
        </p>
      ))}
      <button type="button" className="button-secondary" onClick={verify.reload} disabled={verify.loading}>Verify again</button>
    </div>
  );
}

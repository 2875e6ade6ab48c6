import { useEffect, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api } from "../api/client";
import type { Policy, PolicyDiff, PolicyVersion } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { PolicySourceEditor } from "../components/PolicySourceEditor";
import { ReplayPanel } from "../components/ReplayPanel";
import { RoleMatrixView } from "../components/RoleMatrix";
import { ConfirmDialog, ErrorMessage, Loading, StatusBadge, formatTime } from "../components/ui";
import { classifyDiff } from "../lib/diff";
import { useResource } from "../lib/useApi";

type Tab = "source" | "matrix" | "versions" | "impact";

function DiffView({ policyId, versions }: { policyId: string; versions: PolicyVersion[] }) {
  const sorted = [...versions].sort((a, b) => a.version - b.version);
  const latest = sorted[sorted.length - 1]?.version ?? 1;
  const [from, setFrom] = useState(Math.max(1, latest - 1));
  const [to, setTo] = useState(latest);
  useEffect(() => {
    setFrom(Math.max(1, latest - 1));
    setTo(latest);
  }, [latest]);
  const diff = useResource<PolicyDiff>(
    sorted.length > 1 ? `/api/v1/policies/${policyId}/diff?from=${from}&to=${to}` : null,
  );
  if (sorted.length < 2) return <p className="hint">Only one version so far; save a change to compare.</p>;
  const options = sorted.map((v) => v.version);
  return (
    <div>
      <div className="inline-form">
        <label htmlFor="diff-from">From version</label>
        <select id="diff-from" value={from} onChange={(e) => setFrom(Number(e.target.value))}>
          {options.map((v) => <option key={v} value={v}>v{v}</option>)}
        </select>
        <label htmlFor="diff-to">to version</label>
        <select id="diff-to" value={to} onChange={(e) => setTo(Number(e.target.value))}>
          {options.map((v) => <option key={v} value={v}>v{v}</option>)}
        </select>
      </div>
      <ErrorMessage error={diff.error} />
      {diff.loading && <Loading what="Loading the diff" />}
      {diff.data && !diff.loading && (
        diff.data.diff ? (
          <pre className="diff" aria-label={`Changes from v${from} to v${to}`}>
            {classifyDiff(diff.data.diff).map((line, i) => (
              <div key={i} className={`diff-${line.kind}`}>{line.text || " "}</div>
            ))}
          </pre>
        ) : (
          <p>No differences.</p>
        )
      )}
    </div>
  );
}

export function PolicyDetailPage() {
  const { id = "" } = useParams();
  const { can } = useAuth();
  const navigate = useNavigate();
  const policy = useResource<Policy>(`/api/v1/policies/${id}`);
  const versions = useResource<{ items: PolicyVersion[] }>(`/api/v1/policies/${id}/versions`);
  const [tab, setTab] = useState<Tab>("source");
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState<Error | null>(null);

  if (policy.loading && !policy.data) return <Loading what="Loading the policy" />;
  if (!policy.data) return <ErrorMessage error={policy.error ?? new Error("Policy not found")} />;
  const p = policy.data;
  const tabs: [Tab, string][] = [["source", "Source"], ["versions", "Versions and diff"]];
  if (p.kind === "RolePolicy") tabs.splice(1, 0, ["matrix", "Role matrix"]);
  if (can("policies:simulate")) tabs.push(["impact", "Impact replay"]);

  const remove = async () => {
    setDeleting(true);
    setDeleteError(null);
    try {
      await api.delete(`/api/v1/policies/${p.id}`);
      navigate("/policies");
    } catch (e) {
      setDeleteError(e as Error);
      setConfirmDelete(false);
    } finally {
      setDeleting(false);
    }
  };

  return (
    <section>
      <p className="breadcrumb">
        <Link to="/policies">Policies</Link> / {p.name}
      </p>
      <div className="page-header">
        <h1>
          {p.name} <StatusBadge status={p.status} />
        </h1>
        {can("policies:delete") && p.status !== "deleted" && (
          <button type="button" className="button-danger" onClick={() => setConfirmDelete(true)}>
            Delete…
          </button>
        )}
      </div>
      <p className="hint">
        {p.kind} · latest v{p.latest_version} · published {p.published_version ? `v${p.published_version}` : "never"} ·
        updated {formatTime(p.updated_at)}
      </p>
      <ErrorMessage error={deleteError} />
      <div role="tablist" aria-label="Policy views" className="tabs">
        {tabs.map(([key, label]) => (
          <button
            key={key}
            role="tab"
            type="button"
            id={`tab-${key}`}
            aria-selected={tab === key}
            aria-controls={`panel-${key}`}
            onClick={() => setTab(key)}
          >
            {label}
          </button>
        ))}
      </div>
      <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`}>
        {tab === "source" &&
          (p.source !== null ? (
            <PolicySourceEditor
              initial={p.source}
              canSave={can("policies:update")}
              onSaved={() => {
                policy.reload();
                versions.reload();
              }}
            />
          ) : (
            <p>This policy is deleted; its versions remain below.</p>
          ))}
        {tab === "matrix" && <RoleMatrixView source={p.source ?? ""} />}
        {tab === "impact" && <ReplayPanel policyId={p.id} />}
        {tab === "versions" && (
          <div>
            <ErrorMessage error={versions.error} />
            {versions.loading && !versions.data && <Loading what="Loading versions" />}
            {versions.data && (
              <>
                <div className="table-wrap">
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">Version</th>
                        <th scope="col">Created</th>
                        <th scope="col">By</th>
                        <th scope="col">Published</th>
                        <th scope="col">SHA-256</th>
                      </tr>
                    </thead>
                    <tbody>
                      {[...versions.data.items].sort((a, b) => b.version - a.version).map((v) => (
                        <tr key={v.version}>
                          <td>v{v.version}</td>
                          <td>{formatTime(v.created_at)}</td>
                          <td>{v.created_by ?? "—"}</td>
                          <td>{v.published ? "yes" : "no"}</td>
                          <td><code title={v.sha256}>{v.sha256.slice(0, 12)}</code></td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
                <h2>Diff</h2>
                <DiffView policyId={p.id} versions={versions.data.items} />
              </>
            )}
          </div>
        )}
      </div>
      <ConfirmDialog
        open={confirmDelete}
        title={`Delete ${p.name}?`}
        confirmLabel="Delete"
        danger
        busy={deleting}
        onConfirm={remove}
        onCancel={() => setConfirmDelete(false)}
      >
        <p>It is removed from the drafts; the next publish stops enforcing it. Its versions are kept.</p>
      </ConfirmDialog>
    </section>
  );
}

// Impact replay: re-decide stored decisions of a time window with the drafts, watch its
// progress, then read which outcomes would change, with examples and the rules responsible.
import { useEffect, useState, type FormEvent } from "react";
import { api, ApiError } from "../api/client";
import type { Replay, ReplayTransition } from "../api/types";
import { ACTIVE, describeRequest, localInput, orderTransitions, outcomeLabel, progressPercent, replayWindow, responsibleRules } from "../lib/replay";
import { ErrorMessage, Field, StatusBadge, formatTime } from "./ui";

const POLL_MS = 1000;

function Outcome({ value }: { value: string }) {
  return <span className={`outcome outcome-${value}`}>{outcomeLabel(value)}</span>;
}

function TransitionView({ transition }: { transition: ReplayTransition }) {
  const rules = responsibleRules(transition);
  return (
    <article className={`card transition${transition.risky ? " risky" : ""}`} data-testid="replay-transition">
      <h4>
        <Outcome value={transition.from} /> → <Outcome value={transition.to} />: {transition.count} decision
        {transition.count === 1 ? "" : "s"}
        {transition.risky && <span className="badge badge-deny">risky</span>}
      </h4>
      <p>
        Responsible rules: {rules.length ? rules.map((r) => <code key={r}>{r} </code>) : <span className="hint">none named</span>}
      </p>
      {transition.examples.length > 0 && (
        <div className="table-wrap">
          <table>
            <caption>Examples</caption>
            <thead>
              <tr>
                <th scope="col">Decision</th>
                <th scope="col">Request</th>
                <th scope="col">Before</th>
                <th scope="col">After</th>
              </tr>
            </thead>
            <tbody>
              {transition.examples.map((e) => (
                <tr key={e.decision_id}>
                  <td>
                    <code>{e.decision_id.slice(0, 12)}</code>
                    <div className="hint">{formatTime(e.time)}</div>
                  </td>
                  <td>{describeRequest(e.input)}</td>
                  <td>{e.old.reasons.join("; ") || "—"}</td>
                  <td>{e.new.reasons.join("; ") || "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </article>
  );
}

export function ReplayReport({ replay }: { replay: Replay }) {
  const result = replay.result;
  if (!result) return null;
  return (
    <div aria-live="polite">
      <div className="stats">
        <div className="stat"><strong>{result.total}</strong> decisions replayed</div>
        <div className="stat"><strong>{result.changed}</strong> would change</div>
        <div className="stat"><strong>{result.unchanged}</strong> unchanged</div>
        <div className={`stat${result.risky ? " text-error" : ""}`}><strong>{result.risky}</strong> risky changes</div>
      </div>
      {replay.status === "completed" && (
        <p role="status" className={result.risky ? "text-error" : "text-ok"}>
          {result.total === 0
            ? "No stored decisions in this window to replay."
            : result.changed === 0
              ? "No outcome would change."
              : `${result.changed} outcome${result.changed === 1 ? "" : "s"} would change${result.risky ? `, ${result.risky} of them risky` : ""}.`}
        </p>
      )}
      {Object.keys(result.counts).length > 0 && (
        <details>
          <summary>All transitions</summary>
          <ul>
            {Object.entries(result.counts).map(([pair, count]) => (
              <li key={pair}><code>{pair}</code>: {count}</li>
            ))}
          </ul>
        </details>
      )}
      {orderTransitions(result.transitions).map((t) => (
        <TransitionView key={`${t.from}->${t.to}`} transition={t} />
      ))}
    </div>
  );
}

export function ReplayPanel({ policyId, onReplay }: { policyId?: string; onReplay?(replay: Replay): void }) {
  const [since, setSince] = useState(() => localInput(new Date(Date.now() - 7 * 24 * 3600 * 1000)));
  const [until, setUntil] = useState("");
  const [replay, setReplay] = useState<Replay | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [formError, setFormError] = useState<{ field: string; message: string } | null>(null);
  const [busy, setBusy] = useState(false);

  const apiFields = error instanceof ApiError ? error.fieldErrors : {};
  const fieldError = (name: string) => (formError?.field === name ? formError.message : apiFields[name]);
  const id = replay?.id;
  const active = replay ? ACTIVE.has(replay.status) : false;
  useEffect(() => {
    if (!id || !active) return;
    let live = true;
    const timer = setTimeout(async () => {
      try {
        const next = await api.get<Replay>(`/api/v1/replays/${id}`);
        if (live) setReplay(next);
      } catch (e) {
        if (live) setError(e as Error);
      }
    }, POLL_MS);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [id, active, replay]);
  useEffect(() => {
    if (replay && !ACTIVE.has(replay.status)) onReplay?.(replay);
    // Report each finished replay once.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [replay?.id, replay?.status]);

  const start = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    const window = replayWindow(since, until);
    if ("error" in window) {
      setFormError({ field: window.field, message: window.error });
      return;
    }
    setFormError(null);
    setBusy(true);
    try {
      const path = policyId ? `/api/v1/policies/${policyId}/replay` : "/api/v1/policies/replay";
      setReplay(await api.post<Replay>(path, { ...window.window, draft: true }));
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="card" aria-labelledby="replay-heading">
      <h2 id="replay-heading">Impact replay</h2>
      <p className="hint">
        {policyId
          ? "Re-decides stored decisions with this policy at its draft and everything else as published."
          : "Re-decides stored decisions with the drafts, to see what publishing them would change."}
      </p>
      <form className="form-row" onSubmit={start} noValidate>
        <Field label="From" type="datetime-local" value={since} error={fieldError("since")}
          onChange={(e) => setSince(e.target.value)} required />
        <Field label="Until (optional)" type="datetime-local" value={until} hint="Empty: now"
          error={fieldError("until")} onChange={(e) => setUntil(e.target.value)} />
        <div className="field">
          <span aria-hidden="true">&nbsp;</span>
          <button type="submit" disabled={busy || active}>{active ? "Replaying…" : busy ? "Starting…" : "Replay decisions"}</button>
        </div>
      </form>
      <ErrorMessage error={error} />
      {replay && (
        <div>
          <p>
            Replay <code>{replay.id.slice(0, 8)}</code> <StatusBadge status={replay.status} /> — {replay.processed} of{" "}
            {replay.total} decisions
          </p>
          {active && (
            <progress max={100} value={progressPercent(replay)} aria-label="Replay progress">
              {progressPercent(replay)}%
            </progress>
          )}
          {replay.status === "failed" && <div className="alert alert-error" role="alert">Replay failed: {replay.error ?? "unknown error"}</div>}
          <ReplayReport replay={replay} />
        </div>
      )}
    </section>
  );
}

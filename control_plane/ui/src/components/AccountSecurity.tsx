// The signed-in person's own security: the second factor, live sessions, the password.
import { useState, type FormEvent } from "react";
import { useNavigate } from "react-router";
import { api, ApiError } from "../api/client";
import type { MfaStatus, SessionInfo } from "../api/types";
import { useAuth } from "../auth/AuthContext";
import { normalizeCode } from "../lib/login";
import { describeDevice, orderSessions } from "../lib/sessions";
import { useResource } from "../lib/useApi";
import { TotpEnrolmentFlow } from "./TotpEnrolment";
import { ConfirmDialog, Empty, ErrorMessage, Field, Loading, formatTime } from "./ui";

const call = <T,>(method: string, path: string, body?: unknown) => api.request<T>(method, path, body);

export function MfaSection({ account }: { account: string }) {
  const status = useResource<MfaStatus>("/api/v1/me/mfa");
  const [enrolling, setEnrolling] = useState(false);
  const [code, setCode] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const fields = error instanceof ApiError ? error.fieldErrors : {};

  const disable = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.delete("/api/v1/me/mfa/totp", { code: normalizeCode(code) });
      setCode("");
      setDone("Two-factor authentication is off.");
      status.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  const s = status.data;
  return (
    <section className="card" aria-labelledby="mfa-heading">
      <h2 id="mfa-heading">Two-factor authentication</h2>
      <ErrorMessage error={status.error} />
      {status.loading && !s && <Loading what="Loading your second factor" />}
      {done && <div className="alert alert-ok" role="status">{done}</div>}
      {s && !s.totp_enabled && (
        <>
          <p>
            Off. {s.required_for_your_role
              ? "Your organisation requires it for your role: set it up now."
              : "Add an authenticator app so a password alone cannot sign you in."}
          </p>
          {enrolling ? (
            <TotpEnrolmentFlow
              autoStart
              account={account}
              call={call}
              onDone={() => {
                setEnrolling(false);
                setDone("Two-factor authentication is on. You will be asked for a code when you log in.");
                status.reload();
              }}
            />
          ) : (
            <button type="button" onClick={() => { setDone(null); setEnrolling(true); }}>
              Set up an authenticator app
            </button>
          )}
        </>
      )}
      {s && s.totp_enabled && (
        <>
          <p>
            <strong className="text-ok">On</strong> — authenticator app.{" "}
            {s.recovery_codes_remaining} recovery code{s.recovery_codes_remaining === 1 ? "" : "s"} left.
            {s.required_for_your_role && " Your organisation requires it for your role."}
          </p>
          <form className="inline-form" onSubmit={disable} noValidate>
            <Field label="Code to turn it off" inputMode="numeric" autoComplete="one-time-code" value={code}
              error={fields.code} hint="A code from your app or a recovery code" onChange={(e) => setCode(e.target.value)} />
            <button type="submit" className="button-danger" disabled={busy || !code.trim()}>
              {busy ? "Turning off…" : "Turn off"}
            </button>
          </form>
          {!fields.code && <ErrorMessage error={error} />}
        </>
      )}
    </section>
  );
}

export function SessionsSection() {
  const { logout } = useAuth();
  const navigate = useNavigate();
  const sessions = useResource<SessionInfo[]>("/api/v1/me/sessions");
  const [revoking, setRevoking] = useState<SessionInfo | "others" | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [result, setResult] = useState<string | null>(null);

  const revoke = async () => {
    if (!revoking) return;
    setBusy(true);
    setError(null);
    try {
      if (revoking === "others") {
        const { revoked } = await api.delete<{ revoked: number }>("/api/v1/me/sessions");
        setResult(`Ended ${revoked} other session${revoked === 1 ? "" : "s"}.`);
      } else if (revoking.current) {
        await logout();
        navigate("/login");
        return;
      } else {
        await api.delete(`/api/v1/me/sessions/${revoking.id}`);
        setResult(`Ended the session of ${describeDevice(revoking.user_agent)}.`);
      }
      sessions.reload();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
      setRevoking(null);
    }
  };

  const list = sessions.data ? orderSessions(sessions.data) : undefined;
  return (
    <section className="card" aria-labelledby="sessions-heading">
      <div className="page-header">
        <h2 id="sessions-heading">Sessions</h2>
        {list && list.some((s) => !s.current) && (
          <button type="button" className="button-secondary" onClick={() => setRevoking("others")}>
            Log out everywhere else…
          </button>
        )}
      </div>
      <p className="hint">Where you are signed in to this organisation. End any you do not recognise.</p>
      <ErrorMessage error={sessions.error ?? error} />
      {result && <div className="alert alert-ok" role="status">{result}</div>}
      {sessions.loading && !list && <Loading what="Loading your sessions" />}
      {list && list.length === 0 && <Empty>No active sessions.</Empty>}
      {list && list.length > 0 && (
        <div className="table-wrap">
          <table>
            <caption className="sr-only">Your sessions</caption>
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Kind</th>
                <th scope="col">Address</th>
                <th scope="col">Signed in</th>
                <th scope="col">Last active</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {list.map((s) => (
                <tr key={s.id} data-testid="session-row">
                  <td>
                    {describeDevice(s.user_agent)}
                    {s.current && <span className="badge badge-published">this session</span>}
                  </td>
                  <td>{s.kind === "cookie" ? "browser cookie" : "token"}</td>
                  <td>{s.source_ip ?? "—"}</td>
                  <td>{formatTime(s.created_at)}</td>
                  <td>{formatTime(s.last_seen_at)}</td>
                  <td>
                    <button type="button" className="button-secondary" onClick={() => setRevoking(s)}
                      aria-label={s.current ? "Log out of this session" : `Revoke session of ${describeDevice(s.user_agent)} signed in ${formatTime(s.created_at)}`}>
                      {s.current ? "Log out" : "Revoke"}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <ConfirmDialog
        open={revoking !== null}
        title={revoking === "others" ? "Log out everywhere else?" : revoking?.current ? "Log out?" : "Revoke this session?"}
        confirmLabel={revoking === "others" ? "Log out other sessions" : revoking?.current ? "Log out" : "Revoke"}
        danger
        busy={busy}
        onConfirm={revoke}
        onCancel={() => setRevoking(null)}
      >
        <p>
          {revoking === "others"
            ? "Every other browser and token of yours in this organisation is signed out now."
            : "That device is signed out now; its tokens stop working."}
        </p>
      </ConfirmDialog>
    </section>
  );
}

export function PasswordSection() {
  const { logout } = useAuth();
  const navigate = useNavigate();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [repeat, setRepeat] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [mismatch, setMismatch] = useState(false);
  const fields = error instanceof ApiError ? error.fieldErrors : {};

  const change = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    setMismatch(next !== repeat);
    if (next !== repeat) return;
    setBusy(true);
    try {
      await api.post("/api/v1/me/password", { current, new: next });
      // Every session ends with a password change, this one too.
      await logout();
      navigate("/login", { replace: true });
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="card" onSubmit={change} noValidate aria-labelledby="password-heading">
      <h2 id="password-heading">Password</h2>
      <p className="hint">Changing it signs you out everywhere, here too.</p>
      <ErrorMessage error={error} />
      <div className="form-row">
        <Field label="Current password" type="password" autoComplete="current-password" value={current}
          error={fields.current} onChange={(e) => setCurrent(e.target.value)} required />
        <Field label="New password" type="password" autoComplete="new-password" value={next}
          error={fields.new} onChange={(e) => setNext(e.target.value)} required />
        <Field label="Repeat the new password" type="password" autoComplete="new-password" value={repeat}
          error={mismatch ? "does not match the new password" : undefined} onChange={(e) => setRepeat(e.target.value)} required />
      </div>
      <button type="submit" disabled={busy}>{busy ? "Changing…" : "Change password"}</button>
    </form>
  );
}

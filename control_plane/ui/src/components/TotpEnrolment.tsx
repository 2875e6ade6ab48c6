// TOTP enrolment: scan the QR code (or type the secret), confirm with a code, keep the
// recovery codes. Used from the account page and, with an enrolment token, at login.
import { useEffect, useRef, useState, type FormEvent } from "react";
import { ApiError } from "../api/client";
import type { TotpConfirmed, TotpEnrolment } from "../api/types";
import { normalizeCode, recoveryCodesFile } from "../lib/login";
import { CopyButton, ErrorMessage, Field } from "./ui";

export type Call = <T>(method: string, path: string, body?: unknown) => Promise<T>;

function saveFile(text: string, filename: string) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Recovery codes, shown once: copy or download them, then say they are kept. */
export function RecoveryCodes({ codes, account, onDone }: { codes: string[]; account: string; onDone(): void }) {
  const text = recoveryCodesFile(codes, account, new Date());
  return (
    <div className="alert alert-ok secret" role="status">
      <h2>Save your recovery codes</h2>
      <p>
        Each code signs you in once if you lose your authenticator. They are shown only now and cannot be
        shown again.
      </p>
      <ul className="recovery-codes" aria-label="Recovery codes" data-testid="recovery-codes">
        {codes.map((c) => (
          <li key={c}>
            <code>{c}</code>
          </li>
        ))}
      </ul>
      <div className="toolbar">
        <CopyButton text={codes.join("\n")} label="Copy codes" />
        <button type="button" className="button-secondary" onClick={() => saveFile(text, "kaizen-recovery-codes.txt")}>
          Download codes
        </button>
        <button type="button" onClick={onDone}>
          I have saved these codes
        </button>
      </div>
    </div>
  );
}

export function TotpEnrolmentFlow({
  call,
  account,
  onDone,
  autoStart = false,
}: {
  call: Call;
  account: string;
  onDone(confirmed: TotpConfirmed): void;
  autoStart?: boolean;
}) {
  const [enrolment, setEnrolment] = useState<TotpEnrolment | null>(null);
  const [confirmed, setConfirmed] = useState<TotpConfirmed | null>(null);
  const [code, setCode] = useState("");
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const started = useRef(false);

  const start = async () => {
    setBusy(true);
    setError(null);
    try {
      setEnrolment(await call<TotpEnrolment>("POST", "/api/v1/me/mfa/totp", {}));
      setCode("");
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    // Once only (StrictMode runs effects twice): each start replaces the pending secret.
    if (autoStart && !started.current) {
      started.current = true;
      void start();
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [autoStart]);

  const confirm = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setConfirmed(await call<TotpConfirmed>("POST", "/api/v1/me/mfa/totp/confirm", { code: normalizeCode(code) }));
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };

  if (confirmed) {
    return <RecoveryCodes codes={confirmed.recovery_codes} account={account} onDone={() => onDone(confirmed)} />;
  }
  if (!enrolment) {
    return (
      <div>
        <ErrorMessage error={error} />
        <button type="button" onClick={start} disabled={busy}>
          {busy ? "Starting…" : "Set up an authenticator app"}
        </button>
      </div>
    );
  }
  const fields = error instanceof ApiError ? error.fieldErrors : {};
  const codeError = fields.code ?? (error instanceof ApiError && error.status === 401 ? error.message : undefined);
  return (
    <form className="enrolment" onSubmit={confirm} noValidate>
      <ol className="steps">
        <li>
          <p>Scan this QR code with an authenticator app (1Password, Google Authenticator, Authy, …).</p>
          <img className="qr" src={enrolment.qr_svg} alt={`QR code for ${enrolment.otpauth_uri.split("?")[0]}`} width={180} height={180} />
        </li>
        <li>
          <p>Or type this key into the app:</p>
          <div className="secret-row">
            <label className="sr-only" htmlFor="totp-secret">Setup key</label>
            <input id="totp-secret" readOnly value={enrolment.secret} data-testid="totp-secret" onFocus={(e) => e.target.select()} />
            <CopyButton text={enrolment.secret} />
          </div>
        </li>
        <li>
          <Field label="Code from the app" inputMode="numeric" autoComplete="one-time-code" value={code}
            error={codeError} onChange={(e) => setCode(e.target.value)} maxLength={9} required />
        </li>
      </ol>
      {!codeError && <ErrorMessage error={error} />}
      <div className="toolbar">
        <button type="submit" disabled={busy || !code.trim()}>{busy ? "Verifying…" : "Verify and turn on"}</button>
        <button type="button" className="button-secondary" onClick={start} disabled={busy}>New QR code</button>
      </div>
    </form>
  );
}

import { useState, type FormEvent } from "react";
import { ApiError } from "../api/client";

/** A create form's state: `submit` runs `action` once at a time and keeps its error, with
 * the API's per-field messages in `fields`. */
export function useSubmit(action: () => Promise<void>) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  const fields = error instanceof ApiError ? error.fieldErrors : {};
  return { busy, error, fields, submit };
}

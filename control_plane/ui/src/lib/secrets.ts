// Names in the secrets store: provider keys are `providers/<provider>/api_key`.
const PROVIDER_KEY = /^providers\/([^/]+)\/api_key$/;
const PROVIDER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** The provider an agent names as `api_key_secret`, for a stored provider key's name. */
export function providerOf(name: string): string | null {
  return PROVIDER_KEY.exec(name)?.[1] ?? null;
}

/** Why a provider name would be refused, before asking the API (null: fine). */
export function providerNameProblem(name: string): string | null {
  if (!name) return "required";
  return PROVIDER_NAME.test(name) ? null : "letters, digits, '.', '_' and '-' only, starting with a letter or digit (at most 64)";
}

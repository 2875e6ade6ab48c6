import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { api } from "../api/client";
import type { Me, TokenResponse } from "../api/types";

interface AuthState {
  me: Me | null;
  /** True until the first session check (refresh token in this tab) has finished. */
  checking: boolean;
  login(email: string, password: string, totp?: string): Promise<void>;
  /** Starts the session a finished step handed over (MFA enrolment at login). */
  adopt(tokens: TokenResponse): Promise<void>;
  /** Trades a finished SSO login's single-use code for a session. */
  exchangeSsoCode(code: string, totp?: string): Promise<void>;
  reloadMe(): Promise<void>;
  signup(email: string, password: string, organization: string): Promise<void>;
  logout(): Promise<void>;
  can(permission: string): boolean;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [me, setMe] = useState<Me | null>(null);
  const [checking, setChecking] = useState(true);

  const loadMe = useCallback(async () => setMe(await api.get<Me>("/api/v1/me")), []);

  useEffect(() => {
    const off = api.onSessionEnded(() => setMe(null));
    if (api.hasSession) {
      loadMe()
        .catch(() => setMe(null))
        .finally(() => setChecking(false));
    } else {
      setChecking(false);
    }
    return () => {
      off();
    };
  }, [loadMe]);

  const value = useMemo<AuthState>(
    () => ({
      me,
      checking,
      async login(email, password, totp) {
        await api.login(email, password, totp);
        await loadMe();
      },
      async adopt(tokens) {
        api.setTokens(tokens);
        await loadMe();
      },
      async exchangeSsoCode(code, totp) {
        await api.exchangeSsoCode(code, totp);
        await loadMe();
      },
      reloadMe: loadMe,
      async signup(email, password, organization) {
        await api.signup(email, password, organization);
        await loadMe();
      },
      async logout() {
        await api.logout().catch(() => undefined);
        setMe(null);
      },
      can: (permission) => !!me?.permissions.includes(permission),
    }),
    [me, checking, loadMe],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error("useAuth outside AuthProvider");
  return auth;
}

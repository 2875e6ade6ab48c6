import { useCallback, useEffect, useRef, useState } from "react";
import { api, ApiError } from "../api/client";
import type { Page } from "../api/types";

export interface Resource<T> {
  data: T | undefined;
  error: ApiError | Error | null;
  loading: boolean;
  reload(): void;
}

/** GETs `path` (null: nothing to load) and reloads on demand. */
export function useResource<T>(path: string | null): Resource<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(path !== null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path === null) return;
    let live = true;
    setLoading(true);
    api
      .get<T>(path)
      .then((value) => {
        if (!live) return;
        setData(value);
        setError(null);
      })
      .catch((e: Error) => live && setError(e))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [path, tick]);
  return { data, error, loading, reload: useCallback(() => setTick((t) => t + 1), []) };
}

export interface PagedResource<T> extends Resource<T[]> {
  more: boolean;
  loadMore(): void;
}

/** A cursor-paginated collection: first page on mount, "load more" appends. */
export function usePaged<T>(path: string): PagedResource<T> {
  const [items, setItems] = useState<T[]>();
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const generation = useRef(0);

  const fetchPage = useCallback(
    async (after: string | null, append: boolean) => {
      const mine = ++generation.current;
      setLoading(true);
      const sep = path.includes("?") ? "&" : "?";
      try {
        const page = await api.get<Page<T>>(after ? `${path}${sep}cursor=${encodeURIComponent(after)}` : path);
        if (mine !== generation.current) return;
        setItems((old) => (append && old ? [...old, ...page.items] : page.items));
        setCursor(page.next_cursor ?? null);
        setError(null);
      } catch (e) {
        if (mine === generation.current) setError(e as Error);
      } finally {
        if (mine === generation.current) setLoading(false);
      }
    },
    [path],
  );

  useEffect(() => {
    void fetchPage(null, false);
  }, [fetchPage, tick]);

  return {
    data: items,
    error,
    loading,
    more: cursor !== null,
    loadMore: () => void fetchPage(cursor, true),
    reload: useCallback(() => setTick((t) => t + 1), []),
  };
}

/** Runs an action, keeping its error for display where it happened. */
export function useAction<A extends unknown[], R>(action: (...args: A) => Promise<R>) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | Error | null>(null);
  const run = useCallback(
    async (...args: A): Promise<R | undefined> => {
      setBusy(true);
      setError(null);
      try {
        return await action(...args);
      } catch (e) {
        setError(e as Error);
        return undefined;
      } finally {
        setBusy(false);
      }
    },
    [action],
  );
  return { run, busy, error, setError };
}

export interface AllPages<T> extends Resource<T[]> {
  /** More pages remained after `maxPages`: the list is incomplete. */
  truncated: boolean;
}

/**
 * Every page of a cursor-paginated collection (at most `maxPages`), reloaded on demand;
 * a reload keeps showing the last complete list until the new one has arrived.
 */
export function useAllPages<T>(path: string | null, maxPages = 20): AllPages<T> {
  // Kept with the path it answers, so a new filter never shows the previous one's rows.
  const [result, setResult] = useState<{ path: string; items: T[]; truncated: boolean }>();
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(path !== null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path === null) return;
    let live = true;
    setLoading(true);
    const sep = path.includes("?") ? "&" : "?";
    (async () => {
      const items: T[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page: Page<T> = await api.get<Page<T>>(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
        items.push(...page.items);
        cursor = page.next_cursor ?? null;
        pages += 1;
      } while (cursor !== null && pages < maxPages && live);
      return { path, items, truncated: cursor !== null };
    })()
      .then((loaded) => {
        if (!live) return;
        setResult(loaded);
        setError(null);
      })
      .catch((e: Error) => live && setError(e))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [path, maxPages, tick]);
  const current = result && result.path === path ? result : undefined;
  return {
    data: current?.items,
    truncated: current?.truncated ?? false,
    error,
    loading,
    reload: useCallback(() => setTick((t) => t + 1), []),
  };
}

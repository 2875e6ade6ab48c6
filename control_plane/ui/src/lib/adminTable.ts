// The admin table's logic, apart from React so it can be tested: what the list shows, and
// removing a row (the API's DELETE, then a reload; a refusal is kept to be shown).

/** What a list shows: its first load, "No … yet.", its rows, or nothing (it failed). */
export type ListView = "loading" | "empty" | "rows" | "none";

export function listView(rows: { data?: readonly unknown[]; loading: boolean }): ListView {
  if (rows.data) return rows.data.length === 0 ? "empty" : "rows";
  return rows.loading ? "loading" : "none";
}

/** Removes one row: `del(path)`, then `reload()`. Resolves to the refusal, or null when it
 * went; nothing is reloaded after a refusal (the row is still there). */
export async function removeRow(
  del: (path: string) => Promise<unknown>,
  path: string,
  reload: () => void,
): Promise<Error | null> {
  try {
    await del(path);
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
  reload();
  return null;
}

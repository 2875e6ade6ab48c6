// The admin lists' one shape: a list (loading, empty, error, "load more"), row actions and
// a removal behind a confirmation, and a create form below. Pages give the columns, the
// removal's words and path, any other row actions, and the form (`useSubmit` keeps its
// busy/error state). The logic is in src/lib/adminTable.ts.
import { useState, type ReactNode } from "react";
import { api } from "../api/client";
import { listView, removeRow } from "../lib/adminTable";
import { ConfirmDialog, Empty, ErrorMessage, Loading } from "./ui";

export interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
}

/** What the table lists: `usePaged`'s result fits, so does a plain list. */
export interface Rows<T> {
  data?: T[];
  loading: boolean;
  error: Error | null;
  more?: boolean;
  loadMore?: () => void;
  reload: () => void;
}

export interface Removal<T> {
  allowed: (row: T) => boolean; // whether this row shows the button
  verb?: string; // "Delete" (default), "Revoke", "Remove", …
  path: (row: T) => string;
  title: (row: T) => string; // the confirmation's question
  label?: (row: T) => string; // the button's accessible name, when the text is not enough
  consequence: (row: T) => ReactNode; // what removing it does, said in the confirmation
}

interface AdminTableProps<T> {
  title: string;
  /** "page" (default): a page with an h1; "panel": a card with an h2 inside a page. */
  variant?: "page" | "panel";
  plural: string; // "teams": "Loading teams", "No teams yet."
  empty?: string; // instead of "No <plural> yet."
  rows: Rows<T>;
  rowKey: (row: T) => string;
  columns: Column<T>[];
  actions?: (row: T) => ReactNode; // the row's other buttons, before the removal
  remove?: Removal<T>;
  error?: Error | null; // the refusal of one of the page's own row actions
  before?: ReactNode; // between the heading and the list (an intro, a one-time secret)
  children?: ReactNode; // the create form (and the page's own dialogs)
}

export function AdminTable<T>(props: AdminTableProps<T>) {
  const { title, variant = "page", plural, empty, rows, rowKey, columns, actions, remove, error, before, children } = props;
  const [removing, setRemoving] = useState<T | null>(null);
  const [busy, setBusy] = useState(false);
  const [removeError, setRemoveError] = useState<Error | null>(null);
  const verb = remove?.verb ?? "Delete";
  const withActions = actions !== undefined || remove !== undefined;
  const view = listView(rows);
  const panel = variant === "panel";
  const headingId = `${plural.replaceAll(" ", "-")}-heading`;

  const confirmRemoval = async () => {
    if (!removing || !remove) return;
    setBusy(true);
    setRemoveError(null);
    setRemoveError(await removeRow((path) => api.delete(path), remove.path(removing), rows.reload));
    setBusy(false);
    setRemoving(null);
  };

  return (
    <section className={panel ? "card" : undefined} aria-labelledby={panel ? headingId : undefined}>
      {panel ? <h2 id={headingId}>{title}</h2> : <h1>{title}</h1>}
      {before}
      <ErrorMessage error={rows.error ?? removeError ?? error ?? null} />
      {view === "loading" && <Loading what={`Loading ${plural}`} />}
      {view === "empty" && <Empty>{empty ?? `No ${plural} yet.`}</Empty>}
      {view === "rows" && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                {columns.map((c) => <th scope="col" key={c.header}>{c.header}</th>)}
                {withActions && <th scope="col"><span className="sr-only">Actions</span></th>}
              </tr>
            </thead>
            <tbody>
              {rows.data?.map((row) => (
                <tr key={rowKey(row)}>
                  {columns.map((c) => <td key={c.header}>{c.cell(row)}</td>)}
                  {withActions && (
                    <td className="row-actions">
                      {actions?.(row)}
                      {remove?.allowed(row) && (
                        <button type="button" className="button-secondary" aria-label={remove.label?.(row)}
                          onClick={() => setRemoving(row)}>{verb}…</button>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
          {rows.more && <button type="button" className="button-secondary" onClick={rows.loadMore}>Load more</button>}
        </div>
      )}
      {children}
      {remove && (
        <ConfirmDialog open={removing !== null} title={removing ? remove.title(removing) : ""} confirmLabel={verb} danger
          busy={busy} onConfirm={() => void confirmRemoval()} onCancel={() => setRemoving(null)}>
          {removing && remove.consequence(removing)}
        </ConfirmDialog>
      )}
    </section>
  );
}

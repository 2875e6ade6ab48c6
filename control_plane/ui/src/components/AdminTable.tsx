// The admin pages' one shape: a list (loading, empty, error, "load more"), a row action
// that removes with a confirmation, and a create form below. Pages give the columns, the
// removal's words and path, and the form (with `useSubmit` for its busy/error state).
import { useState, type ReactNode } from "react";
import { api } from "../api/client";
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
  verb?: string; // "Delete" (default), "Revoke", …
  path: (row: T) => string;
  title: (row: T) => string; // the confirmation's question
  label?: (row: T) => string; // the button's accessible name, when the text is not enough
  consequence: (row: T) => ReactNode; // what removing it does, said in the confirmation
}

interface AdminTableProps<T> {
  title: string;
  plural: string; // "teams": "Loading teams", "No teams yet."
  empty?: string; // instead of "No <plural> yet."
  rows: Rows<T>;
  rowKey: (row: T) => string;
  columns: Column<T>[];
  remove?: Removal<T>;
  before?: ReactNode; // between the heading and the list (e.g. a one-time secret)
  children?: ReactNode; // the create form
}

export function AdminTable<T>(props: AdminTableProps<T>) {
  const { title, plural, empty, rows, rowKey, columns, remove, before, children } = props;
  const [removing, setRemoving] = useState<T | null>(null);
  const [removeError, setRemoveError] = useState<Error | null>(null);
  const verb = remove?.verb ?? "Delete";
  const withActions = remove !== undefined;

  return (
    <section>
      <h1>{title}</h1>
      {before}
      <ErrorMessage error={rows.error ?? removeError} />
      {rows.loading && !rows.data && <Loading what={`Loading ${plural}`} />}
      {rows.data && rows.data.length === 0 && <Empty>{empty ?? `No ${plural} yet.`}</Empty>}
      {rows.data && rows.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                {columns.map((c) => <th scope="col" key={c.header}>{c.header}</th>)}
                {withActions && <th scope="col"><span className="sr-only">Actions</span></th>}
              </tr>
            </thead>
            <tbody>
              {rows.data.map((row) => (
                <tr key={rowKey(row)}>
                  {columns.map((c) => <td key={c.header}>{c.cell(row)}</td>)}
                  {withActions && (
                    <td>
                      {remove.allowed(row) && (
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
          onConfirm={async () => {
            if (!removing) return;
            setRemoveError(null);
            try {
              await api.delete(remove.path(removing));
              rows.reload();
            } catch (e) {
              setRemoveError(e as Error);
            } finally {
              setRemoving(null);
            }
          }}
          onCancel={() => setRemoving(null)}>
          {removing && remove.consequence(removing)}
        </ConfirmDialog>
      )}
    </section>
  );
}

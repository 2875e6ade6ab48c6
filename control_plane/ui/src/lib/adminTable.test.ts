import { describe, expect, it } from "vitest";
import { ApiError } from "../api/client";
import { listView, removeRow } from "./adminTable";

describe("admin table", () => {
  it("shows the first load, then the rows or the empty state, and keeps rows while reloading", () => {
    expect(listView({ loading: true })).toBe("loading");
    expect(listView({ loading: false })).toBe("none");
    expect(listView({ data: [], loading: false })).toBe("empty");
    expect(listView({ data: [1], loading: false })).toBe("rows");
    expect(listView({ data: [1], loading: true })).toBe("rows");
  });
  it("removes a row with the API's DELETE, then reloads", async () => {
    const calls: string[] = [];
    const error = await removeRow(
      async (path) => calls.push(`DELETE ${path}`),
      "/api/v1/teams/t1",
      () => calls.push("reload"),
    );
    expect(error).toBeNull();
    expect(calls).toEqual(["DELETE /api/v1/teams/t1", "reload"]);
  });
  it("keeps the API's refusal and does not reload", async () => {
    let reloads = 0;
    const refusal = new ApiError(403, "forbidden", "You may not delete teams", []);
    const error = await removeRow(
      async () => {
        throw refusal;
      },
      "/api/v1/teams/t1",
      () => reloads++,
    );
    expect(error).toBe(refusal);
    expect(reloads).toBe(0);
  });
  it("turns a thrown non-error into an error", async () => {
    const error = await removeRow(() => Promise.reject("offline"), "/x", () => undefined);
    expect(error?.message).toBe("offline");
  });
});

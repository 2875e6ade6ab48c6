import { describe, expect, it } from "vitest";
import {
  activeFilterCount,
  apiParams,
  checkFilters,
  emptyFilters,
  filtersFromSearch,
  filtersToSearch,
  reasonsOf,
} from "./decisions";

describe("decision filters", () => {
  it("round-trip through the page URL, dropping unknown outcomes and channels", () => {
    const search = new URLSearchParams("outcome=deny&principal=user:a@x.io&channel=smtp&decision=d1&junk=1");
    const filters = filtersFromSearch(search);
    expect(filters).toEqual({ ...emptyFilters, outcome: "deny", principal: "user:a@x.io" });
    expect(filtersToSearch(filters, search).toString()).toBe("outcome=deny&principal=user%3Aa%40x.io&decision=d1");
    expect(activeFilterCount(filters)).toBe(2);
  });

  it("become API parameters with RFC 3339 times", () => {
    const params = apiParams({ ...emptyFilters, action: " invoke ", since: "2026-11-26T10:30" });
    expect(params.action).toBe("invoke");
    expect(params.since).toBe(new Date("2026-11-26T10:30").toISOString());
    expect(params.until).toBeUndefined();
    expect(Object.keys(params)).toEqual(["action", "since"]);
  });

  it("name an inverted or unreadable time range before asking the server", () => {
    expect(checkFilters({ ...emptyFilters, since: "2026-11-26T10:30", until: "2026-11-25T10:30" })).toEqual([
      { field: "until", message: "must be after “From”" },
    ]);
    expect(checkFilters({ ...emptyFilters, since: "yesterday" })[0].field).toBe("since");
    expect(checkFilters(emptyFilters)).toEqual([]);
  });

  it("read reasons of any shape from a logged result", () => {
    expect(reasonsOf({ reasons: ["a", { rule: "b" }] })).toEqual(["a", '{"rule":"b"}']);
    expect(reasonsOf({})).toEqual([]);
  });
});

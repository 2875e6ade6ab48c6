// A session's device in words, from its User-Agent.
import type { SessionInfo } from "../api/types";

const BROWSERS: [RegExp, string][] = [
  [/Edg\//, "Edge"],
  [/OPR\//, "Opera"],
  [/Firefox\//, "Firefox"],
  [/(?:Chrome|Chromium|HeadlessChrome)\//, "Chrome"],
  [/Version\/[\d.]+.*Safari\//, "Safari"],
  [/python-httpx|python-requests|aiohttp/i, "a Python client"],
  [/curl\//, "curl"],
];
const SYSTEMS: [RegExp, string][] = [
  [/Windows/, "Windows"],
  [/iPhone|iPad/, "iOS"],
  [/Android/, "Android"],
  [/Mac OS X|Macintosh/, "macOS"],
  [/CrOS/, "ChromeOS"],
  [/Linux/, "Linux"],
];

export function describeDevice(userAgent: string | null | undefined): string {
  if (!userAgent) return "Unknown device";
  const browser = BROWSERS.find(([re]) => re.test(userAgent))?.[1];
  const system = SYSTEMS.find(([re]) => re.test(userAgent))?.[1];
  if (browser && system) return `${browser} on ${system}`;
  return browser ?? system ?? userAgent.slice(0, 60);
}

/** This session first, then the most recently active. */
export function orderSessions(sessions: readonly SessionInfo[]): SessionInfo[] {
  const seen = (s: SessionInfo) => new Date(s.last_seen_at ?? s.created_at).getTime();
  return [...sessions].sort((a, b) => Number(b.current) - Number(a.current) || seen(b) - seen(a));
}

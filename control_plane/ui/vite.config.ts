import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the API to a control plane on :8000 (`make up`).
const api = process.env.KAIZEN_API_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: Object.fromEntries(
      ["/api", "/healthz", "/.well-known"].map((path) => [path, { target: api, changeOrigin: false }]),
    ),
  },
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024 },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});

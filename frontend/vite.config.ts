// The page the walsh canister serves itself (canister/build.rs embeds dist/). The TypeScript
// bindings come from ../canister/walsh.did at build time (`npm run bindings`, @icp-sdk/bindgen).
import { defineConfig } from 'vite';

// `npm run dev` talks to a local replica through this proxy, so the page and the API share an
// origin as they do behind a gateway: open http://localhost:5173/?canisterId=<id>.
const replica = process.env.IC_HOST_URL ?? 'http://127.0.0.1:4943';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // One script and one stylesheet, no inline assets: the canister's CSP allows 'self' only.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
    reportCompressedSize: false,
  },
  server: {
    proxy: { '/api': { target: replica, changeOrigin: true } },
  },
});

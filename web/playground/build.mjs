// Bundles src/main.ts into dist/playground.js, the one built file the binary embeds
// (`include_str!` in src/routes/playground.rs), so `cargo build` needs no Node.
//
//   node build.mjs          write dist/playground.js
//   node build.mjs --check  build in memory; exit 1 if the committed file differs
//
// Readable output (not minified) so the committed file reviews like source. Paths in
// esbuild's comments are relative to this folder, so the output is the same wherever
// the checkout lives.
import { build } from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const target = `${here}dist/playground.js`;

const result = await build({
  absWorkingDir: here,
  entryPoints: ['src/main.ts'],
  bundle: true,
  format: 'iife',
  target: 'es2022',
  charset: 'utf8',
  legalComments: 'none',
  banner: { js: '// Built from web/playground/src by `npm run build` (in web/playground). Do not edit.' },
  write: false,
  logLevel: 'warning',
});
const built = result.outputFiles[0].text;

if (process.argv.includes('--check')) {
  let committed = '';
  try {
    committed = readFileSync(target, 'utf8');
  } catch {}
  if (committed !== built) {
    console.error('web/playground/dist/playground.js is out of date with web/playground/src: run `npm run build` in web/playground and commit the result');
    process.exit(1);
  }
  console.log('web/playground/dist/playground.js is up to date');
} else {
  writeFileSync(target, built);
  console.log(`wrote dist/playground.js (${built.length} bytes)`);
}

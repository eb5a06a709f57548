import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

/**
 * The server process runs plain JavaScript, as `hmc serve` does from `dist/`, not through the tsx
 * loader: tsx's loader thread alone adds ~35 MB of RSS, which would be charged to the server.
 * This is `tsc` without the type check (one file at a time), into `.bench/build/`, so it takes about
 * a second and does not touch `dist/`.
 */
export function compileServer(root = process.cwd()): string {
  const out = resolve(root, '.bench/build');
  const files = [...walk(join(root, 'src')), join(root, 'bench/server.ts')].filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.d.ts'));
  for (const file of files) {
    const js = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false },
    }).outputText;
    const dest = join(out, relative(root, file)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, js);
  }
  return join(out, 'bench/server.js');
}

function walk(dir: string, acc: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, acc);
    else acc.push(p);
  }
  return acc;
}

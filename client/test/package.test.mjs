// client/package.json: the folder and a packed tarball install with npm and
// import as an ES module with its types; the tarball holds only the library
// (movex.js, movex.d.ts, react.js, react.d.ts, package.json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLIENT = join(dirname(fileURLToPath(import.meta.url)), '..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const npm = (args, cwd) => execFileSync(NPM, [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', timeout: 120000 });

// An app that imports the package the way users do.
const APP = `
import { connect, checksum, pathsOf } from 'movexd-client';
const pkg = await import('movexd-client/package.json', { with: { type: 'json' } });
const react = import.meta.resolve('movexd-client/react');
console.log(JSON.stringify({
  connect: typeof connect, sum: checksum({}), paths: pathsOf({ type: 'patch', payload: [{ op: 'add', path: '/a/b', value: 1 }] }),
  name: pkg.default.name, react: react.endsWith('/react.js'),
}));
`;

function checkApp(dir) {
  writeFileSync(join(dir, 'app.mjs'), APP);
  const out = JSON.parse(execFileSync(process.execPath, ['app.mjs'], { cwd: dir, encoding: 'utf8' }));
  assert.deepEqual(out, { connect: 'function', sum: '4ccbe3a80f8112da36171794db81f2d5', paths: ['/a/b'], name: 'movexd-client', react: true });
  const installed = join(dir, 'node_modules', 'movexd-client');
  const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
  assert.equal(pkg.type, 'module');
  assert.ok(existsSync(join(installed, pkg.types)), 'the types file is there');
  assert.ok(existsSync(join(installed, 'react.d.ts')));
}

test('npm pack + npm install of the tarball: imports, types, only the library files', { timeout: 180000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'movex-pack-'));
  try {
    const packed = JSON.parse(npm(['pack', '--json', '--pack-destination', dir], CLIENT));
    const files = packed[0].files.map((f) => f.path).sort();
    assert.deepEqual(files, ['movex.d.ts', 'movex.js', 'package.json', 'react.d.ts', 'react.js']);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    npm(['install', join(dir, packed[0].filename)], dir);
    checkApp(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('npm install of the folder: imports the same way', { timeout: 180000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'movex-folder-'));
  try {
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    npm(['install', CLIENT], dir);
    checkApp(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

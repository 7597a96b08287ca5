// What the browser tests run against, all on 127.0.0.1 and all their own: a redis-server
// on a free port, the already built session-relay binary with a TOML configuration
// written here, and Debian's Chromium driven by playwright-core with a fresh profile.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = fileURLToPath(new URL('.', import.meta.url));
export const repo = join(here, '..', '..');
export const output = join(here, 'output');
mkdirSync(output, { recursive: true });

const binary = join(process.env.CARGO_TARGET_DIR ?? join(repo, 'target'), 'debug', 'session-relay');
const children = new Set();
process.on('exit', () => children.forEach((child) => child.kill('SIGKILL')));

export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function start(name, command, args, env = {}) {
  const log = openSync(join(output, `${name}.log`), 'w');
  const child = spawn(command, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', log, log] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return {
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sr-browser-redis-'));
  const process_ = start('redis', 'redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir]);
  await eventually('redis-server', () => new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => { socket.end(); resolve(true); });
    socket.on('error', () => resolve(false));
  }), 20_000);
  return { url: `redis://127.0.0.1:${port}`, stop: async () => { await process_.stop(); rmSync(dir, { recursive: true, force: true }); } };
}

/**
 * Starts the binary. `config` is TOML text (with `{port}` for the listen port) or `null`
 * for no configuration at all; `env` adds variables to an otherwise empty environment.
 */
export async function startService(name, config, env = {}) {
  const port = await freePort();
  const args = [];
  const fullEnv = { SESSION_RELAY_LOG_LEVEL: 'warn', ...env };
  if (config === null) {
    fullEnv.SESSION_RELAY_LISTEN = `127.0.0.1:${port}`;
  } else {
    const path = join(output, `${name}.toml`);
    writeFileSync(path, config.replaceAll('{port}', String(port)));
    args.push('--config', path);
  }
  const process_ = start(name, binary, args, fullEnv);
  const url = `http://127.0.0.1:${port}`;
  const up = await eventually(`session-relay (${name})`, async () => {
    if (process_.child.exitCode !== null) return 'exited';
    return (await fetch(`${url}/readyz`).catch(() => null))?.ok;
  }, 20_000);
  if (up === 'exited') throw new Error(`session-relay (${name}) exited at startup: see tests/browser/output/${name}.log`);
  return { url, stop: () => process_.stop() };
}

export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Chromium with a fresh profile; every page it opens fails the test on a script error or a CSP violation. */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'sr-browser-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_FLAGS,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
  });
  const problems = [];
  context.on('page', (page) => watch(page, problems));
  for (const page of context.pages()) watch(page, problems);
  return {
    context,
    problems,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

function watch(page, problems) {
  page.on('pageerror', (err) => problems.push(`script error: ${err.message}`));
  page.on('console', (message) => {
    if (message.text().includes('Content Security Policy')) problems.push(`CSP: ${message.text()}`);
  });
}

/** Polls `check` until it returns a truthy value (which is returned). */
export async function eventually(what, check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A JSON call to the service with an API key, for setting up what a test needs. */
export async function api(service, key, method, path, body) {
  const response = await fetch(`${service.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

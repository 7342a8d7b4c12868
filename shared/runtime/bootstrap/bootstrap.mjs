// ContainerPub bootstrap: runs one invocation of a Node handler and speaks the platform protocol.
//   stdin  : one JSON document (the event), closed after it
//   stdout : the JSON result as the last line (nothing else: everything the function prints goes to stderr)
//   exit   : 0 on success; 1 with the error message as the last line of stderr
// It lives at <root>/.containerpub/bootstrap.mjs beside entry.json ({"entry": "index.mjs"}).
// Plain JavaScript, no dependencies: it runs on the image's node, or as a child process of the runner.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);

// Before any user code runs: keep the real stdout for the result, send every print to stderr so a
// console.log in the handler can never corrupt (or masquerade as) the result line.
const stdout = process.stdout;
const writeResult = stdout.write.bind(stdout);
stdout.write = process.stderr.write.bind(process.stderr);

let finished = false;

function oneLine(text) {
  return String(text).replace(/\s*[\r\n]+\s*/g, ' ').trim() || 'error';
}

function messageOf(err) {
  if (err instanceof Error) return err.message || err.name || 'error';
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err) ?? String(err);
  } catch {
    return String(err);
  }
}

/** Leaves once stderr (and stdout) have flushed what was written before: writes complete in order. */
function exitAfterFlush(code) {
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stderr.write('', done);
  writeResult('', done);
}

function fail(err) {
  if (finished) return;
  finished = true;
  const stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : '';
  // The stack is for the logs; the platform reads the message from the last line.
  process.stderr.write(`${stack ? stack + '\n' : ''}${oneLine(messageOf(err))}\n`);
  exitAfterFlush(1);
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

// An orphan ends itself: when the platform process that started it dies (the process driver's
// runner killed hard), nobody will read the result or enforce the timeout any more.
const parent = process.ppid;
const watchdog = setInterval(() => {
  if (process.ppid !== parent) fail(new Error('the platform process that started this invocation is gone'));
}, 1000);
watchdog.unref();

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`the event is not valid JSON: ${messageOf(err)}`);
  }
}

function pickHandler(mod) {
  // ESM default export; CJS `module.exports = fn` (the default through import interop);
  // a named `handler` export (ESM, or CJS `exports.handler` seen as a named export or on default).
  for (const candidate of [mod.default, mod.handler, mod.default?.handler]) {
    if (typeof candidate === 'function') return candidate;
  }
  return null;
}

async function main() {
  const { entry } = JSON.parse(readFileSync(path.join(here, 'entry.json'), 'utf8'));
  if (typeof entry !== 'string' || entry === '') throw new Error('entry.json does not name an entry module');
  const event = await readStdin();
  const mod = await import(pathToFileURL(path.resolve(root, entry)).href);
  const handler = pickHandler(mod);
  if (!handler) {
    throw new Error(`${entry} does not export a handler function (export default, or export a function named handler)`);
  }
  const version = Number(process.env.CONTAINERPUB_VERSION);
  const context = {
    functionId: process.env.CONTAINERPUB_FUNCTION_ID ?? '',
    version: Number.isFinite(version) ? version : 0,
    deploymentId: process.env.CONTAINERPUB_DEPLOYMENT_ID ?? '',
    requestId: process.env.CONTAINERPUB_REQUEST_ID ?? '',
  };
  // A handler whose promise never settles and leaves nothing pending would let node exit quietly
  // with code 0 and no result; keep the loop alive so it ends as a timeout, like any hung handler.
  watchdog.ref();
  let result;
  try {
    result = await handler(event, context);
  } finally {
    watchdog.unref();
  }
  let text;
  try {
    text = JSON.stringify(result ?? null);
  } catch (err) {
    throw new Error(`the handler's result is not JSON-serializable: ${messageOf(err)}`);
  }
  if (text === undefined) throw new Error(`the handler's result is not JSON-serializable (a ${typeof result})`);
  if (finished) return;
  finished = true;
  writeResult(text + '\n');
  exitAfterFlush(0);
}

main().catch(fail);

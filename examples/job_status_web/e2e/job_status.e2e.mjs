// End-to-end test of job_status_web in a real browser: Debian's headless Chromium driven by
// playwright-core (no browser download: executablePath is the system's chromium). It opens the
// page, clicks the button, watches the bar move through intermediate values to 100 %, reads
// the result, then runs a failing job and reads its error; screenshots of both go to --out.
//
//   node job_status.e2e.mjs --url http://127.0.0.1:PORT/ --out DIR [--chromium /usr/bin/chromium]
//
// The server must run with its defaults (10 steps of 100 ms): the expected texts follow them.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    out: { type: 'string', default: '.' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
if (!opts.url) {
  console.error('usage: node job_status.e2e.mjs --url http://127.0.0.1:PORT/ --out DIR');
  process.exit(2);
}
const base = new URL(opts.url);

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} - ${what}`);
  if (!ok) failures++;
}
async function stats() {
  const res = await fetch(new URL('/stats', base));
  return res.json();
}
async function waitFor(what, fn, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise(r => setTimeout(r, 50));
  }
}

// The expected checksum of a 10-step report: row r is worth r % 97, 100 rows a step.
let total = 0;
for (let r = 0; r < 1000; r++) total += r % 97;

const userDataDir = mkdtempSync(join(tmpdir(), 'job_status_web_chromium.'));
let context;
try {
  // A persistent context is how Playwright takes a --user-data-dir: a fresh one per run.
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: opts.chromium,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 900, height: 600 },
    timeout: 60000,
  });
  const page = context.pages()[0] ?? await context.newPage();
  const pageErrors = [];
  page.on('pageerror', e => pageErrors.push(String(e)));
  page.on('console', m => { if (m.type() === 'error') pageErrors.push(m.text()); });

  // --- the page loads -----------------------------------------------------------------------
  const resp = await page.goto(base.href, { waitUntil: 'load' });
  check(resp && resp.status() === 200, `GET / answers 200 (${resp && resp.status()})`);
  check(await page.title() === 'courier: live job status', 'the page has its title');
  const bar = page.locator('#bar');
  check(await bar.getAttribute('aria-valuenow') === '0', 'the bar starts at 0');

  // --- a job that succeeds: the bar moves live, reaches 100 %, the result shows ------------
  // Record every value the bar takes, as the browser renders it.
  await page.evaluate(() => {
    window.__seen = [];
    const el = document.getElementById('bar');
    new MutationObserver(() => window.__seen.push(Number(el.getAttribute('aria-valuenow'))))
      .observe(el, { attributes: true, attributeFilter: ['aria-valuenow'] });
  });
  await page.getByRole('button', { name: 'Generate report', exact: true }).click();
  await page.waitForFunction(() => document.getElementById('bar').getAttribute('aria-valuenow') === '100' &&
                                   document.getElementById('result').className === 'ok', null, { timeout: 20000 });
  const seen = await page.evaluate(() => window.__seen);
  const increasing = seen.every((v, i) => i === 0 || v >= seen[i - 1]);
  check(seen.filter(v => v > 0 && v < 100).length >= 3 && increasing && seen.at(-1) === 100,
        `the bar went up live, step by step, to 100 (${seen.join(' ')})`);
  check(await page.locator('#percent').textContent() === '100 %', 'the label says 100 %');
  const resultText = await page.locator('#result').textContent();
  check(resultText === `Result: 1000 rows, total ${total}`, `the result is shown (${resultText})`);
  check(await bar.getAttribute('data-state') === 'completed', 'the bar turns to its completed colour');
  check(/^job [0-9a-f-]{36}$/.test(await page.locator('#job').textContent()), 'the job id is shown');
  check(await page.getByRole('button', { name: 'Generate report', exact: true }).isEnabled(), 'the buttons are enabled again');
  await page.screenshot({ path: join(opts.out, 'job_status_done.png'), fullPage: true });
  // The page closed its EventSource on `done`, and the server cleaned up after it.
  await waitFor('the SSE stream to be closed', async () => { const s = await stats(); return s.sse_streams === 0 && s.watchers === 0; });
  check(true, 'the server has no SSE stream or watcher left after done');

  // --- a job that fails: the error text shows --------------------------------------------------
  await page.getByRole('button', { name: 'Generate a failing report' }).click();
  await page.waitForFunction(() => document.getElementById('result').className === 'error', null, { timeout: 20000 });
  const errorText = await page.locator('#result').textContent();
  check(errorText.startsWith('Job failed: [courier.example.report_failed] step 5 of 10 failed'),
        `the failing job's error is shown (${errorText})`);
  check(await bar.getAttribute('data-state') === 'error', 'the bar turns to its error colour');
  const failedAt = Number(await bar.getAttribute('aria-valuenow'));
  check(failedAt === 40, `the bar stops where the job failed (40, got ${failedAt})`);
  check(await page.locator('#status').textContent() === 'dead', 'the status says the job is dead (dead-letter store)');
  await page.screenshot({ path: join(opts.out, 'job_status_error.png'), fullPage: true });
  await waitFor('the SSE stream to be closed', async () => { const s = await stats(); return s.sse_streams === 0 && s.watchers === 0; });
  check(true, 'the server has no SSE stream or watcher left after error');

  // --- a second successful run in the same page works too ----------------------------------------
  await page.getByRole('button', { name: 'Generate report', exact: true }).click();
  await page.waitForFunction(() => document.getElementById('result').className === 'ok', null, { timeout: 20000 });
  check(await page.locator('#result').textContent() === `Result: 1000 rows, total ${total}`, 'a second run completes as well');

  check(pageErrors.length === 0, `no JavaScript errors on the page${pageErrors.length ? ': ' + pageErrors.join('; ') : ''}`);
  const s = await stats();
  check(s.jobs_tracked === 3 && s.queue.completed === 2 && s.queue.dead === 1,
        `the server ran exactly these 3 jobs (2 completed, 1 dead): ${JSON.stringify(s.queue)}`);
} catch (e) {
  check(false, `the browser test ran to its end: ${e.stack || e}`);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
console.log(failures ? `# ${failures} check(s) failed` : '# all browser checks passed');
process.exit(failures ? 1 : 0);

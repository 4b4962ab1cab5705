import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import t from 'tap';
import { issueToken } from '../../src/security/tokens.js';
import { openDatabase } from '../../src/store/database.js';
import { TokenRepository } from '../../src/store/token-repository.js';
import { freePort } from '../helpers/pki.js';
import { DaemonProcess, makeSandbox, REPO_ROOT } from '../helpers/sandbox.js';

/** Debian's chromium; setup.sh installs it. */
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT_DIR = join(REPO_ROOT, 'test-output');

t.test(
  'Swagger UI at /docs lists the lifecycle and "Try it out" on GET /containers answers 200',
  async (t) => {
    const sandbox = makeSandbox(t, 'docs');
    const db = openDatabase(join(sandbox.stateDir, 'runcd.db'));
    const token = issueToken(new TokenRepository(db), 'browser', 'read');
    db.close();
    const port = await freePort();
    const daemon = new DaemonProcess(sandbox, ['--tcp', `127.0.0.1:${port}`]);
    t.teardown(() => daemon.close());
    await daemon.start();
    // Something for the list to show.
    const id = sandbox.id('shown');
    t.equal(
      (await daemon.request('POST', '/containers', { id, bundle: sandbox.bundle('sleeper') })).status,
      201,
    );

    const profile = mkdtempSync(join(sandbox.dir, 'chromium-'));
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
        '--disable-sync',
      ],
    });
    t.teardown(async () => {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    });
    const page = browser.pages()[0] ?? (await browser.newPage());
    const seen: Array<{ url: string; status: number }> = [];
    page.on('response', (response) => seen.push({ url: response.url(), status: response.status() }));

    await page.goto(`http://127.0.0.1:${port}/docs`);
    await page.locator('.opblock').first().waitFor({ timeout: 60_000 });
    const operations = await page.$$eval('.opblock', (blocks) =>
      blocks.map((block) => {
        const method = block.querySelector('.opblock-summary-method')?.textContent ?? '';
        const path = block.querySelector('[data-path]')?.getAttribute('data-path') ?? '';
        return `${method} ${path}`;
      }),
    );
    for (const operation of [
      'POST /containers',
      'GET /containers',
      'GET /containers/{id}',
      'POST /containers/{id}/start',
      'POST /containers/{id}/exec',
      'POST /containers/{id}/kill',
      'DELETE /containers/{id}',
      'POST /containers/{id}/stop',
      'POST /containers/{id}/wait',
      'GET /containers/{id}/logs',
      'GET /events',
    ]) {
      t.ok(operations.includes(operation), `${operation} is listed`);
    }

    // The request body examples are offered by name.
    await page.locator('#operations-containers-createContainer .opblock-summary').click();
    const bodyExamples = page
      .locator(
        '#operations-containers-createContainer .body-param-options select, #operations-containers-createContainer .examples-select select',
      )
      .first();
    await bodyExamples.waitFor();
    t.match(await bodyExamples.innerText(), /runc create/, 'createContainer offers its named examples');

    // Authorize with a read token, as a person would paste it.
    await page.locator('.btn.authorize').first().click();
    await page.locator('.modal-ux input[type=text], .modal-ux input[type=password]').first().fill(token);
    await page.locator('.modal-ux .auth-btn-wrapper .authorize').click();
    await page.locator('.modal-ux .btn-done').click();

    const list = page.locator('#operations-containers-listContainers');
    await list.locator('.opblock-summary').click();
    await list.locator('.try-out__btn').click();
    await list.locator('.execute').click();
    const status = list.locator('.live-responses-table tbody .response-col_status').first();
    await status.waitFor({ timeout: 30_000 });
    t.equal((await status.innerText()).trim(), '200', 'Execute on GET /containers shows 200');
    t.match(
      await list.locator('.live-responses-table .microlight').first().innerText(),
      id,
      'with the container in it',
    );
    t.ok(
      seen.some(({ url, status }) => url === `http://127.0.0.1:${port}/containers` && status === 200),
      'the browser itself made the request',
    );

    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    const screenshot = join(SCREENSHOT_DIR, 'docs-try-it-out.png');
    await list.scrollIntoViewIfNeeded();
    await page.screenshot({ path: screenshot, fullPage: true });
    await list.screenshot({ path: join(SCREENSHOT_DIR, 'docs-list-containers.png') });
    t.pass(`screenshots saved to ${SCREENSHOT_DIR}`);
  },
);

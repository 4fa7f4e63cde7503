// Drives real VS Code (code-server) in Debian's headless Chromium with playwright-core, for
// tests/e2e/test_vscode_e2e.py. Parameters come as JSON in QUILL_E2E_PARAMS:
//   url, fileName, typeText, statsFile, out (result JSON), screenshot (suggestion, on success),
//   failureScreenshot, chromium, tag (marks the browser's command line), timeoutMs.
// It opens the file, goes to its end, types, waits for ghost text, reads it, takes a screenshot,
// accepts it with Tab, saves, runs "Quill: Show Stats" and waits for the stats file.
import * as fs from 'node:fs';
import { chromium } from 'playwright-core';

const params = JSON.parse(process.env.QUILL_E2E_PARAMS ?? '{}');
const timeout = params.timeoutMs ?? 60000;
const result = { error: null, ghostText: null, stats: null, notifications: [], timings: {} };
const t0 = Date.now();
const mark = (name) => {
  result.timings[name] = (Date.now() - t0) / 1000;
};

async function notifications(page) {
  return page
    .locator('.notification-toast .notification-list-item-message')
    .allTextContents()
    .catch(() => []);
}

async function waitForFile(path, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fs.existsSync(path) && fs.statSync(path).size > 0) {
      return JSON.parse(fs.readFileSync(path, 'utf8'));
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`no ${path} after ${ms} ms`);
}

async function runCommand(page, title) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout });
  await input.fill(`>${title}`);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ timeout });
  await page.keyboard.press('Enter');
}

const browser = await chromium.launch({
  executablePath: params.chromium ?? '/usr/bin/chromium',
  headless: true,
  timeout,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-quic',
    '--no-first-run',
    '--disable-component-update',
    '--disable-sync',
    `--quill-e2e-tag=${params.tag ?? 'none'}`,
  ],
});
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 720 } });
  page = await context.newPage();
  page.setDefaultTimeout(timeout);
  await page.goto(params.url, { timeout });
  await page.locator('.monaco-workbench').waitFor({ timeout });
  mark('workbench');

  // The extension activates on startup; its status bar item says when the client runs.
  const status = page.locator('.statusbar-item', { hasText: 'Quill' }).first();
  await status.waitFor({ timeout });
  await page
    .locator('.statusbar-item[aria-label*="Quill"] .codicon-check, .statusbar-item .codicon-check')
    .first()
    .waitFor({ timeout })
    .catch(() => {});
  mark('extension');

  await page.keyboard.press('Control+P');
  const quickOpen = page.locator('.quick-input-widget input');
  await quickOpen.waitFor({ state: 'visible', timeout });
  await quickOpen.fill(params.fileName);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: params.fileName }).first().waitFor({ timeout });
  await page.keyboard.press('Enter');
  const editor = page.locator('.editor-instance .monaco-editor').first();
  await editor.waitFor({ timeout });
  await page.locator('.tab.active', { hasText: params.fileName }).waitFor({ timeout });
  await editor.locator('.view-lines').click();
  await page.keyboard.press('Control+End');
  mark('opened');

  await page.keyboard.type(params.typeText, { delay: 40 });
  mark('typed');
  const ghost = page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text-decoration-preview');
  try {
    await ghost.first().waitFor({ state: 'visible', timeout: timeout / 2 });
  } catch {
    // No automatic request reached the screen: trigger one explicitly (Alt+\).
    await page.keyboard.press('Alt+Backslash');
    await ghost.first().waitFor({ state: 'visible', timeout: timeout / 2 });
  }
  mark('ghostText');
  const parts = await ghost.allTextContents();
  result.ghostText = parts.join('').replace(/\u00a0/g, ' ');
  if (params.screenshot) {
    await page.screenshot({ path: params.screenshot });
  }

  await page.keyboard.press('Tab');
  await ghost.first().waitFor({ state: 'detached', timeout }).catch(() => {});
  await page.keyboard.press('Control+S');
  await page.locator('.tab.active.dirty').waitFor({ state: 'detached', timeout });
  mark('saved');

  await runCommand(page, 'Quill: Show Stats');
  result.stats = await waitForFile(params.statsFile, timeout);
  mark('stats');
  result.notifications = await notifications(page);
} catch (error) {
  result.error = String(error?.stack ?? error);
  if (page) {
    result.notifications = await notifications(page);
    if (params.failureScreenshot) {
      await page.screenshot({ path: params.failureScreenshot }).catch(() => {});
    }
  }
} finally {
  fs.writeFileSync(params.out, JSON.stringify(result, null, 2));
  await browser.close().catch(() => {});
}
process.exit(result.error === null ? 0 : 1);

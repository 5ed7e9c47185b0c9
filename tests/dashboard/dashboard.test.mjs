// Drives `qtask dashboard` in Debian's chromium, headless, with playwright-core.
// run.sh starts the dashboard on a seeded table and passes:
//   QTASK_DASHBOARD_URL  where it listens
//   QTASK_FAILED_ID      the id of a failed task on queue ORDER:BIND
//   QTASK_SCREENSHOTS    the folder for screenshots (docs/)
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const url = process.env.QTASK_DASHBOARD_URL;
const failedId = process.env.QTASK_FAILED_ID;
const shots = process.env.QTASK_SCREENSHOTS;

test("retry a failed task, pause and resume its queue, from the dashboard", async () => {
  assert.ok(url && failedId && shots, "run through tests/dashboard/run.sh");
  const browser = await chromium.launch({
    executablePath: process.env.QTASK_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const problems = [];
    page.on("pageerror", (err) => problems.push(String(err)));
    page.on("console", (msg) => { if (msg.type() === "error") problems.push(msg.text()); });

    await page.goto(url);
    await page.locator('body[data-loaded="1"]').waitFor();
    const row = page.locator(`#task-${failedId}`);
    await row.waitFor();
    assert.equal(await row.getAttribute("data-status"), "failed");
    assert.match(await row.locator("td.err").innerText(), /bank API answered 503/);
    const queue = page.locator('tr[data-queue="ORDER:BIND"]');
    assert.equal(await queue.locator("td").nth(5).innerText(), "3", "three failed on ORDER:BIND");
    await page.screenshot({ path: `${shots}/dashboard.png`, fullPage: true });

    // Retry: the task leaves the failed list and shows up waiting, its last error kept.
    await row.locator("button.retry").click();
    await row.waitFor({ state: "detached" });
    assert.equal(await queue.locator("td").nth(5).innerText(), "2");
    await page.selectOption("#status-filter", "waiting");
    const retried = page.locator(`#task-${failedId}[data-status="waiting"]`);
    await retried.waitFor();
    assert.match(await retried.locator("td.err").innerText(), /bank API answered 503/);
    await retried.click();
    await page.locator("#detail:not([hidden])").waitFor();
    const detail = JSON.parse(await page.locator("#detail-body").innerText());
    assert.equal(detail.status, "waiting");
    assert.equal(detail.max_count, 2, "a fresh attempt, attempts never go down");

    // Pause and resume the queue.
    await queue.locator("button").click();
    await queue.locator("span.badge.paused").waitFor();
    assert.equal(await queue.locator("button").innerText(), "resume");
    await page.screenshot({ path: `${shots}/dashboard-paused.png`, fullPage: true });
    await queue.locator("button").click();
    await queue.locator("button", { hasText: "pause" }).waitFor();

    assert.deepEqual(problems, [], "no script errors in the page");
  } finally {
    await browser.close();
  }
});

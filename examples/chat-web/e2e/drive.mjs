// Drives the chat page in headless Chromium (Debian's, no download):
// waits for it to connect, posts a message, waits for it to come back and
// for a message posted by a native client, takes a screenshot, and closes
// the page. Run by examples/tests/chat_browser.rs:
//
//   node drive.mjs PAGE_URL SCREENSHOT.png
//
// Every wait is bounded (60 s); any failure exits non-zero with the page's
// console output above it.
import { chromium } from "playwright-core";

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node drive.mjs PAGE_URL SCREENSHOT.png");
  process.exit(2);
}
const WAIT = { timeout: 60_000 };
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.log(`page console: ${m.text()}`));
  // A Rust panic in the page aborts its wasm instance: nothing will
  // happen after it, so stop at once with what the page said.
  page.on("pageerror", (e) => {
    console.log(`page error: ${e.message}`);
    process.exit(1);
  });
  await page.goto(url);

  const status = page.locator("#status[data-state]");
  await status.waitFor(WAIT);
  const state = await status.getAttribute("data-state");
  if (state !== "connected") {
    throw new Error(`page did not connect: ${await status.textContent()}`);
  }
  console.log("connected");

  await page.fill("#text", "hello from the browser");
  await page.click("#send");
  // The page shows its own message when the server calls its listener.
  await page.locator("#log li", { hasText: "hello from the browser" }).waitFor(WAIT);
  console.log("posted");

  await page.locator("#log li", { hasText: "hello from a terminal" }).waitFor(WAIT);
  console.log("received");

  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot ${shot}`);
  await page.close();
  console.log("closed");
} finally {
  await browser.close();
}

// End-to-end test of the dashboard in headless Chromium (playwright-core, plain
// node; run by tests/cli_dashboard.sh). 1) `federate run --dashboard` on a free
// port: the accuracy curve gains points as rounds finish, the Prometheus text
// follows, a past run's page renders. 2) `federate dashboard`: the form refuses a
// bad value naming the key, starts a run, and the page follows it to the end.
// Usage: node dashboard.spec.js --bin FEDERATE --dir WORKDIR [--screenshot OUT.png]
"use strict";
const {spawn, spawnSync} = require("child_process");
const fs = require("fs");
const path = require("path");
const {chromium} = require("playwright-core");

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
const BIN = args.bin, DIR = args.dir, SHOT = args.screenshot;
if (!BIN || !DIR) { console.error("usage: node dashboard.spec.js --bin FEDERATE --dir WORKDIR [--screenshot OUT.png]"); process.exit(2); }
const DB = path.join(DIR, "dash.db");
const children = [];

function fail(msg) { throw new Error(msg); }
function log(msg) { console.log(`[${(process.uptime()).toFixed(1)}s] ${msg}`); }

// Starts a federate process and resolves with the dashboard URL it prints.
function startServer(argv, stream) {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, argv, {cwd: DIR, stdio: ["ignore", "pipe", "pipe"]});
    children.push(p);
    let out = "", done = false;
    const onData = d => {
      out += d;
      const m = out.match(/dashboard: (http:\/\/[^\s]+)/);
      if (m && !done) { done = true; resolve({proc: p, url: m[1], output: () => out}); }
    };
    p.stdout.on("data", onData);
    p.stderr.on("data", onData);
    p.on("exit", code => { if (!done) reject(new Error(`${argv.join(" ")} exited with ${code} before serving:\n${out}`)); });
    setTimeout(() => { if (!done) reject(new Error(`no dashboard URL from ${argv[0]} within 20 s:\n${out}`)); }, 20000);
    void stream;
  });
}

function stopServer(s) {
  return new Promise(resolve => {
    if (s.proc.exitCode !== null) return resolve(s.proc.exitCode);
    s.proc.on("exit", code => resolve(code));
    s.proc.kill("SIGINT");
  });
}

const points = page => page.$eval("#chart-acc", el => Number(el.dataset.points || 0)).catch(() => 0);

async function main() {
  fs.mkdirSync(DIR, {recursive: true});
  const base = ["seed: 1", "dataset: mnist", "model: mlp", "hidden: \"64\"", "batch_size: 20", "learning_rate: 0.1", "threads: 2"];
  fs.writeFileSync(path.join(DIR, "past.yaml"), ["name: past", ...base, "num_clients: 10", "clients_per_round: 4",
    "num_rounds: 3", "local_epochs: 1", "state_dir: state"].join("\n") + "\n");
  fs.writeFileSync(path.join(DIR, "live.yaml"), ["name: live-demo", ...base, "num_clients: 50", "clients_per_round: 10",
    "num_rounds: 15", "local_epochs: 20", "dropout_probability: 0.1", "state_dir: state", "privacy:", "  mode: dp-fedavg",
    "  noise_multiplier: 0.3", "  clip_norm: 1.0", "  target_epsilon: 100"].join("\n") + "\n");

  // a past run in the store
  const past = spawnSync(BIN, ["run", "past.yaml", "--db", DB], {cwd: DIR, encoding: "utf8"});
  if (past.status !== 0) fail(`past run failed:\n${past.stdout}${past.stderr}`);
  log("past run recorded");

  const browser = await chromium.launch({executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                                         args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]});
  const page = await browser.newPage({viewport: {width: 1280, height: 1000}});
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  // the form's refused value answers 400 on purpose; anything else is a bug
  page.on("console", m => { if (m.type() === "error" && !/status of 400/.test(m.text())) errors.push(m.text()); });

  // ---- 1. federate run --dashboard: the page follows the run -------------------------
  const run = await startServer(["run", "live.yaml", "--db", DB, "--dashboard", "127.0.0.1:0", "--dashboard-keep"]);
  log(`run serving at ${run.url}`);
  await page.goto(run.url + "#/live");
  await page.waitForSelector("#chart-acc canvas", {timeout: 20000});
  await page.waitForFunction(() => Number(document.querySelector("#chart-acc")?.dataset.points) >= 1, null, {timeout: 20000});
  const first = await points(page);
  log(`accuracy curve: ${first} point(s)`);
  if (first >= 15) fail("the run finished before the page saw it in progress (rounds too fast?)");
  await page.waitForFunction(n => Number(document.querySelector("#chart-acc")?.dataset.points) > n, first, {timeout: 20000});
  log(`accuracy curve: ${await points(page)} points`);
  await page.waitForFunction(() => Number(document.querySelector("#chart-acc")?.dataset.points) === 15, null, {timeout: 90000});
  await page.waitForFunction(() => document.querySelector("#run-status")?.textContent === "finished", null, {timeout: 10000});
  const title = await page.textContent("#run-title");
  if (!/live-demo/.test(title)) fail(`live page title: ${title}`);
  if (!(await page.isVisible("#chart-eps canvas"))) fail("no epsilon chart for a DP run with a budget");
  const clientsRows = await page.$$eval("#clients-table tr", r => r.length);
  if (clientsRows < 2) fail("no per-client rows for the last round");
  const partRows = await page.$$eval("#participation-table tr", r => r.length);
  if (partRows < 5) fail(`participation table too short: ${partRows}`);
  log(`live run finished on the page: ${clientsRows - 1} clients in the last round, ${partRows - 1} clients seen`);
  if (SHOT) {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({path: SHOT, fullPage: false});
    log(`screenshot: ${SHOT} (${fs.statSync(SHOT).size} bytes)`);
  }
  const metrics = await (await page.request.get(run.url + "metrics")).text();
  if (!/^federate_rounds_completed_total 15$/m.test(metrics)) fail(`metrics: ${metrics}`);
  if (!/^federate_epsilon [0-9.]+$/m.test(metrics)) fail("metrics lack epsilon");

  // a past run's page
  await page.goto(run.url + "#/runs");
  await page.waitForSelector("#runs-table");
  const runRows = await page.$$eval("#runs-table tr", r => r.length);
  if (runRows !== 3) fail(`runs table: ${runRows - 1} runs, expected 2`);
  await page.click("#runs-table a[href='#/runs/1']");
  await page.waitForFunction(() => Number(document.querySelector("#chart-acc")?.dataset.points) === 3, null, {timeout: 10000});
  await page.waitForFunction(() => /name: past/.test(document.querySelector("#config")?.textContent || ""), null, {timeout: 5000});
  const st = await page.textContent("#run-status");
  if (st !== "finished") fail(`past run status on its page: ${st}`);
  if (await page.isVisible("#stop-btn")) fail("stop button shown for a past run");
  log("past run page renders");
  await page.goto("about:blank");   // its polls would fail once the server is gone
  const rc1 = await stopServer(run);
  if (rc1 !== 0) fail(`federate run --dashboard exited with ${rc1}:\n${run.output()}`);

  // ---- 2. federate dashboard: the form starts a run -----------------------------------
  const dash = await startServer(["dashboard", "--db", DB, "--listen", "127.0.0.1:0"]);
  log(`dashboard serving at ${dash.url}`);
  await page.goto(dash.url + "#/new");
  await page.waitForSelector("#new-form");
  await page.fill("#f-name", "from-form");
  await page.fill("#f-num_clients", "10");
  await page.fill("#f-clients_per_round", "4");
  await page.fill("#f-hidden", "32");
  await page.fill("#f-num_rounds", "ten");
  await page.click("#start-btn");
  await page.waitForFunction(() => /num_rounds/.test(document.querySelector("#form-error")?.textContent || ""), null, {timeout: 5000});
  log(`bad value refused: ${await page.textContent("#form-error")}`);
  await page.fill("#f-num_rounds", "3");
  await page.selectOption("#f-strategy", "fedavgm");
  await page.click("#start-btn");
  await page.waitForFunction(() => location.hash === "#/live", null, {timeout: 5000});
  await page.waitForFunction(() => /from-form/.test(document.querySelector("#run-title")?.textContent || ""), null, {timeout: 20000});
  await page.waitForFunction(() => document.querySelector("#run-status")?.textContent === "finished", null, {timeout: 30000});
  const pf = await points(page);
  if (pf !== 3) fail(`the run started from the form shows ${pf} points, expected 3`);
  const cfgText = await page.textContent("#config");
  if (!/strategy: fedavgm/.test(cfgText)) fail("the form's strategy did not reach the run's config");
  log("run started from the form finished");
  const runs = await (await page.request.get(dash.url + "api/runs")).json();
  if (runs.length !== 3 || runs[0].name !== "from-form" || runs[0].status !== "finished") fail(`runs: ${JSON.stringify(runs)}`);
  await page.goto("about:blank");
  const rc2 = await stopServer(dash);
  if (rc2 !== 0) fail(`federate dashboard exited with ${rc2}`);
  await browser.close();
  if (errors.length) fail(`errors in the page:\n${errors.join("\n")}`);
  log("PASS");
}

main().then(() => process.exit(0), e => {
  console.error("FAIL: " + (e && e.stack || e));
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  process.exit(1);
});

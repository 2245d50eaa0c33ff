/* federate dashboard: a small single-page app over the server's JSON API.
 * Routes: #/live (the run in progress), #/runs (past runs), #/runs/ID (one
 * run), #/new (start a simulation). Charts with uPlot, embedded in the binary. */
"use strict";

const app = document.getElementById("app");
const POLL_MS = 1000;
let timer = null;          // the current view's polling timer
let charts = [];           // uPlot instances of the current view
let viewToken = 0;         // bumps on navigation so stale fetches are dropped

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
async function api(path, opts) {
  const r = await fetch(path, opts);
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || (r.status + " " + r.statusText));
  return body;
}
function fmtBytes(b) {
  if (b == null) return "–";
  if (b >= 1e9) return (b / 1e9).toFixed(2) + " GB";
  if (b >= 1e6) return (b / 1e6).toFixed(1) + " MB";
  return (b / 1e3).toFixed(1) + " kB";
}
const pct = v => v == null ? "–" : (100 * v).toFixed(2) + "%";
const num = (v, d = 4) => v == null ? "–" : Number(v).toFixed(d);

function clearView() {
  viewToken++;
  if (timer) clearTimeout(timer);
  timer = null;
  charts.forEach(c => c.destroy());
  charts = [];
}

function setNav(which) {
  for (const id of ["live", "runs", "new"])
    document.getElementById("nav-" + id).classList.toggle("active", id === which);
}

/* ---- live badge in the header ------------------------------------------------ */
function setBadge(l) {
  const b = document.getElementById("live-badge");
  if (l.active) {
    b.className = "badge " + l.status;
    b.textContent = `${l.status} · round ${l.round}/${l.num_rounds}` + (l.run_id ? ` · run ${l.run_id}` : "");
  } else {
    b.className = "badge idle";
    b.textContent = "no run in progress";
  }
}
async function pollBadge() {
  try { setBadge(await api("/api/live")); } catch (e) { /* the server went away; keep the last state */ }
  setTimeout(pollBadge, 2000);
}

/* ---- charts -------------------------------------------------------------------- */
const COLORS = ["#2f6fdf", "#e07b24", "#2b8a4b", "#c23b3b", "#7a4fd1", "#8891a5"];

function makeChart(el, title, yLabel, labels, opts = {}) {
  if (!window.uPlot) {
    el.innerHTML = `<h2>${esc(title)}</h2><p class="error">Charts are missing: this binary was built without uPlot. ` +
      `Run scripts/bootstrap.sh, then re-run cmake and rebuild.</p>`;
    return null;
  }
  const series = [{label: "round"}];
  labels.forEach((l, i) => series.push({
    label: l, stroke: opts.colors ? opts.colors[i] : COLORS[i % COLORS.length], width: 2,
    dash: opts.dash && opts.dash[i] ? [6, 4] : undefined,
    points: {show: !(opts.dash && opts.dash[i]), size: 5}, spanGaps: true,
  }));
  const width = Math.max(320, el.clientWidth - 4);
  const u = new uPlot({
    title, width, height: 210, series,
    // counts, bytes and epsilon read best from zero
    scales: {x: {time: false}, y: {range: opts.yRange || ((u, min, max) => [Math.min(0, min ?? 0), (max ?? 1) * 1.08 || 1])}},
    axes: [{label: "round", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]}, {label: yLabel, size: 60}],
    legend: {live: false},
  }, [[], ...labels.map(() => [])], el);
  charts.push(u);
  return u;
}

/* ---- a run's page ---------------------------------------------------------------- */
async function showRun(id, live) {
  clearView();
  const tok = viewToken;
  app.innerHTML = `
    <div class="card">
      <div class="row">
        <h1 id="run-title" style="margin:0">Run ${esc(id)}</h1>
        <span id="run-status" class="badge">…</span>
        <span id="run-rounds" class="muted"></span>
        <span style="margin-left:auto"></span>
        <button id="stop-btn" class="danger" style="display:none">Stop after this round</button>
      </div>
      <div class="progress" id="round-progress" style="display:none"><div style="width:0"></div></div>
      <div id="run-msg" class="muted"></div>
    </div>
    <div class="cards" id="stats"></div>
    <div class="grid">
      <div class="card chart" id="chart-acc" data-points="0"></div>
      <div class="card chart" id="chart-loss"></div>
      <div class="card chart" id="chart-clients"></div>
      <div class="card chart" id="chart-bytes"></div>
      <div class="card chart" id="chart-eps" style="display:none"></div>
    </div>
    <div class="two">
      <div class="card"><h2>Clients in round <select id="client-round"></select></h2><div id="round-clients"></div></div>
      <div class="card"><h2>Participation over the run</h2><div id="participation"></div></div>
    </div>
    <div class="card"><h2>Configuration</h2><pre class="cfg" id="config"></pre></div>`;
  const acc = makeChart(document.getElementById("chart-acc"), "Accuracy", "%", ["test accuracy", "local accuracy"], {yRange: [0, 100]});
  const loss = makeChart(document.getElementById("chart-loss"), "Loss", "loss", ["test loss", "train loss (mean)"]);
  const cl = makeChart(document.getElementById("chart-clients"), "Clients per round", "clients", ["selected", "finished", "dropped"],
                       {colors: ["#8891a5", "#2b8a4b", "#c23b3b"]});
  const by = makeChart(document.getElementById("chart-bytes"), "Bytes per round", "kB", ["up (all clients)", "down (all clients)"]);
  let eps = null, info = null, lastRounds = -1, chosenRound = null;

  const sel = document.getElementById("client-round");
  sel.addEventListener("change", () => { chosenRound = Number(sel.value); loadClients(); });
  document.getElementById("stop-btn").addEventListener("click", async () => {
    const btn = document.getElementById("stop-btn");
    btn.disabled = true;
    try { await api(`/api/runs/${id}/stop`, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}); }
    catch (e) { document.getElementById("run-msg").textContent = "stop: " + e.message; btn.disabled = false; }
  });

  async function loadClients() {
    const r = chosenRound;
    if (!r) return;
    const cs = await api(`/api/runs/${id}/clients?round=${r}`);
    if (tok !== viewToken) return;
    document.getElementById("round-clients").innerHTML = `<table id="clients-table"><tr><th>client</th><th class="num">examples</th>
      <th class="num">steps</th><th class="num">train loss</th><th class="num">local acc</th><th class="num">bytes up</th><th></th></tr>` +
      cs.map(c => `<tr class="${c.dropped ? "dropped" : ""}"><td>${c.client}</td><td class="num">${c.num_examples}</td>
      <td class="num">${c.steps}</td><td class="num">${num(c.train_loss)}</td><td class="num">${pct(c.local_accuracy)}</td>
      <td class="num">${fmtBytes(c.bytes_up)}</td><td>${c.dropped ? "dropped" : ""}</td></tr>`).join("") + "</table>";
  }

  async function loadParticipation(nrounds) {
    const ps = await api(`/api/runs/${id}/clients`);
    if (tok !== viewToken) return;
    ps.sort((a, b) => a.client - b.client);
    const scale = 120 / Math.max(1, nrounds);
    document.getElementById("participation").innerHTML = `<table id="participation-table"><tr><th>client</th><th>rounds selected (red: dropped)</th>
      <th class="num">selected</th><th class="num">dropped</th><th class="num">last local acc</th></tr>` +
      ps.map(p => `<tr><td>${p.client}</td><td><span class="bar" style="width:${(p.selected - p.dropped) * scale}px"></span><span class="bar drop"
      style="width:${p.dropped * scale}px"></span></td><td class="num">${p.selected}</td><td class="num">${p.dropped}</td>
      <td class="num">${pct(p.local_accuracy)}</td></tr>`).join("") + "</table>";
  }

  function stat(k, v, idAttr) { return `<div class="stat"${idAttr ? ` id="${idAttr}"` : ""}><div class="k">${esc(k)}</div><div class="v">${esc(v)}</div></div>`; }

  async function refresh() {
    try {
      const [i, rounds] = await Promise.all([api(`/api/runs/${id}`), api(`/api/runs/${id}/rounds`)]);
      if (tok !== viewToken) return;
      info = i;
      const lv = await api("/api/live");
      if (tok !== viewToken) return;
      setBadge(lv);
      const isLive = lv.active && lv.run_id === Number(id);
      document.getElementById("run-title").textContent = `Run ${id}: ${info.name}`;
      const st = document.getElementById("run-status");
      const status = isLive ? lv.status : info.status;
      st.textContent = status;
      st.className = "badge " + status;
      const nr = info.num_rounds || (lv && lv.num_rounds) || rounds.length;
      document.getElementById("run-rounds").textContent = `${rounds.length} / ${nr} rounds` +
        (info.started ? ` · started ${info.started}` : "") + (info.ended ? ` · ended ${info.ended}` : "");
      document.getElementById("stop-btn").style.display = isLive && lv.status === "running" && !lv.read_only ? "" : "none";
      const pr = document.getElementById("round-progress");
      if (isLive && lv.clients_total > 0) {
        pr.style.display = "";
        pr.firstElementChild.style.width = (100 * lv.clients_done / lv.clients_total) + "%";
        document.getElementById("run-msg").textContent = `round ${lv.round}: ${lv.clients_done}/${lv.clients_total} clients done`;
      } else {
        pr.style.display = "none";
        document.getElementById("run-msg").textContent = info.error ? "error: " + info.error : (info.budget || info.privacy || "");
      }

      if (rounds.length !== lastRounds) {
        lastRounds = rounds.length;
        const x = rounds.map(r => r.round);
        const p = a => a == null ? null : 100 * a;
        acc && acc.setData([x, rounds.map(r => p(r.test_accuracy)), rounds.map(r => p(r.local_accuracy))]);
        loss && loss.setData([x, rounds.map(r => r.test_loss), rounds.map(r => r.train_loss_mean)]);
        cl && cl.setData([x, rounds.map(r => r.selected), rounds.map(r => r.finished), rounds.map(r => r.dropped)]);
        by && by.setData([x, rounds.map(r => r.bytes_up / 1e3), rounds.map(r => r.bytes_down / 1e3)]);
        document.getElementById("chart-acc").dataset.points = String(rounds.filter(r => r.test_accuracy != null).length);
        const hasEps = rounds.some(r => r.epsilon != null);
        const budget = info.target_epsilon;
        if (hasEps || budget) {
          const el = document.getElementById("chart-eps");
          el.style.display = "";
          if (!eps) eps = makeChart(el, "Privacy spent" + (budget ? ` (budget ε = ${budget})` : ""), "ε",
                                    budget ? ["epsilon", "budget"] : ["epsilon"], {colors: ["#7a4fd1", "#c23b3b"], dash: [false, true]});
          const d = [x, rounds.map(r => r.epsilon)];
          if (budget) d.push(rounds.map(() => budget));
          eps && eps.setData(d);
        }
        const last = rounds[rounds.length - 1] || {};
        const lastEval = [...rounds].reverse().find(r => r.test_accuracy != null) || {};
        const up = rounds.reduce((s, r) => s + r.bytes_up, 0), down = rounds.reduce((s, r) => s + r.bytes_down, 0);
        const dropped = rounds.reduce((s, r) => s + r.dropped, 0), selected = rounds.reduce((s, r) => s + r.selected, 0);
        document.getElementById("stats").innerHTML =
          stat("test accuracy", pct(lastEval.test_accuracy), "stat-acc") + stat("test loss", num(lastEval.test_loss)) +
          stat("rounds", `${rounds.length} / ${nr}`, "stat-rounds") + stat("clients dropped", `${dropped} / ${selected}`) +
          stat("bytes up", fmtBytes(up)) + stat("bytes down", fmtBytes(down)) +
          (last.epsilon != null ? stat("epsilon spent", num(last.epsilon, 3) + (budget ? ` / ${budget}` : "")) : "") +
          (last.wall_s != null ? stat("last round", last.wall_s.toFixed(2) + " s") : "");
        // the round selector for the client table follows the newest round unless one was picked
        const follow = chosenRound == null || chosenRound === Number(sel.options[sel.options.length - 1]?.value);
        sel.innerHTML = x.map(r => `<option value="${r}">${r}</option>`).join("");
        if (x.length) {
          if (follow) chosenRound = x[x.length - 1];
          sel.value = String(chosenRound);
          await loadClients();
          await loadParticipation(x.length);
        }
        if (info.config_yaml != null) document.getElementById("config").textContent = info.config_yaml;
      }
      if (tok !== viewToken) return;
      if (isLive || status === "running") timer = setTimeout(refresh, POLL_MS);
    } catch (e) {
      if (tok !== viewToken) return;
      document.getElementById("run-msg").innerHTML = `<span class="error">${esc(e.message)}</span>`;
      if (live) timer = setTimeout(refresh, 2 * POLL_MS);
    }
  }
  await refresh();
}

/* ---- live: follow the run in progress --------------------------------------------- */
async function showLive() {
  clearView();
  setNav("live");
  const tok = viewToken;
  app.innerHTML = `<div class="card" id="live-wait"><p class="muted">Waiting for a run…</p></div>`;
  async function poll() {
    try {
      const l = await api("/api/live");
      if (tok !== viewToken) return;
      if (l.run_id) return showRun(l.run_id, true);
      const runs = await api("/api/runs");
      if (tok !== viewToken) return;
      document.getElementById("live-wait").innerHTML = l.active
        ? `<p>Starting “${esc(l.name)}”… (loading the data, building the federation)</p>`
        : (l.error ? `<p class="error">The last run failed: ${esc(l.error)}</p>` : "") +
          `<p>No run in progress. <a href="#/new">Start one</a>` +
          (runs.length ? `, or look at the latest, <a href="#/runs/${runs[0].id}">run ${runs[0].id}</a> (${esc(runs[0].name)}).` : ".") + `</p>`;
    } catch (e) {
      if (tok !== viewToken) return;
      document.getElementById("live-wait").innerHTML = `<p class="error">${esc(e.message)}</p>`;
    }
    timer = setTimeout(poll, POLL_MS);
  }
  await poll();
}

/* ---- past runs ------------------------------------------------------------------- */
async function showRuns() {
  clearView();
  setNav("runs");
  const tok = viewToken;
  const runs = await api("/api/runs");
  if (tok !== viewToken) return;
  app.innerHTML = `<h1>Runs</h1><div class="card">` + (runs.length ? `<table id="runs-table"><tr><th>id</th><th>name</th><th>status</th>
    <th>started</th><th>ended</th><th class="num">rounds</th><th class="num">final accuracy</th></tr>` +
    runs.map(r => `<tr><td><a href="#/runs/${r.id}">${r.id}</a></td><td><a href="#/runs/${r.id}">${esc(r.name)}</a></td>
    <td><span class="badge ${esc(r.status)}">${esc(r.status)}</span></td><td>${esc(r.started)}</td><td>${esc(r.ended || "")}</td>
    <td class="num">${r.rounds_done}</td><td class="num">${pct(r.final_accuracy)}</td></tr>`).join("") + "</table>"
    : `<p class="muted">No runs in this store yet. <a href="#/new">Start one</a>.</p>`) + "</div>";
}

/* ---- the form: start a simulation ------------------------------------------------- */
const FORM = [
  ["Experiment", [["name", "dashboard"], ["seed", 0]]],
  ["Data", [["dataset", "mnist"], ["data_distribution", "iid"], ["non_iid_alpha", 0.5]]],
  ["Federation", [["num_clients", 20], ["num_rounds", 5], ["clients_per_round", 5], ["dropout_probability", 0]]],
  ["Model and local training", [["model", "mlp"], ["hidden", "32"], ["local_epochs", 1], ["batch_size", 20], ["learning_rate", 0.1]]],
  ["Strategy", [["strategy", "fedavg"], ["server_lr", 1], ["server_momentum", 0.9], ["proximal_mu", 0.01]]],
  ["Privacy", [["privacy.mode", "none"], ["privacy.noise_multiplier", 1], ["privacy.clip_norm", 0], ["privacy.target_epsilon", 0]]],
  ["Compression", [["compression", ""]]],
];

async function showNew() {
  clearView();
  setNav("new");
  const tok = viewToken;
  const [keys, live] = await Promise.all([api("/api/config/keys"), api("/api/live")]);
  if (tok !== viewToken) return;
  const byName = Object.fromEntries(keys.map(k => [k.name, k]));
  const field = ([name, preset]) => {
    const k = byName[name];
    if (!k) return "";
    const help = esc(k.help || "");
    const id = "f-" + name.replace(".", "-");
    if (k.choices) {
      return `<label for="${id}" title="${help}">${esc(name)}</label><select id="${id}" name="${esc(name)}">` +
        k.choices.map(c => `<option${c === preset ? " selected" : ""}>${esc(c)}</option>`).join("") + "</select>";
    }
    if (k.type === "bool")
      return `<label for="${id}" title="${help}">${esc(name)}</label><select id="${id}" name="${esc(name)}"><option>false</option><option${preset ? " selected" : ""}>true</option></select>`;
    const ph = k.name === "compression" ? ` placeholder="e.g. topk:0.01,q8,zstd"` : "";
    return `<label for="${id}" title="${help}">${esc(name)}</label><input id="${id}" name="${esc(name)}" value="${esc(preset)}"${ph}>`;
  };
  app.innerHTML = `<h1>Start a simulation</h1>
    <div class="card">
      ${live.read_only ? `<p class="error">This dashboard is read-only.</p>` : ""}
      ${live.active ? `<p class="error">A run is in progress (<a href="#/live">see it</a>); stop it before starting another.</p>` : ""}
      <form class="cfg" id="new-form">` +
      FORM.map(([legend, fs]) => `<fieldset><legend>${esc(legend)}</legend>${fs.map(field).join("")}</fieldset>`).join("") +
      `</form>
      <div class="row" style="margin-top:12px"><button id="start-btn" ${live.read_only ? "disabled" : ""}>Start run</button>
      <span id="form-error" class="error"></span></div>
      <p class="muted">Any other key of docs/config.md keeps its default. Errors name the key.</p>
    </div>`;
  document.getElementById("start-btn").addEventListener("click", async () => {
    const cfg = {};
    for (const el of document.querySelectorAll("#new-form [name]")) {
      const k = byName[el.name], v = el.value.trim();
      if (v === "" && k.type !== "string") continue;
      cfg[el.name] = k.type === "int" || k.type === "u64" ? (/^-?\d+$/.test(v) ? Number(v) : v)
                   : k.type === "float" ? (isFinite(Number(v)) ? Number(v) : v)
                   : k.type === "bool" ? v === "true" : v;
    }
    const err = document.getElementById("form-error");
    err.textContent = "";
    try {
      await api("/api/runs", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(cfg)});
      location.hash = "#/live";
    } catch (e) {
      err.textContent = e.message;
    }
  });
}

/* ---- routing ---------------------------------------------------------------------- */
function route() {
  const h = location.hash || "#/live";
  let m;
  const run = async () => {
    if ((m = h.match(/^#\/runs\/(\d+)$/))) { setNav("runs"); return showRun(m[1], false); }
    if (h === "#/runs") return showRuns();
    if (h === "#/new") return showNew();
    return showLive();
  };
  run().catch(e => { app.innerHTML = `<div class="card error">${esc(e.message)}</div>`; });
}
window.addEventListener("hashchange", route);
window.addEventListener("resize", () => charts.forEach(c => c.setSize({width: Math.max(320, c.root.parentElement.clientWidth - 4), height: 210})));
route();
pollBadge();

/// The live page's HTML, CSS and JavaScript, written here and served by `serve` itself: no CDN,
/// no build step. The page holds no data; its script reads `/dashboard/data.json` every five
/// seconds and writes every value with `textContent`, so nothing from a job (an error message,
/// a payload's text) is ever parsed as HTML.
enum DashboardPage {
    /// The document's start and head, shared by the login form and the page.
    static func head(title: String, extra: String = "") -> String {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>upsert-worker · \(title)</title>
        <link rel="stylesheet" href="/dashboard/app.css">
        \(extra)
        </head>
        """
    }

    static func login(failed: Bool) -> String {
        """
        \(head(title: "log in"))
        <body class="login">
        <form method="post" action="/dashboard/login" class="card login-card">
        <h1>upsert-worker</h1>
        <p>The live queue page shows customer data. Enter the admin token (<code>UPSERT_ADMIN_TOKEN</code>).</p>
        \(failed ? #"<p class="error" id="login-error">That is not the admin token.</p>"# : "")
        <label for="token">Admin token</label>
        <input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
        <button type="submit" id="login">Log in</button>
        </form>
        </body>
        </html>
        """
    }

    /// `csrfToken` is hex digits only (an HMAC), safe inside the attribute.
    static func page(csrfToken: String) -> String {
        """
        \(head(title: "live queue", extra: """
            <meta name="csrf-token" content="\(csrfToken)">
            <script src="/dashboard/app.js" defer></script>
            """))
        <body>
        <header>
        <h1>upsert-worker <span>live queue</span></h1>
        <p id="status" class="status">loading…</p>
        <form method="post" action="/dashboard/logout"><button type="submit" class="quiet">Log out</button></form>
        </header>
        <main>
        <section class="card wide">
        <h2>Queues</h2>
        <table id="queues">
        <thead><tr><th>queue</th><th>ready</th><th>running</th><th>succeeded</th><th>failed</th><th>cancelled</th><th>oldest ready</th></tr></thead>
        <tbody></tbody>
        </table>
        <p class="empty" id="queues-empty" hidden>No jobs yet.</p>
        </section>
        <section class="card">
        <h2>Finished jobs per second</h2>
        <svg id="throughput" class="chart" viewBox="0 0 600 180" role="img" aria-label="finished jobs per second"></svg>
        <p class="note" id="throughput-note"></p>
        </section>
        <section class="card">
        <h2>p99 latency</h2>
        <svg id="latency" class="chart" viewBox="0 0 600 180" role="img" aria-label="99th percentile latency"></svg>
        <p class="note"><span class="key due"></span>due → finished <span class="key run"></span>claimed → finished <span id="latency-note"></span></p>
        </section>
        <section class="card">
        <h2>Errors by code</h2>
        <table id="errors"><thead><tr><th>code</th><th>jobs</th><th></th></tr></thead><tbody></tbody></table>
        <p class="empty" id="errors-empty" hidden>No failed jobs.</p>
        <p class="note">Among the latest 1,000 failed jobs of each queue.</p>
        </section>
        <section class="card">
        <h2>Waiting longest</h2>
        <table id="waiting"><thead><tr><th>job</th><th>queue</th><th>kind</th><th>waiting</th><th>attempts</th><th></th></tr></thead><tbody></tbody></table>
        <p class="empty" id="waiting-empty" hidden>No job is waiting.</p>
        </section>
        <section class="card wide">
        <h2>Latest failed jobs</h2>
        <table id="failed"><thead><tr><th>job</th><th>queue</th><th>kind</th><th>organization</th><th>attempts</th><th>failed</th><th>error</th><th></th></tr></thead><tbody></tbody></table>
        <p class="empty" id="failed-empty" hidden>No failed jobs.</p>
        </section>
        </main>
        </body>
        </html>
        """
    }

    static let style = """
        :root { --ink: #1d2430; --muted: #637083; --line: #e3e7ee; --bg: #f4f6f9; --card: #fff;
          --accent: #2463eb; --ok: #16a34a; --bad: #dc2626; --warn: #d97706; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
        header { display: flex; align-items: center; gap: 16px; padding: 12px 24px; background: #111827; color: #fff; }
        header h1 { font-size: 17px; margin: 0; font-weight: 600; }
        header h1 span { color: #9ca3af; font-weight: 400; margin-left: 6px; }
        header .status { margin: 0 0 0 auto; color: #cbd5e1; font-size: 13px; }
        header .status.stale { color: #fca5a5; }
        main { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; padding: 16px 24px 32px; }
        .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; min-width: 0; }
        .wide { grid-column: 1 / -1; }
        h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0 0 10px; }
        table { width: 100%; border-collapse: collapse; }
        th { text-align: left; font-weight: 500; color: var(--muted); font-size: 12px; border-bottom: 1px solid var(--line); padding: 4px 8px; }
        td { padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
        td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
        #queues td:not(:first-child), #queues th:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
        .failed-count { color: var(--bad); font-weight: 600; }
        .age-bad { color: var(--bad); font-weight: 600; }
        code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
        .code { display: inline-block; background: #fee2e2; color: #991b1b; border-radius: 4px; padding: 0 6px; font-family: ui-monospace, monospace; font-size: 12px; }
        .share { height: 8px; background: var(--bad); border-radius: 4px; opacity: .7; }
        #errors td:last-child { width: 45%; }
        details summary { cursor: pointer; color: var(--ink); }
        details pre { white-space: pre-wrap; word-break: break-word; background: #f8fafc; border: 1px solid var(--line); border-radius: 6px; padding: 8px; margin: 6px 0 0; max-height: 240px; overflow: auto; }
        button { font: inherit; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 6px; padding: 4px 12px; cursor: pointer; }
        button.danger { background: #fff; color: var(--bad); border-color: #fca5a5; }
        button.quiet { background: transparent; border-color: #4b5563; color: #e5e7eb; }
        button:disabled { opacity: .5; cursor: default; }
        .chart { width: 100%; height: 180px; display: block; }
        .chart .grid { stroke: var(--line); stroke-width: 1; }
        .chart .axis { fill: var(--muted); font-size: 11px; }
        .chart .bar { fill: var(--accent); opacity: .8; }
        .chart .due { stroke: var(--accent); fill: none; stroke-width: 2; }
        .chart .run { stroke: var(--warn); fill: none; stroke-width: 2; }
        .chart .due.dot { fill: var(--accent); } .chart .run.dot { fill: var(--warn); }
        .key { display: inline-block; width: 12px; height: 3px; vertical-align: middle; margin: 0 4px 0 10px; }
        .key.due { background: var(--accent); } .key.run { background: var(--warn); }
        .note, .empty { color: var(--muted); font-size: 12px; margin: 8px 0 0; }
        .toast { position: fixed; right: 24px; bottom: 24px; background: #111827; color: #fff; padding: 10px 14px; border-radius: 8px; }
        .toast.bad { background: var(--bad); }
        body.login { display: grid; place-items: center; min-height: 100vh; }
        .login-card { width: 360px; display: grid; gap: 10px; }
        .login-card h1 { margin: 0; font-size: 20px; }
        .login-card p { margin: 0; color: var(--muted); }
        .login-card input { font: inherit; padding: 8px; border: 1px solid var(--line); border-radius: 6px; }
        .error { color: var(--bad) !important; }
        @media (max-width: 900px) { main { grid-template-columns: 1fr; } }
        """

    static let script = #"""
        "use strict";
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const states = ["ready", "running", "succeeded", "failed", "cancelled"];
        const svgNS = "http://www.w3.org/2000/svg";
        let bucketSeconds = 20;
        const openErrors = new Set();

        function el(tag, text, cls) {
          const e = document.createElement(tag);
          if (text !== undefined && text !== null) e.textContent = String(text);
          if (cls) e.className = cls;
          return e;
        }
        function row(cells) {
          const tr = document.createElement("tr");
          for (const c of cells) { const td = document.createElement("td"); if (c instanceof Node) td.append(c); else td.textContent = c; tr.append(td); }
          return tr;
        }
        function fill(id, rows) {
          const body = document.querySelector("#" + id + " tbody");
          body.replaceChildren(...rows);
          const empty = document.getElementById(id + "-empty");
          if (empty) empty.hidden = rows.length > 0;
        }
        function duration(seconds) {
          if (seconds === null || seconds === undefined) return "–";
          if (seconds < 1) return Math.round(seconds * 1000) + " ms";
          if (seconds < 120) return seconds.toFixed(1) + " s";
          if (seconds < 7200) return Math.round(seconds / 60) + " min";
          return (seconds / 3600).toFixed(1) + " h";
        }
        function ago(iso, now) { return iso ? duration((now - Date.parse(iso)) / 1000) + " ago" : "–"; }
        function toast(text, bad) {
          const t = el("div", text, "toast" + (bad ? " bad" : ""));
          t.id = "toast";
          document.getElementById("toast")?.remove();
          document.body.append(t);
          setTimeout(() => t.remove(), 4000);
        }

        async function act(id, action, button) {
          button.disabled = true;
          try {
            const r = await fetch("/dashboard/jobs/" + id + "/" + action, {
              method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
            const body = await r.json().catch(() => ({}));
            if (r.ok) toast("Job " + id + " is " + body.state + " now");
            else toast(body.message || ("HTTP " + r.status), true);
          } catch (e) {
            toast("The action did not reach the server: " + e, true);
          }
          refresh();
        }
        function actionButton(id, action, label, cls) {
          const b = el("button", label, cls);
          b.dataset.job = id; b.dataset.action = action;
          b.addEventListener("click", () => act(id, action, b));
          return b;
        }

        function chart(svgId, points, lines, unit) {
          const svg = document.getElementById(svgId);
          const W = 600, H = 180, L = 46, B = 20, T = 8;
          const values = points.flatMap(p => lines.map(l => l.value(p)).filter(v => v !== null));
          const top = Math.max(unit === "s" ? 0.001 : 1, ...values) * 1.15;
          const x = i => L + (W - L - 4) * (i + 0.5) / points.length;
          const y = v => T + (H - T - B) * (1 - v / top);
          const children = [];
          for (const f of [0, 0.5, 1]) {
            const gy = y(top * f);
            const g = document.createElementNS(svgNS, "line");
            g.setAttribute("x1", L); g.setAttribute("x2", W); g.setAttribute("y1", gy); g.setAttribute("y2", gy);
            g.setAttribute("class", "grid"); children.push(g);
            const t = document.createElementNS(svgNS, "text");
            t.setAttribute("x", L - 6); t.setAttribute("y", gy + 4); t.setAttribute("text-anchor", "end"); t.setAttribute("class", "axis");
            t.textContent = unit === "s" ? duration(top * f) : (top * f >= 10 ? Math.round(top * f) : (top * f).toFixed(1));
            children.push(t);
          }
          for (const [i, label] of [[0, "-" + Math.round(points.length * bucketSeconds / 60) + " min"], [points.length - 1, "now"]]) {
            const t = document.createElementNS(svgNS, "text");
            t.setAttribute("x", x(i)); t.setAttribute("y", H - 4); t.setAttribute("text-anchor", i ? "end" : "start"); t.setAttribute("class", "axis");
            t.textContent = label; children.push(t);
          }
          for (const line of lines) {
            if (line.bars) {
              const w = Math.max(1, (W - L) / points.length - 2);
              points.forEach((p, i) => {
                const v = line.value(p); if (!v) return;
                const r = document.createElementNS(svgNS, "rect");
                r.setAttribute("x", x(i) - w / 2); r.setAttribute("width", w); r.setAttribute("y", y(v)); r.setAttribute("height", y(0) - y(v));
                r.setAttribute("class", "bar"); children.push(r);
              });
            } else {
              let d = "";
              points.forEach((p, i) => { const v = line.value(p); if (v === null) return; d += (d ? " L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1); });
              if (d) { const path = document.createElementNS(svgNS, "path"); path.setAttribute("d", d); path.setAttribute("class", line.cls); children.push(path); }
              points.forEach((p, i) => {
                const v = line.value(p); if (v === null) return;
                const dot = document.createElementNS(svgNS, "circle");
                dot.setAttribute("cx", x(i)); dot.setAttribute("cy", y(v)); dot.setAttribute("r", 2.5); dot.setAttribute("class", line.cls + " dot");
                children.push(dot);
              });
            }
          }
          svg.replaceChildren(...children);
        }

        function render(data) {
          const now = Date.parse(data.read_at);
          const queues = {};
          for (const c of data.counts) (queues[c.queue] ??= {})[c.state] = c.jobs;
          for (const q of Object.keys(data.oldest_ready_age_seconds)) queues[q] ??= {};
          fill("queues", Object.keys(queues).sort().map(q => {
            const cells = [el("strong", q)];
            for (const s of states) cells.push(el("span", (queues[q][s] ?? 0).toLocaleString("en"), s === "failed" && queues[q][s] ? "failed-count" : ""));
            const age = data.oldest_ready_age_seconds[q];
            cells.push(el("span", age === undefined ? "–" : duration(age), age > 300 ? "age-bad" : ""));
            const tr = row(cells); tr.dataset.queue = q; return tr;
          }));

          bucketSeconds = data.window.bucket_seconds;
          chart("throughput", data.series, [{ bars: true, value: p => p.finished / p.seconds }], "/s");
          const total = data.series.reduce((a, p) => a + p.finished, 0);
          document.getElementById("throughput-note").textContent =
            total.toLocaleString("en") + " jobs finished in the last " + Math.round(data.series.length * data.window.bucket_seconds / 60) +
            " minutes (" + data.window.bucket_seconds + " s bars).";
          chart("latency", data.series, [{ cls: "due", value: p => p.latency_p99 }, { cls: "run", value: p => p.run_p99 }], "s");
          document.getElementById("latency-note").textContent = "· of the latest " + data.window.sample + " jobs of each bar";

          const most = Math.max(1, ...data.top_error_codes.map(e => e.jobs));
          fill("errors", data.top_error_codes.map(e => {
            const bar = el("div", null, "share"); bar.style.width = Math.max(4, 100 * e.jobs / most) + "%";
            return row([el("span", e.code, "code"), e.jobs.toLocaleString("en"), bar]);
          }));

          fill("waiting", data.longest_waiting.map(j => {
            const tr = row([el("span", "#" + j.id, "mono"), j.queue, el("span", j.kind, "mono"), duration((now - Date.parse(j.at)) / 1000),
              j.attempts + " / " + j.max_attempts, actionButton(j.id, "cancel", "Cancel", "danger")]);
            tr.dataset.job = j.id; return tr;
          }));

          fill("failed", data.latest_failed.map(j => {
            const error = j.error || {};
            const details = el("details");
            // Stays open across the refreshes that rebuild the table.
            details.open = openErrors.has(j.id);
            details.addEventListener("toggle", () => details.open ? openErrors.add(j.id) : openErrors.delete(j.id));
            const summary = el("summary");
            summary.append(el("span", error.code ?? "unknown", "code"), " ", el("span", error.message ?? ""));
            details.append(summary, el("pre", JSON.stringify(error, null, 2)));
            const tr = row([el("span", "#" + j.id, "mono"), j.queue, el("span", j.kind, "mono"),
              el("span", j.client_id ? j.client_id.slice(0, 8) + "…" : "–", "mono"),
              j.attempts + " / " + j.max_attempts, ago(j.at, now), details, actionButton(j.id, "retry", "Retry")]);
            tr.dataset.job = j.id; return tr;
          }));
        }

        async function refresh() {
          const status = document.getElementById("status");
          try {
            const r = await fetch("/dashboard/data.json", { credentials: "same-origin", cache: "no-store" });
            if (r.status === 401) { location.reload(); return; }
            if (!r.ok) throw new Error("HTTP " + r.status);
            const data = await r.json();
            render(data);
            status.textContent = "updated " + new Date(data.read_at).toLocaleTimeString("en-GB") + " · every 5 s";
            status.className = "status";
            document.body.dataset.loaded = "true";
          } catch (e) {
            status.textContent = "not updated: " + e.message;
            status.className = "status stale";
          }
        }
        refresh();
        setInterval(refresh, 5000);
        """#
}

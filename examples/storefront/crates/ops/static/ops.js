// The ops page's figures, refreshed from /ops/data.json every second (no
// framework; a file of its own, as the Content-Security-Policy runs no inline script).
(function () {
  "use strict";
  var W = 120, H = 32, N = 60;
  function ratio(r) { return r === null || r === undefined ? "\u2013" : (r * 100).toFixed(1) + " %"; }
  var show = {
    rps: function (w) { return w.rps.toFixed(1); },
    p50_ms: function (w) { return w.p50_ms.toFixed(2) + " ms"; },
    p99_ms: function (w) { return w.p99_ms.toFixed(2) + " ms"; },
    db_qps: function (w) { return w.db_qps.toFixed(1); },
    l1_hit_ratio: function (w) { return ratio(w.l1_hit_ratio); },
    l2_hit_ratio: function (w) { return ratio(w.l2_hit_ratio); },
    primary_qps: function (w) { return ((w.split || {}).primary_qps || 0).toFixed(1); },
    replica_read_share: function (w) { return ratio((w.split || {}).replica_read_share); }
  };
  function val(p, k) { return k in p ? p[k] : (p.split || {})[k]; }
  function replicas(dbs, totals) {
    var box = document.getElementById("replicas");
    if (!dbs || !dbs.length) { box.textContent = ""; return; }
    box.textContent = "";
    box.appendChild(el("h2", "Read/write splitting"));
    var t = totals.reads || {};
    box.appendChild(el("p", "Reads on replicas " + t.replica_reads + " \u00b7 on the primary " + t.primary_reads +
      " \u00b7 writes on the primary " + t.primary_writes + " (since start)", "muted"));
    var table = el("table", undefined, "lines instances"), head = el("tr");
    ["Database", "Server", "State", "Lag", "WAL position", "Reads"].forEach(function (h) { head.appendChild(el("th", h)); });
    table.appendChild(head);
    dbs.forEach(function (d) {
      var rows = [[d.database, "primary", "writes", "", "\u2013", d.primary_lsn, d.primary_reads]];
      (d.replicas || []).forEach(function (r) {
        var c = { serving: "good", lagging: "warn", down: "bad" }[r.state] || "";
        rows.push([d.database, r.name, r.state, c, r.lag_ms + " ms", r.replayed_lsn, r.reads]);
      });
      rows.forEach(function (r) {
        var tr = el("tr");
        [0, 1].forEach(function (i) { tr.appendChild(el("td", String(r[i]))); });
        tr.appendChild(el("td", r[2], r[3]));
        [4, 5, 6].forEach(function (i) { tr.appendChild(el("td", String(r[i]))); });
        table.appendChild(tr);
      });
    });
    box.appendChild(table);
  }
  function shards(sh) {
    var box = document.getElementById("shards");
    box.textContent = "";
    if (!sh) return;
    box.appendChild(el("h2", "Shards"));
    box.appendChild(el("p", "Routing epoch " + sh.epoch + " \u00b7 resharding " + sh.phase +
      " \u00b7 orders copied " + sh.rows_copied + " \u00b7 moving slots " + (sh.moving_slots || []).length +
      (sh.error ? " \u00b7 " + sh.error : ""), "muted"));
    var table = el("table", undefined, "lines instances"), head = el("tr");
    ["Database", "State", "Orders", "Order lines"].forEach(function (h) { head.appendChild(el("th", h)); });
    table.appendChild(head);
    (sh.rows || []).forEach(function (r) {
      var tr = el("tr");
      [r.database, r.in_use ? "in use" : "spare", r.orders, r.order_items].forEach(function (v) { tr.appendChild(el("td", String(v))); });
      table.appendChild(tr);
    });
    box.appendChild(table);
  }
  function spark(values) {
    var max = Math.max.apply(null, [0].concat(values)), step = W / (N - 1), n = values.length;
    return values.map(function (v, i) {
      var y = max > 0 ? H - 1 - v / max * (H - 2) : H - 1;
      return (W - (n - 1 - i) * step).toFixed(1) + "," + y.toFixed(1);
    }).join(" ");
  }
  function uptime(secs) {
    var s = Math.floor(secs), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    if (h > 0) return h + " h " + m + " min";
    if (m > 0) return m + " min " + (s % 60) + " s";
    return s + " s";
  }
  function words(key, labels) {
    if (labels && labels[key]) return labels[key];
    var t = key.replace(/[_-]/g, " ");
    return t.charAt(0).toUpperCase() + t.slice(1);
  }
  function cell(key, v) {
    if (typeof v === "boolean") {
      if (key === "healthy") return [v ? "healthy" : "down", v ? "good" : "bad"];
      return [v ? "yes" : "no", ""];
    }
    if (v === null || v === undefined) return ["\u2013", ""];
    if (typeof v === "string") {
      var c = { closed: "good", up: "good", healthy: "good", open: "bad", down: "bad", unhealthy: "bad",
                "half-open": "warn", half_open: "warn", halfopen: "warn" }[v] || "";
      return [v, c];
    }
    return [typeof v === "object" ? JSON.stringify(v) : String(v), ""];
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  // A part of the stage (see storefront_contract::ops::parts): its totals as
  // figures, its instances as a table; labels and highlights from the page.
  function part(box, g) {
    box.textContent = "";
    if (!g) return;
    var labels = {}, highlight = (box.getAttribute("data-highlight") || "").split(";");
    (box.getAttribute("data-labels") || "").split(";").forEach(function (p) {
      var i = p.indexOf("=");
      if (i > 0) labels[p.slice(0, i)] = p.slice(i + 1);
    });
    box.appendChild(el("h2", box.getAttribute("data-title")));
    var figs = el("ul", undefined, "figures");
    Object.keys(g.totals || {}).forEach(function (k) {
      var li = el("li", undefined, "figure" + (highlight.indexOf(k) >= 0 ? " highlight" : ""));
      li.appendChild(el("span", words(k, labels), "label"));
      li.appendChild(el("span", cell(k, g.totals[k])[0], "value"));
      figs.appendChild(li);
    });
    box.appendChild(figs);
    var rows = (g.instances || []).filter(function (i) { return i && typeof i === "object"; });
    var cols = [];
    rows.forEach(function (i) { Object.keys(i).forEach(function (k) { if (cols.indexOf(k) < 0) cols.push(k); }); });
    var usual = ["name", "addr", "healthy", "breaker", "in_flight", "requests", "failures"];
    function rank(k) { var r = usual.indexOf(k); return r < 0 ? usual.length : r; }
    cols.sort(function (a, b) { return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0); });
    var table = el("table", undefined, "lines instances"), head = el("tr");
    cols.forEach(function (k) { head.appendChild(el("th", words(k))); });
    table.appendChild(head);
    rows.forEach(function (i) {
      var tr = el("tr");
      cols.forEach(function (k) { var c = cell(k, i[k]); tr.appendChild(el("td", c[0], c[1])); });
      table.appendChild(tr);
    });
    box.appendChild(table);
  }
  function refresh() {
    fetch("/ops/data.json", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (d) {
        document.getElementById("uptime").textContent = uptime(d.uptime_secs);
        document.querySelectorAll("[data-figure]").forEach(function (e) {
          var k = e.getAttribute("data-figure");
          if (show[k]) e.textContent = show[k](d.window);
        });
        document.querySelectorAll("[data-spark]").forEach(function (e) {
          var k = e.getAttribute("data-spark");
          e.setAttribute("points", spark(d.history.map(function (p) { return val(p, k) || 0; })));
        });
        document.querySelectorAll("[data-total]").forEach(function (e) {
          e.textContent = d.totals[e.getAttribute("data-total")];
        });
        document.querySelectorAll("[data-cache]").forEach(function (e) {
          var t = d.totals.cache[e.getAttribute("data-cache").toLowerCase()];
          if (t) e.textContent = t.hits + " / " + t.misses;
        });
        document.querySelectorAll("[data-faults]").forEach(function (e) {
          var f = d.totals.cache.l2_faults;
          if (f) e.textContent = f.errors + " / " + f.skipped;
        });
        var degraded = document.getElementById("degraded");
        degraded.hidden = !d.degraded;
        degraded.querySelector("[data-degraded]").textContent = d.degraded || "";
        document.querySelectorAll("[data-part]").forEach(function (box) {
          part(box, d[box.getAttribute("data-part")]);
        });
        replicas(d.replicas, d.totals);
        shards(d.shards);
        document.getElementById("live").textContent = "\u25cf live";
        document.getElementById("live").className = "live good";
      })
      .catch(function () {
        document.getElementById("live").textContent = "\u25cf not answering";
        document.getElementById("live").className = "live bad";
      });
  }
  setInterval(refresh, 1000);
  refresh();
})();

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
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  // A part of the stage, as /ops/parts.json draws it: figures, then a table.
  function part(box, g) {
    box.textContent = "";
    if (!g || (!g.figures.length && !g.rows.length)) return;
    box.appendChild(el("h2", g.title));
    var figs = el("ul", undefined, "figures");
    g.figures.forEach(function (f) {
      var li = el("li", undefined, "figure" + (f.class ? " " + f.class : ""));
      li.appendChild(el("span", f.label, "label"));
      li.appendChild(el("span", f.value, "value"));
      figs.appendChild(li);
    });
    box.appendChild(figs);
    var table = el("table", undefined, "lines instances"), head = el("tr");
    g.columns.forEach(function (c) { head.appendChild(el("th", c)); });
    table.appendChild(head);
    g.rows.forEach(function (row) {
      var tr = el("tr");
      row.forEach(function (c) { tr.appendChild(el("td", c.text, c.class)); });
      table.appendChild(tr);
    });
    box.appendChild(table);
  }
  function parts() {
    fetch("/ops/parts.json", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (list) {
        list.forEach(function (g) {
          var box = document.querySelector("[data-part=\"" + g.key + "\"]");
          if (box) part(box, g);
        });
      })
      .catch(function () {});
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
        var reads = d.totals.reads || {};
        document.querySelectorAll("[data-reads]").forEach(function (e) {
          e.textContent = reads.replica_reads + " / " + reads.primary_reads;
        });
        document.querySelectorAll("[data-writes]").forEach(function (e) {
          e.textContent = reads.primary_writes;
        });
        parts();
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

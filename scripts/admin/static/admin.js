// The dashboard's only script: the overview refreshes its figures and charts
// from /admin/overview.json every few seconds. Every page works without it.
(function () {
  "use strict";
  var PERIOD = 5000;
  var SVG = "http://www.w3.org/2000/svg";
  var status = document.getElementById("live-status");
  if (!status) return; // not the overview
  var last = null; // {processed, at} of the previous answer, for the rate

  function lookup(doc, path) {
    return path.split(".").reduce(function (v, k) { return v == null ? v : v[k]; }, doc);
  }

  // Redraws a chart's bars in the geometry the server uses (admin/overview.lua).
  function bars(svg, values) {
    var box = svg.viewBox.baseVal, top = Math.max(1, Math.max.apply(null, values));
    var w = box.width / values.length;
    svg.querySelectorAll("rect").forEach(function (r) { r.remove(); });
    values.forEach(function (v, i) {
      var h = v === 0 ? 0 : Math.max(1, v / top * (box.height - 2));
      var r = document.createElementNS(SVG, "rect");
      r.setAttribute("class", "bar");
      r.setAttribute("x", (i * w + 0.5).toFixed(2));
      r.setAttribute("width", (w - 1).toFixed(2));
      r.setAttribute("y", (box.height - h).toFixed(2));
      r.setAttribute("height", h.toFixed(2));
      var t = document.createElementNS(SVG, "title");
      t.textContent = String(v);
      r.appendChild(t);
      svg.appendChild(r);
    });
  }

  function show(doc) {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var v = lookup(doc, el.getAttribute("data-live"));
      el.textContent = v == null ? "0" : String(v);
    });
    document.querySelectorAll("svg[data-chart]").forEach(function (svg) {
      var values = doc[svg.getAttribute("data-chart")];
      if (Array.isArray(values)) bars(svg, values);
    });
    var rate = document.getElementById("job-rate");
    if (last && doc.at > last.at) {
      rate.textContent = ((doc.jobs.processed - last.processed) / (doc.at - last.at)).toFixed(1) + " jobs/s";
    } else if (!last) {
      rate.textContent = "measuring…";
    }
    last = { processed: doc.jobs.processed, at: doc.at };
    status.textContent = "Live: updated " + new Date().toLocaleTimeString() + ".";
  }

  function refresh() {
    fetch("/admin/overview.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        if (res.status === 401) { status.textContent = "Signed out: reload to sign in again."; return null; }
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json();
      })
      .then(function (doc) { if (doc) { show(doc); setTimeout(refresh, PERIOD); } })
      .catch(function (err) {
        status.textContent = "Live refresh paused (" + err.message + "); retrying.";
        setTimeout(refresh, PERIOD * 2);
      });
  }

  refresh();
})();

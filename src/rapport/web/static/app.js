// Rapport UI: the little JavaScript the pages need, no inline scripts (the CSP forbids them).
(function () {
  "use strict";

  // Every htmx request carries this session's CSRF token (web/security.py checks it).
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content");
  });

  var charts = new WeakMap();

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function read(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.dataset.json) : null;
  }

  // Charts are fed from JSON the server rendered into a data-json attribute.
  var builders = {
    trend: function (d) {
      return {
        data: {
          labels: d.days,
          datasets: [
            { type: "bar", label: d.labels.sent, data: d.sent, yAxisID: "count", backgroundColor: "#b9c8f2" },
            { type: "line", label: d.labels.open_rate, data: d.open_rate.map(pct), yAxisID: "rate", borderColor: css("--accent"), spanGaps: true, tension: 0.2 },
            { type: "line", label: d.labels.ctr, data: d.ctr.map(pct), yAxisID: "rate", borderColor: "#d3802f", spanGaps: true, tension: 0.2 }
          ]
        },
        options: {
          scales: {
            count: { position: "left", beginAtZero: true },
            rate: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, ticks: { callback: function (v) { return v + "%"; } } }
          }
        }
      };
    },
    revenue: function (d) {
      return {
        data: { labels: d.days, datasets: [{ type: "bar", label: d.labels.revenue, data: d.revenue, backgroundColor: "#8fd1b0" }] },
        options: { scales: { y: { beginAtZero: true } } }
      };
    }
  };

  function pct(v) { return v === null ? null : Math.round(v * 1000) / 10; }

  function drawCharts(root) {
    if (typeof window.Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var build = builders[canvas.dataset.chart];
      var data = read(canvas.dataset.source);
      if (!build || !data) return;
      if (charts.has(canvas)) charts.get(canvas).destroy();
      var config = build(data);
      config.options.responsive = true;
      config.options.maintainAspectRatio = false;
      config.options.animation = false;
      config.options.interaction = { mode: "index", intersect: false };
      charts.set(canvas, new window.Chart(canvas, config));
    });
  }

  // htmx.onLoad runs for the page (when htmx starts, at DOMContentLoaded, after every
  // deferred script, Chart.js included) and for every piece htmx swaps in later.
  if (window.htmx) window.htmx.onLoad(drawCharts);
  else document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
})();

// Scenarios: a dry-run form the server refused (422, problems beside its fields) is
// swapped in like an answer; htmx leaves 4xx answers out by default. Only forms marked
// data-swap-rejected opt in.
(function () {
  "use strict";
  document.addEventListener("htmx:beforeSwap", function (event) {
    var form = event.detail.elt && event.detail.elt.closest("[data-swap-rejected]");
    if (form && event.detail.xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();

// Campaigns and templates: the template editor's live preview.
// - A draft's HTML is shown in a sandboxed frame by posting the draft into it: the preview
//   partial carries one hidden form[data-frame-post] per language, targeting its frame.
// - Picking a customer in the template editor sets the preview's and the test send's
//   customer and asks for a new preview (the preview panel listens for rapport:preview).
//   Where the page has no live preview (read-only), the link opens the page for them.
(function () {
  "use strict";
  function postFrames(root) {
    var forms = root.querySelectorAll ? root.querySelectorAll("form[data-frame-post]") : [];
    if (root.matches && root.matches("form[data-frame-post]")) forms = [root];
    Array.prototype.forEach.call(forms, function (form) { form.submit(); });
  }
  if (window.htmx) window.htmx.onLoad(postFrames);
  else document.addEventListener("DOMContentLoaded", function () { postFrames(document); });

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-pick-customer]");
    var hidden = document.getElementById("preview-customer-id");
    if (!link || !hidden) return;
    event.preventDefault();
    var id = link.getAttribute("data-pick-customer");
    hidden.value = id;
    var test = document.getElementById("test-customer-id");
    if (test) test.value = id;
    var results = document.getElementById("preview-customers");
    if (results) results.textContent = link.getAttribute("data-label") + " (#" + id + ")";
    document.body.dispatchEvent(new CustomEvent("rapport:preview", { bubbles: true }));
  });
})();

// Settings → Channels: choosing another backend shows its settings at once (the form's
// button does the same without JavaScript).
document.addEventListener("change", function (event) {
  var select = event.target;
  if (select.matches && select.matches("select[data-autosubmit]") && select.form) select.form.submit();
});

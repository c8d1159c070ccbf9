/* The overview's charts, drawn with the vendored Chart.js from the JSON the page carries
   (the same numbers as the tables beside each chart and GET /api/v1/audit/stats). */
(function () {
  "use strict";
  var el = document.getElementById("chart-data");
  if (!el || typeof Chart === "undefined") { return; }
  var charts = JSON.parse(el.textContent);
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.animation = false;
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var key = canvas.getAttribute("data-chart");
    var data = charts[key];
    if (!data) { return; }
    var labels = data.rows.map(function (r) { return r.label; });
    var period = data.dimension === "period";
    var config = {
      type: "bar",
      data: {
        labels: labels,
        datasets: [
          { label: "合格", data: data.rows.map(function (r) { return r.pass; }), backgroundColor: "#15803d", stack: "s" },
          { label: "不合格", data: data.rows.map(function (r) { return r.fail; }), backgroundColor: "#b91c1c", stack: "s" },
          { label: "未出结论", data: data.rows.map(function (r) { return r.total - r.pass - r.fail; }), backgroundColor: "#9ca3af", stack: "s" }
        ]
      },
      options: {
        responsive: true, maintainAspectRatio: false,
        indexAxis: period ? "x" : "y",
        plugins: { legend: { position: "bottom" } },
        scales: { x: { stacked: true, ticks: { precision: 0 } }, y: { stacked: true, ticks: { precision: 0 } } }
      }
    };
    canvas.chart = new Chart(canvas, config);
    canvas.setAttribute("data-drawn", String(data.rows.length));
  });
})();

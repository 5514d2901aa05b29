// An emotion-timeline page: the classes' probabilities stacked over the file, a cursor that follows playback,
// a click or drag on the chart (or the keys) to seek, and a window's figures on hover or focus.
// Each window stands for the seconds between its edges (data.edges, as the PNG draws them).
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("timeline-data").textContent);
  const media = document.getElementById("media");
  const chart = document.getElementById("chart");
  const tooltip = document.getElementById("tooltip");
  const now = document.getElementById("now");
  const announce = document.getElementById("announce");
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 1000, HEIGHT = 160, GAP = 4, BAND = 16;
  const edges = data.edges;
  const n = data.starts.length;
  const span = edges[n] - edges[0] || 1;
  const x = (t) => Math.min(Math.max(((t - edges[0]) / span) * WIDTH, 0), WIDTH);
  const PAGE = Math.max(1, Math.round(n / 10));
  let current = -1;
  let dragging = false;

  function element(name, attributes) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    return node;
  }

  function clock(t) {
    const tenths = Math.round(t * 10);
    const minutes = Math.floor(tenths / 600);
    return minutes + ":" + ((tenths - 600 * minutes) / 10).toFixed(1).padStart(4, "0");
  }

  function top(i) {
    const row = data.proba[i];
    return row.indexOf(Math.max(...row));
  }

  function seconds(i) {
    return clock(data.starts[i]) + "\u2013" + clock(data.ends[i]);
  }

  function draw() {
    const svg = element("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT + GAP + BAND}`, preserveAspectRatio: "none" });
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("shape-rendering", "crispEdges");
    for (let i = 0; i < n; i++) {
      const segment = element("g", { class: "segment", "data-index": i });
      const left = x(edges[i]), width = x(edges[i + 1]) - left;
      let y = HEIGHT;
      data.proba[i].forEach((p, k) => {
        y -= p * HEIGHT;
        segment.append(element("rect", { x: left, y: y, width: width, height: p * HEIGHT, fill: data.colours[k] }));
      });
      segment.append(element("rect", { x: left, y: HEIGHT + GAP, width: width, height: BAND, fill: data.colours[top(i)] }));
      svg.append(segment);
    }
    for (const kind of ["halo", "mark"]) {
      svg.append(element("rect", { class: `current ${kind}`, x: 0, y: 0, width: 0, height: HEIGHT + GAP + BAND }));
    }
    for (const kind of ["halo", "mark"]) {
      svg.append(element("line", { class: `cursor ${kind}`, x1: 0, x2: 0, y1: 0, y2: HEIGHT + GAP + BAND }));
    }
    chart.append(svg);
    const rows = document.querySelector("#windows tbody");
    for (let i = 0; i < n; i++) {
      const row = rows.insertRow();
      row.insertCell().textContent = seconds(i);
      row.cells[0].dataset.sort = data.starts[i];
      row.insertCell().textContent = data.classes[top(i)];
      for (const p of data.proba[i]) row.insertCell().textContent = (100 * p).toFixed(1);
    }
    chart.setAttribute("aria-valuemin", edges[0]);
    chart.setAttribute("aria-valuemax", edges[n]);
  }

  function windowAt(t) {
    let low = 0, high = n - 1;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if (edges[middle] <= t + 1e-6) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  function show(t) {
    for (const line of chart.querySelectorAll(".cursor")) {
      line.setAttribute("x1", x(t));
      line.setAttribute("x2", x(t));
    }
    chart.dataset.cursor = x(t).toFixed(2);
    const i = windowAt(t);
    chart.setAttribute("aria-valuenow", t.toFixed(2));
    if (i === current) return;
    chart.querySelectorAll(".segment.current").forEach((s) => s.classList.remove("current"));
    chart.querySelector(`.segment[data-index="${i}"]`).classList.add("current");
    for (const box of chart.querySelectorAll("rect.current")) {
      box.setAttribute("x", x(edges[i]));
      box.setAttribute("width", x(edges[i + 1]) - x(edges[i]));
    }
    current = i;
    chart.dataset.window = i;
    const k = top(i);
    now.textContent = `Window ${i + 1} of ${n}, ${seconds(i)}: ${data.classes[k]} (${Math.round(100 * data.proba[i][k])} %)`;
    chart.setAttribute("aria-valuetext", now.textContent);
  }

  function seek(t) {
    const clamped = Math.min(Math.max(t, edges[0]), edges[n]);
    media.currentTime = clamped;
    show(clamped);
    announce.textContent = now.textContent;
  }

  function timeAt(event) {
    const box = chart.getBoundingClientRect();
    return edges[0] + ((event.clientX - box.left) / box.width) * span;
  }

  function tip(i, left) {
    const k = top(i);
    tooltip.replaceChildren();
    const heading = document.createElement("strong");
    heading.textContent = `${seconds(i)}: ${data.classes[k]}`;
    const list = document.createElement("ul");
    data.classes.forEach((name, c) => {
      const item = document.createElement("li");
      item.textContent = `${name} ${(100 * data.proba[i][c]).toFixed(1)} %`;
      if (c === k) item.className = "top";
      list.append(item);
    });
    tooltip.append(heading, list);
    tooltip.hidden = false;
    const width = chart.getBoundingClientRect().width;
    tooltip.style.left = Math.max(Math.min(left + 12, width - tooltip.offsetWidth), 0) + "px";
  }

  function tipAtCurrent() {
    const width = chart.getBoundingClientRect().width;
    tip(current, (x((edges[current] + edges[current + 1]) / 2) / WIDTH) * width);
  }

  chart.addEventListener("pointerdown", (event) => {
    dragging = true;
    chart.setPointerCapture(event.pointerId);
    seek(timeAt(event));
  });
  chart.addEventListener("pointermove", (event) => {
    if (dragging) seek(timeAt(event));
    tip(windowAt(timeAt(event)), event.clientX - chart.getBoundingClientRect().left);
  });
  chart.addEventListener("pointerup", () => { dragging = false; });
  chart.addEventListener("pointerleave", () => { tooltip.hidden = true; });
  chart.addEventListener("focus", tipAtCurrent);
  chart.addEventListener("blur", () => { tooltip.hidden = true; });
  chart.addEventListener("keydown", (event) => {
    const steps = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageDown: PAGE, PageUp: -PAGE };
    let target;
    if (event.key in steps) target = Math.min(Math.max(current + steps[event.key], 0), n - 1);
    else if (event.key === "Home") target = 0;
    else if (event.key === "End") target = n - 1;
    else return;
    event.preventDefault();
    seek(edges[target]);
    tipAtCurrent();
  });
  for (const kind of ["timeupdate", "seeking", "seeked", "loadedmetadata"]) {
    media.addEventListener(kind, () => show(media.currentTime));
  }
  media.addEventListener("pause", () => { announce.textContent = now.textContent; });
  function follow() {
    show(media.currentTime);
    if (!media.paused) requestAnimationFrame(follow);
  }
  media.addEventListener("play", () => requestAnimationFrame(follow));

  draw();
  show(media.currentTime);
  chart.dataset.ready = "true";
  performance.mark("timeline-drawn");
})();

// An emotion-timeline page: the model's scores over the file (a class model's probabilities stacked, a lane per
// tag, or valence and arousal with Russell's plane beside the media), a cursor that follows playback, a click or
// drag on the chart (or the keys) to seek, and a window's figures on hover or focus.
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
  const WIDTH = 1000;
  const edges = data.edges;
  const n = data.starts.length;
  const span = edges[n] - edges[0] || 1;
  const x = (t) => Math.min(Math.max(((t - edges[0]) / span) * WIDTH, 0), WIDTH);
  const PAGE = Math.max(1, Math.round(n / 10));
  const percent = (p) => (100 * p).toFixed(1);
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

  function seconds(i) {
    return clock(data.starts[i]) + "\u2013" + clock(data.ends[i]);
  }

  // A step path through (window, value) over the chart's width: y(i) for each window's seconds.
  function steps(y, bottom) {
    let d = bottom === undefined ? "" : `M${x(edges[0])},${bottom}`;
    for (let i = 0; i < n; i++) d += `${d ? "L" : "M"}${x(edges[i])},${y(i)}L${x(edges[i + 1])},${y(i)}`;
    return bottom === undefined ? d : d + `L${x(edges[n])},${bottom}Z`;
  }

  // The class and value charts: a plot HEIGHT high, then under a GAP the top category of each window in a BAND.
  const HEIGHT = 160, GAP = 4, BAND = 16;

  function band(parent, i) {
    const left = x(edges[i]);
    const fill = data.colours[data.categories[data.top[i]]];
    parent.append(element("rect", { x: left, y: HEIGHT + GAP, width: x(edges[i + 1]) - left, height: BAND, fill: fill }));
  }

  // What each kind of model draws. A view gives the chart's height, draws into its SVG (and beside it), and names
  // a window: its table cells, the line under the media, the tooltip's heading and items.
  function classView() {
    const top = (i) => data.top[i];
    const view = {
      height: HEIGHT + GAP + BAND,
      draw(svg) {
        for (let i = 0; i < n; i++) {
          const segment = element("g", { class: "segment", "data-index": i });
          const left = x(edges[i]), width = x(edges[i + 1]) - left;
          let y = HEIGHT;
          data.scores[i].forEach((p, k) => {
            y -= p * HEIGHT;
            segment.append(element("rect", { x: left, y: y, width: width, height: p * HEIGHT, fill: data.colours[data.classes[k]] }));
          });
          band(segment, i);
          svg.append(segment);
        }
        // a model of the plane's quadrants: valence and arousal read from the quadrant probabilities (-1 to 1)
        if (data.plane) {
          view.plane = russellPlane({
            valence: (i) => data.plane.valence[i], arousal: (i) => data.plane.arousal[i], scale: [-1, 1],
            quadrants: data.plane.quadrants, axes: ["valence", "arousal"], current: (i) => data.classes[top(i)],
          });
        }
      },
      cells: (i) => [data.classes[top(i)], ...data.scores[i].map(percent)],
      describe: (i) => `${data.classes[top(i)]} (${Math.round(100 * data.scores[i][top(i)])} %)`,
      heading: (i) => data.classes[top(i)],
      items: (i) => data.classes.map((name, k) => [`${name} ${percent(data.scores[i][k])} %`, k === top(i)]),
      select: (i) => view.plane && view.plane.select(i),
    };
    return view;
  }

  function tagView() {
    const LANE = 28, PAD = 3, MARK = 4;
    const thresholds = data.thresholds;
    const isCalled = (i, k) => data.called[i].includes(k);  // decided in Python on the unrounded scores, as the CSV
    const counts = data.classes.map(() => 0);
    data.called.forEach((tags) => tags.forEach((k) => { counts[k] += 1; }));
    const order = data.classes.map((_, k) => k).sort((a, b) => counts[b] - counts[a] || a - b);
    const called = (i) => order.filter((k) => isCalled(i, k));
    const named = (i) => called(i).map((k) => `${data.classes[k]} (${Math.round(100 * data.scores[i][k])} %)`);
    return {
      height: LANE * order.length,
      draw(svg, names) {
        order.forEach((k, lane) => {
          const bottom = (lane + 1) * LANE - MARK - 1;
          const y = (p) => bottom - p * (LANE - MARK - 1 - PAD);
          const group = element("g", { class: "lane", "data-tag": k });
          group.append(element("path", { class: "probability", d: steps((i) => y(data.scores[i][k]), bottom) }));
          let marks = "";
          for (let i = 0; i < n; i++) {
            if (isCalled(i, k)) marks += `M${x(edges[i])},${bottom}H${x(edges[i + 1])}V${bottom + MARK}H${x(edges[i])}Z`;
          }
          group.append(element("path", { class: "called", d: marks }));
          group.append(element("line", { class: "threshold", x1: 0, x2: WIDTH, y1: y(thresholds[k]), y2: y(thresholds[k]) }));
          svg.append(group);
          const name = document.createElement("div");
          name.className = "lane-name";
          name.style.height = LANE + "px";
          name.textContent = data.classes[k];
          name.title = `${data.classes[k]}: called in ${counts[k]} of ${n} windows`;
          names.append(name);
        });
      },
      cells: (i) => [called(i).map((k) => data.classes[k]).join("; "), ...data.scores[i].map(percent)],
      describe: (i) => named(i).join(", ") || "no tag called",
      heading: (i) => `${called(i).length} of ${order.length} tags called`,
      items: (i) => named(i).map((text) => [text, true]),
    };
  }

  function valueView() {
    const [low, high] = data.scale;
    const level = (v) => HEIGHT - (Math.min(Math.max(v, low), high) - low) / (high - low || 1) * HEIGHT;
    const top = (i) => data.categories[data.top[i]];
    const values = (i) => data.classes.map((name, d) => `${name} ${data.scores[i][d].toFixed(2)}`);
    const view = {
      height: HEIGHT + GAP + BAND,
      draw(svg) {
        svg.append(element("line", { class: "middle", x1: 0, x2: WIDTH, y1: HEIGHT / 2, y2: HEIGHT / 2 }));
        data.classes.forEach((name, d) => {
          svg.append(element("path", { class: "value", stroke: data.colours[name], d: steps((i) => level(data.scores[i][d])) }));
        });
        for (let i = 0; i < n; i++) band(svg, i);
        if (data.classes.length === 2) {
          view.plane = russellPlane({
            valence: (i) => data.scores[i][0], arousal: (i) => data.scores[i][1], scale: data.scale,
            quadrants: data.categories, axes: data.classes, current: (i) => data.categories[data.top[i]],
          });
        }
      },
      cells: (i) => [top(i), ...data.scores[i].map((v) => v.toFixed(3))],
      describe: (i) => `${top(i)} (${values(i).join(", ")})`,
      heading: top,
      items: (i) => values(i).map((text) => [text, false]),
      select: (i) => view.plane && view.plane.select(i),
    };
    return view;
  }

  // Russell's plane: valence across, arousal up, the quadrants named as the model names them (upper right, upper
  // left, lower left, lower right); the trajectory faint, the current window's point on it; a click seeks to the
  // window nearest the point clicked. ``of`` gives each window's valence and arousal, their scale, the quadrants'
  // names, the axes' names and the window's quadrant.
  function russellPlane(of) {
    const SIZE = 200, MARGIN = 14;
    const [low, high] = of.scale;
    const at = (v) => MARGIN + (Math.min(Math.max(v, low), high) - low) / (high - low || 1) * (SIZE - 2 * MARGIN);
    const px = (i) => at(of.valence(i));
    const py = (i) => SIZE - at(of.arousal(i));
    const holder = document.getElementById("plane");
    const svg = element("svg", { viewBox: `0 0 ${SIZE} ${SIZE}` });
    svg.setAttribute("aria-hidden", "true");
    const middle = SIZE / 2;
    // Q1 high-high (upper right), Q2 low valence high arousal (upper left), Q3 low-low, Q4 high valence low arousal
    const corners = [[middle, 0], [0, 0], [0, middle], [middle, middle]];
    corners.forEach(([left, topEdge], q) => {
      const name = of.quadrants[q];
      svg.append(element("rect", { class: "quadrant", x: left, y: topEdge, width: middle, height: middle, fill: data.colours[name] }));
      const right = q === 0 || q === 3;
      const label = element("text", { x: left + (right ? middle - 6 : 6), y: topEdge + 14, "text-anchor": right ? "end" : "start", class: "quadrant-name" });
      label.textContent = name;
      svg.append(label);
    });
    svg.append(element("line", { class: "axis", x1: 0, x2: SIZE, y1: middle, y2: middle }));
    svg.append(element("line", { class: "axis", x1: middle, x2: middle, y1: 0, y2: SIZE }));
    for (const [text, attributes] of [[`${of.axes[0]} \u2192`, { x: SIZE - 4, y: SIZE - 4, "text-anchor": "end" }],
                                      [`${of.axes[1]} \u2192`, { x: 10, y: SIZE - 4, transform: `rotate(-90 10 ${SIZE - 4})` }]]) {
      const axis = element("text", { class: "axis-name", ...attributes });
      axis.textContent = text;
      svg.append(axis);
    }
    const points = Array.from({ length: n }, (_, i) => `${px(i).toFixed(1)},${py(i).toFixed(1)}`).join(" ");
    svg.append(element("polyline", { class: "trajectory", points: points }));
    const point = element("circle", { class: "point", r: 5, cx: px(0), cy: py(0) });
    svg.append(point);
    holder.append(svg);
    svg.addEventListener("click", (event) => {
      const box = svg.getBoundingClientRect();
      const cx = ((event.clientX - box.left) / box.width) * SIZE, cy = ((event.clientY - box.top) / box.height) * SIZE;
      let nearest = 0;
      for (let i = 1; i < n; i++) {
        if ((px(i) - cx) ** 2 + (py(i) - cy) ** 2 < (px(nearest) - cx) ** 2 + (py(nearest) - cy) ** 2) nearest = i;
      }
      seek(edges[nearest]);
    });
    return {
      select(i) {
        point.setAttribute("cx", px(i));
        point.setAttribute("cy", py(i));
        holder.dataset.window = i;
        holder.dataset.quadrant = of.current(i);
      },
    };
  }

  const view = ({ label: classView, tags: tagView }[data.kind] || valueView)();
  let plot;

  function draw() {
    const svg = element("svg", { viewBox: `0 0 ${WIDTH} ${view.height}`, preserveAspectRatio: "none" });
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("shape-rendering", "crispEdges");
    if (data.kind === "tags") {
      const lanes = document.createElement("div"), names = document.createElement("div");
      lanes.className = "lanes";
      lanes.setAttribute("role", "group");
      lanes.setAttribute("aria-label", `${data.classes.length} tag lanes, the most often called first`);
      names.className = "names";
      svg.style.height = view.height + "px";
      lanes.append(names, svg);
      chart.append(lanes);
      view.draw(svg, names);
    } else {
      chart.append(svg);
      view.draw(svg);
    }
    for (const kind of ["halo", "mark"]) {
      svg.append(element("rect", { class: `current ${kind}`, x: 0, y: 0, width: 0, height: view.height }));
    }
    for (const kind of ["halo", "mark"]) {
      svg.append(element("line", { class: `cursor ${kind}`, x1: 0, x2: 0, y1: 0, y2: view.height }));
    }
    plot = svg;
    const rows = document.querySelector("#windows tbody");
    for (let i = 0; i < n; i++) {
      const row = rows.insertRow();
      row.insertCell().textContent = seconds(i);
      row.cells[0].dataset.sort = data.starts[i];
      for (const cell of view.cells(i)) row.insertCell().textContent = cell;
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
    const segment = chart.querySelector(`.segment[data-index="${i}"]`);
    if (segment) segment.classList.add("current");
    for (const box of chart.querySelectorAll("rect.current")) {
      box.setAttribute("x", x(edges[i]));
      box.setAttribute("width", x(edges[i + 1]) - x(edges[i]));
    }
    current = i;
    chart.dataset.window = i;
    if (view.select) view.select(i);
    now.textContent = `Window ${i + 1} of ${n}, ${seconds(i)}: ${view.describe(i)}`;
    chart.setAttribute("aria-valuetext", now.textContent);
  }

  function seek(t) {
    const clamped = Math.min(Math.max(t, edges[0]), edges[n]);
    media.currentTime = clamped;
    show(clamped);
    announce.textContent = now.textContent;
  }

  function timeAt(event) {
    const box = plot.getBoundingClientRect();
    return edges[0] + ((event.clientX - box.left) / box.width) * span;
  }

  function tip(i, left) {
    tooltip.replaceChildren();
    const heading = document.createElement("strong");
    heading.textContent = `${seconds(i)}: ${view.heading(i)}`;
    const list = document.createElement("ul");
    for (const [text, strong] of view.items(i)) {
      const item = document.createElement("li");
      item.textContent = text;
      if (strong) item.className = "top";
      list.append(item);
    }
    tooltip.append(heading, list);
    tooltip.hidden = false;
    const width = chart.getBoundingClientRect().width;
    tooltip.style.left = Math.max(Math.min(left + 12, width - tooltip.offsetWidth), 0) + "px";
  }

  function tipAtCurrent() {
    const box = plot.getBoundingClientRect(), offset = box.left - chart.getBoundingClientRect().left;
    tip(current, offset + (x((edges[current] + edges[current + 1]) / 2) / WIDTH) * box.width);
  }

  chart.addEventListener("pointerdown", (event) => {
    if (!plot.contains(event.target)) return;
    dragging = true;
    chart.setPointerCapture(event.pointerId);
    seek(timeAt(event));
  });
  chart.addEventListener("pointermove", (event) => {
    if (dragging) seek(timeAt(event));
    if (dragging || plot.contains(event.target)) tip(windowAt(timeAt(event)), event.clientX - chart.getBoundingClientRect().left);
    else tooltip.hidden = true;  // over the tags' names: no window
  });
  chart.addEventListener("pointerup", () => { dragging = false; });
  chart.addEventListener("pointerleave", () => { tooltip.hidden = true; });
  chart.addEventListener("focus", tipAtCurrent);
  chart.addEventListener("blur", () => { tooltip.hidden = true; });
  chart.addEventListener("keydown", (event) => {
    if (event.target !== chart) return;  // the scrolling lanes keep their own keys
    const moves = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageDown: PAGE, PageUp: -PAGE };
    let target;
    if (event.key in moves) target = Math.min(Math.max(current + moves[event.key], 0), n - 1);
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

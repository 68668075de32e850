// A scatter plot in plain SVG (no library): formation energy (x) against band gap (y), one point per
// predicted structure. Hovering or focusing a point shows its file; clicking it (or Enter) selects its row.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 300;
const MARGIN = { left: 56, right: 28, top: 12, bottom: 44 };

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// 1, 2 or 5 times a power of ten, about `range / count`.
function niceStep(range, count) {
  const raw = range / Math.max(count, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * power;
}

// The axis range (nice round ends covering the values) and its ticks.
export function axis(values, count = 5) {
  let lo = values.reduce((a, b) => Math.min(a, b), Infinity); // not Math.min(...values): 100,000 arguments overflow
  let hi = values.reduce((a, b) => Math.max(a, b), -Infinity);
  if (hi - lo < 1e-9) {
    lo -= 0.5;
    hi += 0.5;
  }
  const step = niceStep(hi - lo, count);
  const start = Math.floor(lo / step) * step;
  const stop = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let t = start; t <= stop + step / 2; t += step) ticks.push(Number(t.toFixed(10)));
  return { lo: start, hi: stop, ticks, digits: Math.max(0, -Math.floor(Math.log10(step))) };
}

// Draw `points` ([{id, x, y, label, warned}]) into `svg`; `tip` is the hover box (an HTML element
// over the plot); `onSelect(id)` is called on click or Enter.
export function drawScatter(svg, tip, points, onSelect) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  if (!points.length) return;
  const xa = axis(points.map((p) => p.x));
  const ya = axis(points.map((p) => p.y));
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const sx = (x) => MARGIN.left + ((x - xa.lo) / (xa.hi - xa.lo)) * plotW;
  const sy = (y) => MARGIN.top + plotH - ((y - ya.lo) / (ya.hi - ya.lo)) * plotH;

  const grid = el("g", { class: "grid" });
  for (const t of xa.ticks) {
    grid.append(el("line", { x1: sx(t), x2: sx(t), y1: MARGIN.top, y2: MARGIN.top + plotH }));
    grid.append(el("text", { x: sx(t), y: MARGIN.top + plotH + 16, "text-anchor": "middle" }, t.toFixed(xa.digits)));
  }
  for (const t of ya.ticks) {
    grid.append(el("line", { x1: MARGIN.left, x2: MARGIN.left + plotW, y1: sy(t), y2: sy(t) }));
    grid.append(el("text", { x: MARGIN.left - 6, y: sy(t) + 4, "text-anchor": "end" }, t.toFixed(ya.digits)));
  }
  svg.append(grid);
  svg.append(
    el("text", { class: "axis-label", x: MARGIN.left + plotW / 2, y: HEIGHT - 6, "text-anchor": "middle" },
      "Formation energy (eV/atom)"),
  );
  const yLabel = el("text", { class: "axis-label", "text-anchor": "middle", transform: `translate(14 ${MARGIN.top + plotH / 2}) rotate(-90)` },
    "Band gap (eV)");
  svg.append(yLabel);

  const dots = el("g", { class: "points" });
  for (const p of points) {
    const dot = el("circle", {
      class: p.warned ? "point warned" : "point",
      cx: sx(p.x).toFixed(1),
      cy: sy(p.y).toFixed(1),
      r: 5,
      tabindex: 0,
      "data-id": p.id,
      "data-file": p.label,
      "aria-label": `${p.label}: ${p.x.toFixed(3)} eV/atom, ${p.y.toFixed(3)} eV`,
    });
    dot.append(el("title", {}, p.label));
    const show = () => {
      tip.textContent = p.label;
      tip.hidden = false;
      const box = svg.getBoundingClientRect();
      const scale = box.width / WIDTH;
      tip.style.left = `${sx(p.x) * scale + 8}px`;
      tip.style.top = `${sy(p.y) * (box.height / HEIGHT) - 28}px`;
    };
    const hide = () => {
      tip.hidden = true;
    };
    dot.addEventListener("mouseenter", show);
    dot.addEventListener("focus", show);
    dot.addEventListener("mouseleave", hide);
    dot.addEventListener("blur", hide);
    dot.addEventListener("click", () => onSelect(p.id));
    dot.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        onSelect(p.id);
      }
    });
    dots.append(dot);
  }
  svg.append(dots);
}

// Mark the point of row `id` as selected (and no other).
export function markPoint(svg, id) {
  for (const dot of svg.querySelectorAll(".point")) dot.classList.toggle("selected", dot.dataset.id === String(id));
}

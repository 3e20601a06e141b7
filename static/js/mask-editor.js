// Custom mask editor on the JS9 viewer: draw box/circle/polygon regions, save them to the task.
// JS9 image coordinates are 1-based (FITS); the server stores 0-based pixel coordinates.
"use strict";

const MaskEditor = (() => {
  const ELLIPSE_POINTS = 36;

  const r = (v) => Math.round(v * 1000) / 1000; // drop float noise from JS9's display transforms

  function toServer(region) {
    const shape = region.shape;
    if (shape === "box") {
      return { shape, x: r(region.x - 1), y: r(region.y - 1), width: r(region.width), height: r(region.height), angle: r(region.angle || 0) };
    }
    if (shape === "circle") return { shape, x: r(region.x - 1), y: r(region.y - 1), radius: r(region.radius) };
    if (shape === "polygon") return { shape, points: region.pts.map((p) => [r(p.x - 1), r(p.y - 1)]) };
    if (shape === "ellipse") { // kept as a polygon: our masks need no ellipse primitive
      const a = region.r1, b = region.r2, t = ((region.angle || 0) * Math.PI) / 180;
      const points = [];
      for (let i = 0; i < ELLIPSE_POINTS; i += 1) {
        const u = (2 * Math.PI * i) / ELLIPSE_POINTS;
        const dx = a * Math.cos(u), dy = b * Math.sin(u);
        points.push([r(region.x - 1 + dx * Math.cos(t) - dy * Math.sin(t)), r(region.y - 1 + dx * Math.sin(t) + dy * Math.cos(t))]);
      }
      return { shape: "polygon", points };
    }
    return null;
  }

  function toJS9(region) {
    if (region.shape === "box") {
      return { shape: "box", x: region.x + 1, y: region.y + 1, width: region.width, height: region.height, angle: region.angle || 0 };
    }
    if (region.shape === "circle") return { shape: "circle", x: region.x + 1, y: region.y + 1, radius: region.radius };
    return { shape: "polygon", pts: region.points.map(([x, y]) => ({ x: x + 1, y: y + 1 })) };
  }

  function setup(taskId) {
    const status = document.getElementById("mask-status");
    const invert = document.getElementById("mask-invert");
    const url = `/tasks/${taskId}/mask`;
    const csrf = document.querySelector('meta[name="csrf-token"]').content;

    async function load() {
      const saved = await (await fetch(url + "/")).json();
      invert.checked = !!saved.invert;
      for (const region of saved.regions) JS9.AddRegions(toJS9(region), { color: "red" });
      status.textContent = saved.regions.length ? `${saved.regions.length} saved region(s) shown.` : "No custom mask yet.";
    }

    async function save() {
      const drawn = (JS9.GetRegions("all") || []).map(toServer).filter(Boolean);
      const response = await fetch(url + "/", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ regions: drawn, invert: invert.checked }),
      });
      const body = await response.json();
      if (!response.ok) {
        status.textContent = body.detail || "The mask was not saved.";
        status.classList.add("error-text");
        return;
      }
      status.classList.remove("error-text");
      status.textContent = body.regions
        ? `Saved ${body.regions} region(s): ${(100 * body.masked_fraction).toFixed(2)} % of the image masked. Re-run inspection to apply it.`
        : "Custom mask removed. Re-run inspection to apply.";
      status.dataset.saved = "1";
    }

    document.getElementById("mask-save").addEventListener("click", save);
    document.getElementById("mask-clear").addEventListener("click", () => JS9.RemoveRegions("all"));
    return load();
  }

  return { setup, toServer, toJS9 };
})();

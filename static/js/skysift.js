// SkySift page behaviour: uploads, the live task stream, error toasts, header filters.
"use strict";

const SkySift = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  function toast(text, kind = "error") {
    const box = document.createElement("div");
    box.className = `toast ${kind}`;
    box.setAttribute("role", "alert");
    box.textContent = text;
    document.getElementById("toasts").append(box);
    setTimeout(() => box.remove(), 8000);
  }

  function problemText(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      return body.detail || body.title || xhr.statusText;
    } catch (_) {
      const doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
      const alert = doc.querySelector(".alert, .error p");
      return alert ? alert.textContent.trim() : `${xhr.status} ${xhr.statusText}`;
    }
  }

  // ---------------------------------------------------------------- upload
  function upload(file) {
    const bar = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status");
    const title = document.getElementById("upload-title");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/tasks/upload");
    xhr.setRequestHeader("X-CSRFToken", csrf());
    xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name));
    xhr.setRequestHeader("X-Title", encodeURIComponent(title ? title.value : ""));
    const preset = document.querySelector("#dropzone select[name=preset]");
    if (preset && preset.value) xhr.setRequestHeader("X-Preset", preset.value);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    bar.hidden = false;
    bar.value = 0;
    status.textContent = `Uploading ${file.name}…`;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
    xhr.onload = () => {
      if (xhr.status === 201) {
        status.textContent = "Uploaded; opening the task…";
        window.location = JSON.parse(xhr.responseText).url;
      } else {
        bar.hidden = true;
        status.textContent = problemText(xhr);
        status.classList.add("error-text");
      }
    };
    xhr.onerror = () => { bar.hidden = true; status.textContent = "The upload failed: network error."; };
    xhr.send(file);
  }

  function uploadTemplate(taskId, file) {
    const status = document.getElementById("template-status");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/tasks/${taskId}/template`);
    xhr.setRequestHeader("X-CSRFToken", csrf());
    xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name));
    xhr.setRequestHeader("Accept", "application/json");
    status.textContent = `Uploading ${file.name}…`;
    xhr.onload = () => {
      status.textContent = xhr.status === 201 ? `${file.name} stored as custom_template.fits.` : problemText(xhr);
    };
    xhr.send(file);
  }

  function setupUpload() {
    const zone = document.getElementById("dropzone");
    const input = document.getElementById("file-input");
    if (!zone || !input) return;
    input.addEventListener("change", () => input.files.length && upload(input.files[0]));
    ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    }));
    ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, (e) => {
      e.preventDefault();
      zone.classList.remove("over");
    }));
    zone.addEventListener("drop", (e) => e.dataTransfer.files.length && upload(e.dataTransfer.files[0]));
  }

  // ---------------------------------------------------------------- live task stream
  // One EventSource per task page. Every event carries an id; on reconnect (phones drop
  // the stream when backgrounded) we resume after the last id we saw.
  function followTask(taskId) {
    let lastId = null;
    let source = null;
    const logs = {}; // run id -> log lines received so far

    const section = (step) => document.getElementById(`step-${step}`);
    const refresh = (step) => {
      const el = section(step);
      if (el) htmx.trigger(el, "refresh");
    };
    const fill = (el) => {
      const pre = el.querySelector(".live-log");
      if (pre && logs[el.dataset.runId]) pre.textContent = logs[el.dataset.runId].join("\n") + "\n";
    };

    const handlers = {
      log(data) {
        const key = String(data.run_id);
        (logs[key] = logs[key] || []).push(data.line);
        const el = section(data.step);
        if (el && el.dataset.runId === key && el.dataset.live === "1") {
          const pre = el.querySelector(".live-log");
          pre.textContent += data.line + "\n";
          pre.scrollTop = pre.scrollHeight;
        }
      },
      progress(data) {
        const el = section(data.step);
        if (!el || el.dataset.runId !== String(data.run_id)) return;
        const bar = el.querySelector(".step-progress");
        if (bar) bar.value = data.fraction;
        const msg = el.querySelector(".progress-message");
        if (msg && data.message) msg.textContent = data.message;
      },
      state(data) {
        const el = section(data.step);
        if (!el) return;
        if (el.dataset.runId !== String(data.run_id) || el.dataset.state !== data.state) refresh(data.step);
        const badge = document.getElementById("task-state");
        if (badge) badge.textContent = `${data.step}: ${data.state}`;
      },
    };

    function connect() {
      const url = `/tasks/${taskId}/events` + (lastId ? `?after=${encodeURIComponent(lastId)}` : "");
      source = new EventSource(url);
      for (const [kind, handle] of Object.entries(handlers)) {
        source.addEventListener(kind, (e) => {
          lastId = e.lastEventId || lastId;
          // Counts per kind, readable by dashboards and the browser tests.
          const key = `sse${kind[0].toUpperCase()}${kind.slice(1)}`;
          document.body.dataset[key] = String(Number(document.body.dataset[key] || 0) + 1);
          handle(JSON.parse(e.data));
        });
      }
      source.onerror = () => {
        if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
      };
    }

    document.addEventListener("htmx:afterSwap", (e) => {
      if (e.detail.target && e.detail.target.classList && e.detail.target.classList.contains("step")) fill(e.detail.target);
      document.querySelectorAll("section.step[data-live='1']").forEach(fill);
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && (!source || source.readyState === EventSource.CLOSED)) connect();
    });
    connect();
    return { get lastId() { return lastId; } };
  }

  // ---------------------------------------------------------------- vetting
  // Colleagues' votes and comments arrive on the task's event stream: refresh that
  // candidate's block and say who did what (older events replayed at connect are skipped).
  function followVotes(taskId) {
    const since = Date.now() / 1000 - 1;
    const me = document.body.dataset.username;
    const source = new EventSource(`/tasks/${taskId}/events`);
    for (const kind of ["vote", "comment"]) {
      source.addEventListener(kind, (e) => {
        const data = JSON.parse(e.data);
        if (data.t < since) return;
        const block = document.getElementById(`vet-${data.key}`);
        if (block) htmx.trigger(block, "refresh");
        if (data.user !== me) {
          toast(kind === "vote" ? `${data.user} voted ${data.value} on ${data.key}` : `${data.user} commented on ${data.key}`, "info");
        }
        document.body.dataset.sseNotices = String(Number(document.body.dataset.sseNotices || 0) + 1);
      });
    }
    return source;
  }

  // Cutouts blink between image, template and difference: tap the picture, or focus it
  // and use space / arrow keys; "blink" cycles by itself; r, b, u vote on that candidate.
  const BLINK_MS = 600;
  const VOTE_KEYS = { r: "real", b: "bogus", u: "unsure" };

  function blinker(box) {
    const frames = box.dataset.frames.split(",");
    const picture = box.querySelector("img");
    const label = box.querySelector(".blink-label");
    const play = box.querySelector(".blink-play");
    let index = 0;
    let timer = null;
    const show = (i) => {
      index = (i + frames.length) % frames.length;
      picture.style.transform = `translateX(${(-100 * index) / frames.length}%)`;
      label.textContent = frames[index];
      box.dataset.frame = frames[index];
    };
    const stop = () => { clearInterval(timer); timer = null; play.setAttribute("aria-pressed", "false"); };
    box.querySelector(".blink-view").addEventListener("click", () => { stop(); show(index + 1); });
    play.addEventListener("click", (e) => {
      e.stopPropagation();
      if (timer) return stop();
      timer = setInterval(() => show(index + 1), BLINK_MS);
      play.setAttribute("aria-pressed", "true");
    });
    box.addEventListener("keydown", (e) => {
      if (e.target !== box) return;
      if (e.key === " " || e.key === "ArrowRight") { stop(); show(index + 1); }
      else if (e.key === "ArrowLeft") { stop(); show(index - 1); }
      else if (VOTE_KEYS[e.key]) {
        const section = box.closest(".candidate");
        const button = section && section.querySelector(`button.vote.${VOTE_KEYS[e.key]}`);
        if (button) button.click();
      } else return;
      e.preventDefault();
    });
    show(0);
  }

  function blinkers(root) {
    root.querySelectorAll(".blink").forEach(blinker);
  }

  // ---------------------------------------------------------------- misc
  function setupHeaderFilters() {
    document.querySelectorAll(".header-filter").forEach((input) => {
      const pre = input.nextElementSibling;
      const lines = pre.textContent.split("\n");
      input.addEventListener("input", () => {
        const q = input.value.toLowerCase();
        pre.textContent = lines.filter((l) => l.toLowerCase().includes(q)).join("\n");
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupUpload();
    setupHeaderFilters();
    document.body.addEventListener("htmx:responseError", (e) => toast(problemText(e.detail.xhr)));
    document.body.addEventListener("htmx:sendError", () => toast("The server cannot be reached."));
  });

  return { blinkers, followTask, followVotes, toast, upload, uploadTemplate };
})();

// The Jobs page: live cards from /api/jobs/sse, polling /api/jobs every 5 s while
// the stream is not open, and the card controls posted with fetch.  Without this
// script every control is still a plain form post.
"use strict";

(function () {
  const page = document.getElementById("jobs-page");
  if (!page) return;

  const apiUrl = page.dataset.apiUrl;
  const streamUrl = page.dataset.streamUrl;
  const csrfToken = page.dataset.csrfToken;
  const POLL_MS = 5000;
  const HIDDEN_POLL_MS = 30000;

  const liveToggle = document.getElementById("live-toggle");
  const pausedIndicator = document.getElementById("live-paused");
  const connectionState = document.getElementById("connection-state");
  const signedOut = document.getElementById("signed-out");

  let source = null;
  let pollTimer = null;
  let livePaused = false;
  let ended = false; // signed out: stop talking to the server

  // ---- relative times -------------------------------------------------------

  function relativeText(deltaSeconds) {
    const seconds = Math.abs(deltaSeconds);
    if (seconds < 1) return "now";
    const units = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];
    for (const [size, unit] of units) {
      if (seconds >= size) {
        const amount = Math.floor(seconds / size);
        return deltaSeconds < 0 ? `${amount} ${unit} ago` : `in ${amount} ${unit}`;
      }
    }
    return "now";
  }

  function tickTimes() {
    const now = Date.now();
    for (const el of page.querySelectorAll("time[datetime]")) {
      const moment = Date.parse(el.getAttribute("datetime"));
      if (!Number.isNaN(moment)) el.textContent = relativeText((moment - now) / 1000);
    }
  }

  function setTime(el, iso, fallback) {
    if (iso) {
      el.setAttribute("datetime", iso);
      el.title = new Date(iso).toLocaleString();
      el.textContent = relativeText((Date.parse(iso) - Date.now()) / 1000);
    } else {
      el.removeAttribute("datetime");
      el.removeAttribute("title");
      el.textContent = fallback;
    }
  }

  // ---- cards -------------------------------------------------------------------

  function field(card, name) {
    return card.querySelector(`[data-field="${name}"]`);
  }

  function applyJob(job) {
    const card = document.getElementById(`job-${job.name}`);
    if (!card) return;
    card.dataset.status = job.status;
    card.className = `card status-${job.status}`;

    const badge = field(card, "status");
    badge.className = `badge badge-${job.status}`;
    badge.querySelector(".badge-text").textContent = job.status;

    const interval = field(card, "interval");
    interval.textContent = job.interval;
    if (job.interval_overridden) {
      const note = document.createElement("span");
      note.className = "note";
      note.textContent = ` (default ${job.default_interval})`;
      interval.append(" ", note);
    }
    field(card, "run_count").textContent = String(job.run_count);
    setTime(field(card, "last_run"), job.last_run, "never");
    setTime(field(card, "next_run"), job.paused ? null : job.next_run,
      job.paused ? "paused" : "not scheduled");

    const progress = field(card, "progress");
    if (job.progress && job.status === "running") {
      progress.hidden = false;
      progress.querySelector("progress").value = job.progress.fraction;
      progress.querySelector(".progress-text").textContent = job.progress.message;
    } else {
      progress.hidden = true;
    }

    const error = field(card, "last_error");
    error.hidden = !job.last_error;
    error.querySelector(".text").textContent = job.last_error || "";

    card.querySelector("button.run").disabled = job.status === "running";

    const toggleForm = card.querySelector('form[data-control="toggle"]');
    toggleForm.action = `${apiUrl}/${encodeURIComponent(job.name)}/${job.paused ? "resume" : "pause"}`;
    const toggle = toggleForm.querySelector("button");
    toggle.dataset.paused = job.paused ? "true" : "false";
    toggle.setAttribute("aria-label", `${job.paused ? "Resume" : "Pause"} ${job.name}`);
    toggle.querySelector(".toggle-text").textContent = job.paused ? "Resume" : "Pause";

    const editor = card.querySelector(".interval-editor");
    if (!editor.open) editor.querySelector("input[name=interval]").value = job.interval;
  }

  function applyScheduler(scheduler) {
    const state = document.getElementById("scheduler-state");
    state.className = `scheduler ${scheduler.running ? "scheduler-running" : "scheduler-stopped"}`;
    state.querySelector(".text").textContent =
      scheduler.running ? "Scheduler running" : "Scheduler stopped";
    document.getElementById("persistence-state").hidden = scheduler.persistence_ok !== false;
  }

  function applySnapshot(snapshot) {
    applyScheduler(snapshot.scheduler);
    for (const job of snapshot.jobs) applyJob(job);
  }

  // ---- stream and polling -------------------------------------------------------

  function showConnection(text) {
    connectionState.hidden = !text;
    connectionState.textContent = text || "";
  }

  function connect() {
    if (source || livePaused || ended) return;
    source = new EventSource(streamUrl);
    source.addEventListener("open", () => {
      stopPolling();
      showConnection("");
    });
    source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
    source.addEventListener("job", (e) => applyJob(JSON.parse(e.data)));
    source.addEventListener("scheduler", (e) => applyScheduler(JSON.parse(e.data)));
    source.addEventListener("logout", () => endSession());
    source.addEventListener("error", () => {
      // The browser retries by itself; poll until the stream is open again.
      if (source && source.readyState === EventSource.CLOSED) {
        source = null;
        setTimeout(connect, 3000);
      }
      showConnection("Live updates reconnecting; refreshing every 5 s");
      startPolling();
    });
  }

  function disconnect() {
    if (source) {
      source.close();
      source = null;
    }
  }

  async function poll() {
    if (livePaused || ended) return;
    try {
      const response = await fetch(apiUrl, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.status === 401 || response.status === 403) return endSession();
      if (response.ok) applySnapshot(await response.json());
    } catch (err) {
      showConnection("Cannot reach the server; retrying");
    }
  }

  function startPolling() {
    if (pollTimer || livePaused || ended) return;
    const schedule = () => {
      pollTimer = setTimeout(async () => {
        await poll();
        if (pollTimer) schedule();
      }, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
    };
    schedule();
  }

  function stopPolling() {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
  }

  function endSession() {
    ended = true;
    disconnect();
    stopPolling();
    signedOut.hidden = false;
    for (const button of page.querySelectorAll(".controls button")) button.disabled = true;
  }

  function setLivePaused(paused) {
    livePaused = paused;
    liveToggle.textContent = paused ? "Resume live updates" : "Pause live updates";
    liveToggle.setAttribute("aria-pressed", paused ? "true" : "false");
    pausedIndicator.hidden = !paused;
    if (paused) {
      disconnect();
      stopPolling();
      showConnection("");
    } else {
      connect();
    }
  }

  // ---- controls --------------------------------------------------------------------

  async function post(form) {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken },
      credentials: "same-origin",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = { error: `The server answered ${response.status}.` };
    }
    if (response.status === 401) endSession();
    return { ok: response.ok, body };
  }

  function showCardError(card, message) {
    const error = field(card, "last_error");
    error.hidden = false;
    error.querySelector(".text").textContent = message;
  }

  page.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-control]");
    if (!form || ended) return;
    event.preventDefault();
    const card = form.closest(".card");
    const control = form.dataset.control;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { ok, body } = await post(form);
      if (control === "interval") {
        const error = form.querySelector(".field-error");
        if (ok) {
          error.textContent = "";
          form.closest("details").open = false;
        } else {
          error.textContent = body.error;
          form.querySelector("input[name=interval]").focus();
        }
      } else if (!ok) {
        showCardError(card, body.error);
      }
      if (ok) applyJob(body);
    } catch (err) {
      showCardError(card, "Cannot reach the server; the change was not sent.");
    } finally {
      if (control !== "run" || card.dataset.status !== "running") button.disabled = false;
    }
  });

  function closeEditor(editor) {
    const form = editor.querySelector("form");
    form.reset();
    form.querySelector(".field-error").textContent = "";
    editor.open = false;
    editor.querySelector("summary").focus();
  }

  page.addEventListener("reset", (event) => {
    const editor = event.target.closest(".interval-editor");
    if (!editor) return;
    event.preventDefault();
    closeEditor(editor);
  });

  page.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const editor = event.target.closest(".interval-editor");
    if (editor && editor.open) closeEditor(editor);
  });

  page.addEventListener("toggle", (event) => {
    const editor = event.target;
    if (editor.classList && editor.classList.contains("interval-editor") && editor.open) {
      const card = editor.closest(".card");
      const input = editor.querySelector("input[name=interval]");
      input.value = field(card, "interval").firstChild.textContent.trim();
      input.select();
      input.focus();
    }
  }, true);

  liveToggle.hidden = false;
  liveToggle.addEventListener("click", () => setLivePaused(!livePaused));
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && pollTimer) {
      stopPolling();
      poll();
      startPolling();
    }
  });

  setInterval(tickTimes, 1000);
  tickTimes();
  connect();
})();

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
    const reset = editor.querySelector('form[data-control="reset"]');
    reset.hidden = !job.interval_overridden;
    reset.querySelector("button").textContent = `Reset to default (${job.default_interval})`;

    drawChart(card, job);
    applyFilters();
  }

  // ---- duration chart ----------------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  function duration(ms) {
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
  }

  function drawChart(card, job) {
    const svg = field(card, "chart");
    const runs = job.recent_runs || [];
    svg.replaceChildren();
    const longest = Math.max(1, ...runs.map((r) => r.duration_ms || 0));
    const width = 200 / 20;
    runs.forEach((run, index) => {
      const failed = run.outcome !== "ok";
      const height = Math.max(2, ((run.duration_ms || 0) / longest) * 32);
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", String(200 - (runs.length - index) * width + 1));
      bar.setAttribute("y", String(36 - height));
      bar.setAttribute("width", String(width - 2));
      bar.setAttribute("height", String(height));
      bar.setAttribute("class", failed ? "bar bar-failed" : "bar");
      const title = document.createElementNS(SVG, "title");
      const ms = run.duration_ms == null ? "?" : `${Math.round(run.duration_ms)} ms`;
      title.textContent = `${new Date(run.started_at).toLocaleString()}: ${run.outcome}, ${ms}`;
      bar.append(title);
      svg.append(bar);
      if (failed) {
        const mark = document.createElementNS(SVG, "text");
        mark.setAttribute("x", String(200 - (runs.length - index - 0.5) * width));
        // Inside a bar tall enough to hold it, else just above the bar.
        mark.setAttribute("y", String(height >= 12 ? 36 - height / 2 + 3.5 : 34 - height));
        mark.setAttribute("class", "bar-mark");
        mark.textContent = "×";
        svg.append(mark);
      }
    });
    const failures = runs.filter((r) => r.outcome !== "ok").length;
    const label = runs.length
      ? `${runs.length === 1 ? "last run" : `last ${runs.length} runs`}, ${failures} failed, `
        + `${runs.length === 1 ? "took" : "slowest"} ${duration(longest)}`
      : "no runs yet";
    field(card, "chart_caption").textContent = label;
    svg.setAttribute("aria-label", `Durations of recent runs of ${job.name}: ${label}`);
  }

  // ---- filters -----------------------------------------------------------------------

  const FILTER_KEY = "codexdns-jobs-filters";
  const filterCategory = document.getElementById("filter-category");
  const filterStatus = document.getElementById("filter-status");
  const filterSearch = document.getElementById("filter-search");
  const filterCount = document.getElementById("filter-count");

  function applyFilters() {
    const category = filterCategory.value;
    const status = filterStatus.value;
    const words = filterSearch.value.trim().toLowerCase();
    const cards = page.querySelectorAll(".card");
    let shown = 0;
    for (const card of cards) {
      const text = `${card.dataset.job} ${card.querySelector(".description").textContent}`;
      const visible = (!category || card.dataset.category === category)
        && (!status || card.dataset.status === status)
        && (!words || text.toLowerCase().includes(words));
      card.hidden = !visible;
      if (visible) shown += 1;
    }
    filterCount.textContent = shown === cards.length
      ? `${cards.length} jobs` : `Showing ${shown} of ${cards.length} jobs`;
  }

  function saveFilters() {
    const value = { category: filterCategory.value, status: filterStatus.value,
      search: filterSearch.value };
    try { localStorage.setItem(FILTER_KEY, JSON.stringify(value)); } catch (err) { /* private mode */ }
    applyFilters();
  }

  function restoreFilters() {
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem(FILTER_KEY) || "{}") || {}; } catch (err) { saved = {}; }
    const known = (select, value) => [...select.options].some((o) => o.value === value);
    if (saved.category && known(filterCategory, saved.category)) filterCategory.value = saved.category;
    if (saved.status && known(filterStatus, saved.status)) filterStatus.value = saved.status;
    if (typeof saved.search === "string") filterSearch.value = saved.search;
    document.getElementById("filters").hidden = false;
    for (const el of [filterCategory, filterStatus]) el.addEventListener("change", saveFilters);
    filterSearch.addEventListener("input", saveFilters);
    applyFilters();
  }

  // ---- history -----------------------------------------------------------------------

  const historyDialog = document.getElementById("history");
  const historyBody = document.getElementById("history-body");

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    row.append(td);
    return td;
  }

  function renderHistory(job) {
    document.getElementById("history-title").textContent = `${job.name}: recent runs`;
    historyBody.replaceChildren();
    if (!job.runs.length) {
      const none = document.createElement("p");
      none.textContent = "No runs yet.";
      historyBody.append(none);
      return;
    }
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    const table = document.createElement("table");
    table.className = "runs";
    const head = table.createTHead().insertRow();
    const columns = ["Started", "Duration", "Outcome", "Trigger", "Details"];
    for (const name of columns) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = name;
      head.append(th);
    }
    const body = table.createTBody();
    for (const run of job.runs) {
      const row = body.insertRow();
      row.className = `outcome-${run.outcome.replace(" ", "-")}`;
      const started = cell(row, "");
      const time = document.createElement("time");
      setTime(time, run.started_at, "");
      started.append(time);
      cell(row, run.duration_ms == null ? "—" : `${Math.round(run.duration_ms)} ms`);
      const outcome = cell(row, "");
      const badge = document.createElement("span");
      badge.className = "outcome";
      badge.textContent = run.outcome;
      outcome.append(badge);
      cell(row, run.user ? `${run.trigger} by ${run.user}` : run.trigger);
      const details = cell(row, "");
      if (run.error) {
        const error = document.createElement("p");
        error.className = "run-error";
        error.textContent = run.error;
        details.append(error);
      }
      if ((run.log && run.log.length) || run.traceback) {
        const more = document.createElement("details");
        const summary = document.createElement("summary");
        summary.textContent = run.traceback ? "Log and traceback" : "Log";
        more.append(summary);
        if (run.log && run.log.length) {
          const pre = document.createElement("pre");
          pre.className = "log";
          pre.textContent = run.log.join("\n");
          more.append(pre);
        }
        if (run.traceback) {
          const pre = document.createElement("pre");
          pre.className = "traceback";
          pre.textContent = run.traceback;
          more.append(pre);
        }
        details.append(more);
      }
      // Shown before each value where the table is laid out as blocks (narrow screens).
      [...row.cells].forEach((td, index) => { td.dataset.label = columns[index]; });
    }
    wrap.append(table);
    historyBody.append(wrap);
  }

  async function openHistory(name, opener) {
    const response = await fetch(`${apiUrl}/${encodeURIComponent(name)}`, {
      headers: { Accept: "application/json" }, credentials: "same-origin",
    });
    if (response.status === 401) return endSession();
    if (!response.ok) return;
    renderHistory(await response.json());
    historyDialog.returnFocus = opener;
    historyDialog.showModal();
  }

  page.addEventListener("click", (event) => {
    const link = event.target.closest("[data-history]");
    if (!link || typeof historyDialog.showModal !== "function") return;
    event.preventDefault();
    openHistory(link.dataset.history, link);
  });
  document.getElementById("history-close").addEventListener("click", () => historyDialog.close());
  historyDialog.addEventListener("close", () => {
    if (historyDialog.returnFocus) historyDialog.returnFocus.focus();
  });

  function applyScheduler(scheduler) {
    const state = document.getElementById("scheduler-state");
    state.className = `scheduler ${scheduler.running ? "scheduler-running" : "scheduler-stopped"}`;
    state.querySelector(".text").textContent =
      scheduler.running ? "Scheduler running" : "Scheduler stopped";
    const persistence = document.getElementById("persistence-state");
    persistence.hidden = scheduler.persistence_ok !== false;
    persistence.textContent = persistence.hidden ? "" : persistenceText(scheduler.persistence_error);
  }

  // The same words as routes/pages.py persistence_text.
  function persistenceText(error) {
    return `Saving to the database is failing. ${error || ""} ` +
      "Jobs keep running, but their latest runs may be missing from the history; " +
      "pause, resume and interval changes are refused until this is fixed.";
  }

  // How many live updates (stream or poll) each card has had.  A control's answer can
  // arrive after the stream already showed what happened next (a quick run that has
  // finished): it is then older than the card and is not applied.
  const liveUpdates = new Map();

  function applyLiveJob(job) {
    liveUpdates.set(job.name, (liveUpdates.get(job.name) || 0) + 1);
    applyJob(job);
  }

  function applySnapshot(snapshot) {
    applyScheduler(snapshot.scheduler);
    for (const job of snapshot.jobs) applyLiveJob(job);
  }

  // ---- stream and polling -------------------------------------------------------
  //
  // Browsers give a site six HTTP/1.1 connections and every EventSource holds one,
  // so tabs share one stream: the tab holding the "stream" lock opens it and passes
  // every event on over a BroadcastChannel; when that tab closes, another takes over.

  const channel = "BroadcastChannel" in window ? new BroadcastChannel("codexdns-jobs") : null;
  const sharing = Boolean(channel && navigator.locks && navigator.locks.request);
  let leader = !sharing;
  let streaming = false;
  let lastNews = Date.now();

  function showConnection(text) {
    connectionState.hidden = !text;
    connectionState.textContent = text || "";
  }

  function deliver(kind, data) {
    if (kind === "logout") return endSession();
    if (livePaused) return;
    if (kind === "snapshot") applySnapshot(data);
    else if (kind === "job") applyLiveJob(data);
    else if (kind === "scheduler") applyScheduler(data);
  }

  function received(kind, data) {
    if (leader && channel) channel.postMessage({ kind, data });
    deliver(kind, data);
  }

  function announce() {
    if (leader && channel) channel.postMessage({ kind: "status", data: { streaming } });
  }

  function connect() {
    if (source || ended || !leader) return;
    source = new EventSource(streamUrl);
    source.addEventListener("open", () => {
      streaming = true;
      stopPolling();
      showConnection("");
      announce();
    });
    for (const kind of ["snapshot", "job", "scheduler", "logout"]) {
      source.addEventListener(kind, (e) => received(kind, JSON.parse(e.data)));
    }
    source.addEventListener("error", () => {
      streaming = false;
      announce();
      // The browser retries by itself; poll until the stream is open again.
      if (source && source.readyState === EventSource.CLOSED) {
        source = null;
        if (!ended) setTimeout(connect, 3000);
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
    streaming = false;
  }

  async function poll() {
    if (ended) return;
    const updatesBefore = new Map(liveUpdates);
    try {
      const response = await fetch(apiUrl, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.status === 401 || response.status === 403) return received("logout", {});
      if (response.ok) {
        const snapshot = await response.json();
        // A job the stream updated while this read was on its way is newer on the card.
        snapshot.jobs = snapshot.jobs.filter(
          (job) => (liveUpdates.get(job.name) || 0) === (updatesBefore.get(job.name) || 0));
        received("snapshot", snapshot);
      }
    } catch (err) {
      showConnection("Cannot reach the server; retrying");
    }
  }

  function startPolling() {
    if (pollTimer || ended) return;
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
    if (ended) return;
    ended = true;
    if (leader && channel) channel.postMessage({ kind: "logout", data: {} });
    disconnect();
    stopPolling();
    showConnection("");
    signedOut.hidden = false;
    for (const button of page.querySelectorAll(".controls button")) button.disabled = true;
  }

  function setLivePaused(paused) {
    livePaused = paused;
    liveToggle.textContent = paused ? "Resume live updates" : "Pause live updates";
    liveToggle.setAttribute("aria-pressed", paused ? "true" : "false");
    pausedIndicator.hidden = !paused;
    if (!paused) poll(); // catch up with what changed meanwhile
  }

  function follow() {
    // Not the streaming tab: listen to the one that is, and poll only if it goes quiet.
    channel.addEventListener("message", (event) => {
      if (leader) return;
      lastNews = Date.now();
      const { kind, data } = event.data;
      if (kind === "status") {
        if (data.streaming) stopPolling();
      } else {
        stopPolling();
        deliver(kind, data);
      }
    });
    setInterval(() => {
      if (!leader && Date.now() - lastNews > 12000) startPolling();
    }, 5000);
    navigator.locks.request("codexdns-jobs-stream", () => new Promise(() => {
      leader = true;
      stopPolling();
      connect();
      setInterval(announce, 5000);
    }));
    poll(); // the page may have waited in the background: start from fresh state
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
    // Disabling the button drops its focus: give it back once it is usable again.
    const hadFocus = document.activeElement === button;
    button.disabled = true;
    const updatesBefore = liveUpdates.get(card.dataset.job) || 0;
    const editor = form.closest(".interval-editor"); // Save, or Reset to default
    const openedAt = editor && editor.dataset.opened;
    try {
      const { ok, body } = await post(form);
      if (editor) {
        const error = editor.querySelector(".field-error");
        if (ok && editor.dataset.opened !== openedAt) {
          // Closed and opened again while the answer was on its way: leave it open.
        } else if (ok) {
          error.textContent = "";
          const focusWasInside = editor.contains(document.activeElement) || hadFocus;
          editor.open = false;
          if (focusWasInside) editor.querySelector("summary").focus();
        } else {
          error.textContent = body.error;
          if (control === "interval") form.querySelector("input[name=interval]").focus();
        }
      } else if (!ok) {
        showCardError(card, body.error);
      }
      if (ok && (liveUpdates.get(card.dataset.job) || 0) === updatesBefore) applyJob(body);
    } catch (err) {
      showCardError(card, "Cannot reach the server; the change was not sent.");
    } finally {
      if (control !== "run" || card.dataset.status !== "running") button.disabled = false;
      if (hadFocus && !button.disabled && document.activeElement === document.body) button.focus();
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
      editor.dataset.opened = String(Number(editor.dataset.opened || 0) + 1);
      const card = editor.closest(".card");
      const input = editor.querySelector("input[name=interval]");
      // "toggle" comes a moment after the editor opened: text typed meanwhile stays.
      if (document.activeElement !== input) {
        input.value = field(card, "interval").firstChild.textContent.trim();
        input.select();
      }
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

  restoreFilters();
  setInterval(tickTimes, 1000);
  tickTimes();
  if (sharing) follow();
  else connect();
})();

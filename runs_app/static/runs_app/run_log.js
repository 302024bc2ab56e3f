"use strict";
// Follows a live run's log on its admin page: polls the log endpoint from the last byte offset
// and appends new text (as text, never HTML) until the run reaches a terminal status.
(function () {
  const POLL_MS = 1000;
  const MAX_BACKOFF_MS = 30000;
  const pre = document.getElementById("ff-log");
  if (!pre || pre.dataset.live !== "true") {
    return;
  }
  const state = document.getElementById("ff-log-state");
  let offset = Number(pre.dataset.offset) || 0;
  let failures = 0;

  function setState(text, value) {
    if (state) {
      state.textContent = text;
      state.dataset.state = value;
    }
  }

  function showStatus(status, cancelRequested) {
    document.querySelectorAll("[data-ff-run-status]").forEach(function (badge) {
      badge.dataset.status = status;
      badge.removeAttribute("style");
      badge.textContent = cancelRequested && status === "RUNNING"
        ? status + " (cancel requested)" : status;
    });
  }

  function append(text) {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(text));
    if (atBottom) {
      pre.scrollTop = pre.scrollHeight;
    }
  }

  async function poll() {
    let body;
    try {
      const response = await fetch(pre.dataset.logUrl + "?offset=" + offset, {
        credentials: "same-origin",
        cache: "no-store",
        headers: {Accept: "application/json"},
      });
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      body = await response.json();
    } catch (err) {
      failures += 1;
      setState("Connection problem (" + err.message + "), retrying…", "retrying");
      window.setTimeout(poll, Math.min(POLL_MS * 2 ** failures, MAX_BACKOFF_MS));
      return;
    }
    failures = 0;
    if (body.text) {
      append(body.text);
    }
    offset = body.offset;
    showStatus(body.status, body.cancel_requested);
    // A terminal status read before an empty chunk means the whole log has been shown.
    if (body.terminal && !body.text) {
      pre.dataset.live = "false";
      setState("Run finished: " + body.status + ". Reload the page for its details.", "done");
      return;
    }
    setState("Following new output…", "live");
    window.setTimeout(poll, body.text ? 0 : POLL_MS);
  }

  window.setTimeout(poll, POLL_MS);
})();

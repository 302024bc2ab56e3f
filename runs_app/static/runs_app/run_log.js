"use strict";
// Follows a live run's log on its admin page: polls the log endpoint from the last byte offset
// and appends new lines (as text, never HTML; one span per line with its source as a class,
// like the server-rendered part) until the run reaches a terminal status.
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

  function span(className, text) {
    const element = document.createElement("span");
    element.className = className;
    element.textContent = text;
    return element;
  }

  function lineElement(line) {
    const element = span("ff-log-line ff-log-" + line.source, "");
    element.dataset.source = line.source;
    if (line.time) {
      element.appendChild(span("ff-log-time", line.time));
      element.appendChild(document.createTextNode(" "));
    }
    if (line.source === "note") {
      element.appendChild(span("ff-log-badge", "fastflow"));
      element.appendChild(document.createTextNode(" "));
    }
    element.appendChild(span("ff-log-text", line.text));
    element.appendChild(document.createTextNode("\n"));
    return element;
  }

  function append(lines) {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const fragment = document.createDocumentFragment();
    lines.forEach(function (line) {
      fragment.appendChild(lineElement(line));
    });
    pre.appendChild(fragment);
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
    const hasLines = body.lines && body.lines.length > 0;
    if (hasLines) {
      append(body.lines);
    }
    offset = body.offset;
    showStatus(body.status, body.cancel_requested);
    // A terminal status read before an empty chunk means the whole log has been shown.
    if (body.terminal && !hasLines) {
      pre.dataset.live = "false";
      setState("Run finished: " + body.status + ". Reload the page for its details.", "done");
      return;
    }
    setState("Following new output…", "live");
    window.setTimeout(poll, hasLines ? 0 : POLL_MS);
  }

  window.setTimeout(poll, POLL_MS);
})();

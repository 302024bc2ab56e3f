"use strict";
// The run page while a run is live, without reloading it:
// - the log: polls <run>/log/?offset=N every second and appends new lines (as text, never HTML;
//   one span per line with its source as a class, like the server-rendered part);
// - the panels (heading, status, buttons, facts, CPU/RAM charts): asks <run>/panels/ for them
//   every two seconds and swaps them in, once more when the run ends;
// - Cancel posts in the background and refreshes the panels;
// - find in the log, jump to the first error, follow the end.
(function () {
  const LOG_POLL_MS = 1000;
  const PANELS_POLL_MS = 2000;
  const MAX_BACKOFF_MS = 30000;
  const CSRF_VALUE = /name="csrfmiddlewaretoken" value="[^"]*"/g;
  // Lines that report an error, in the usual shapes of Python and shells.
  const ERROR_TEXT = /Traceback \(most recent call last\)|\b\w*(Error|Exception)\b|\bFATAL\b|\bCRITICAL\b|\berror:/;

  const pre = document.getElementById("ff-log");
  const live = document.getElementById("ff-run-live");
  if (!pre || !live) {
    return;
  }
  const state = document.getElementById("ff-log-state");
  const follow = document.getElementById("ff-log-follow");
  let offset = Number(pre.dataset.offset) || 0;
  let logFailures = 0;
  let lastStatus = live.dataset.status;
  let logDone = pre.dataset.live !== "true";
  let panelsDone = live.dataset.live !== "true";

  function setState(text, value) {
    if (state) {
      state.textContent = text;
      state.dataset.state = value;
    }
  }

  // --- the log ----------------------------------------------------------------------------
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
      const time = span("ff-log-time", line.time.slice(11, 23));
      time.title = line.time;
      element.appendChild(time);
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
    const fragment = document.createDocumentFragment();
    const added = lines.map(lineElement);
    added.forEach(function (element) {
      fragment.appendChild(element);
    });
    pre.appendChild(fragment);
    find.extend(added);
    firstError.update();
    if (follow && follow.checked) {
      pre.scrollTop = pre.scrollHeight;
    }
  }

  async function pollLog() {
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
      logFailures += 1;
      setState("Connection problem (" + err.message + "), retrying…", "retrying");
      window.setTimeout(pollLog, Math.min(LOG_POLL_MS * 2 ** logFailures, MAX_BACKOFF_MS));
      return;
    }
    logFailures = 0;
    const lines = body.lines || [];
    if (lines.length) {
      append(lines);
    }
    offset = body.offset;
    if (body.status !== lastStatus) {
      refreshPanels();
    }
    // A terminal status read before an empty chunk means the whole log has been shown.
    if (body.terminal && !lines.length) {
      pre.dataset.live = "false";
      logDone = true;
      if (follow) {
        follow.checked = false;
      }
      setState("Run finished: " + body.status, "done");
      return;
    }
    setState("Following new output…", "live");
    window.setTimeout(pollLog, lines.length ? 0 : LOG_POLL_MS);
  }

  // --- the panels -------------------------------------------------------------------------
  let panelsTimer = null;
  let panelsBusy = false;
  const shownPanels = new Map();  // the HTML last swapped in, per panel

  async function refreshPanels() {
    if (panelsBusy) {
      return;
    }
    panelsBusy = true;
    window.clearTimeout(panelsTimer);
    try {
      const response = await fetch(live.dataset.panelsUrl, {
        credentials: "same-origin",
        cache: "no-store",
        headers: {Accept: "application/json"},
      });
      if (response.ok) {
        const body = await response.json();
        Object.keys(body.panels).forEach(function (name) {
          const holder = document.querySelector('[data-ff-panel="' + name + '"]');
          // An unchanged panel stays as it is: a button being clicked or focused is not
          // replaced under the pointer.
          const html = body.panels[name];
          const seen = html.replace(CSRF_VALUE, "");  // masked afresh in every response
          if (holder && shownPanels.get(name) !== seen) {
            holder.innerHTML = html;  // our own templates, escaped on the server
            shownPanels.set(name, seen);
          }
        });
        lastStatus = body.status;
        live.dataset.status = body.status;
        document.title = document.title.replace(/\((PENDING|RUNNING|SUCCESS|FAILED|CANCELLED)\)/,
          "(" + body.status + ")");
        if (body.terminal) {
          live.dataset.live = "false";
          panelsDone = true;
        }
        if (window.ffConsole) {
          window.ffConsole.refreshTimes(live);
        }
      }
    } catch (err) {
      // The log poll reports connection problems; the next round tries again.
    } finally {
      panelsBusy = false;
      if (!panelsDone) {
        panelsTimer = window.setTimeout(refreshPanels, PANELS_POLL_MS);
      }
    }
  }

  // Cancel (forms marked data-ff-async) posts in the background; the panels show the result.
  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!form.matches("form[data-ff-async]")) {
      return;
    }
    event.preventDefault();
    const button = form.querySelector("button");
    if (button) {
      button.disabled = true;
    }
    try {
      await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: {Accept: "application/json"},
      });
    } finally {
      panelsDone = false;
      refreshPanels();
    }
  });

  // --- find in the log --------------------------------------------------------------------
  const find = (function () {
    const input = document.getElementById("ff-log-find");
    const count = document.getElementById("ff-log-find-count");
    let term = "";
    let marks = [];
    let current = -1;

    function clear() {
      pre.querySelectorAll("mark.ff-find").forEach(function (mark) {
        mark.replaceWith(document.createTextNode(mark.textContent));
      });
      pre.querySelectorAll(".ff-log-text").forEach(function (text) {
        text.normalize();
      });
      marks = [];
      current = -1;
    }

    function markIn(line) {
      const text = line.querySelector(".ff-log-text");
      if (!text || !term) {
        return;
      }
      const value = text.textContent;
      const lower = value.toLowerCase();
      let at = lower.indexOf(term);
      if (at < 0) {
        return;
      }
      const fragment = document.createDocumentFragment();
      let from = 0;
      while (at >= 0) {
        fragment.appendChild(document.createTextNode(value.slice(from, at)));
        const mark = document.createElement("mark");
        mark.className = "ff-find";
        mark.textContent = value.slice(at, at + term.length);
        fragment.appendChild(mark);
        marks.push(mark);
        from = at + term.length;
        at = lower.indexOf(term, from);
      }
      fragment.appendChild(document.createTextNode(value.slice(from)));
      text.replaceChildren(fragment);
    }

    function show() {
      if (count) {
        count.textContent = term ? (marks.length ? (current + 1) + " / " + marks.length
          : "no match") : "";
      }
      marks.forEach(function (mark, index) {
        mark.classList.toggle("ff-find-current", index === current);
      });
      if (current >= 0 && marks[current]) {
        if (follow) {
          follow.checked = false;
        }
        marks[current].scrollIntoView({block: "center"});
      }
    }

    function search() {
      clear();
      term = input ? input.value.trim().toLowerCase() : "";
      if (term) {
        pre.querySelectorAll(".ff-log-line").forEach(markIn);
        current = marks.length ? 0 : -1;
      }
      show();
    }

    function step(delta) {
      if (!marks.length) {
        return;
      }
      current = (current + delta + marks.length) % marks.length;
      show();
    }

    if (input) {
      input.addEventListener("input", search);
      input.addEventListener("keydown", function (event) {
        if (event.key === "Enter") {
          event.preventDefault();
          step(event.shiftKey ? -1 : 1);
        } else if (event.key === "Escape") {
          input.value = "";
          search();
        }
      });
    }
    const prev = document.getElementById("ff-log-prev");
    const next = document.getElementById("ff-log-next");
    if (prev) {
      prev.addEventListener("click", function () { step(-1); });
    }
    if (next) {
      next.addEventListener("click", function () { step(1); });
    }
    return {
      extend: function (lines) {
        if (term) {
          lines.forEach(markIn);
          if (current < 0 && marks.length) {
            current = 0;
          }
          if (count) {
            count.textContent = marks.length ? (current + 1) + " / " + marks.length : "no match";
          }
        }
      },
    };
  })();

  // --- the first error --------------------------------------------------------------------
  const firstError = (function () {
    const button = document.getElementById("ff-log-first-error");

    function locate() {
      const lines = Array.from(pre.querySelectorAll(".ff-log-line"));
      const text = function (line) {
        const element = line.querySelector(".ff-log-text");
        return element ? element.textContent : "";
      };
      const stderr = lines.filter(function (line) { return line.dataset.source === "stderr"; });
      return stderr.find(function (line) { return ERROR_TEXT.test(text(line)); })
        || lines.find(function (line) {
          return line.dataset.source !== "note" && ERROR_TEXT.test(text(line));
        })
        || stderr[0] || null;
    }

    function update() {
      if (button) {
        button.disabled = locate() === null;
      }
    }

    if (button) {
      button.addEventListener("click", function () {
        const line = locate();
        if (!line) {
          return;
        }
        if (follow) {
          follow.checked = false;
        }
        pre.querySelectorAll(".ff-log-flash").forEach(function (other) {
          other.classList.remove("ff-log-flash");
        });
        line.classList.add("ff-log-flash");
        line.scrollIntoView({block: "center"});
      });
    }
    update();
    return {update: update};
  })();

  // Scrolling up stops following; the box follows again once scrolled back to the end.
  pre.addEventListener("scroll", function () {
    if (!follow || logDone) {
      return;
    }
    follow.checked = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  });

  if (follow && follow.checked) {
    pre.scrollTop = pre.scrollHeight;
  }
  if (!logDone) {
    window.setTimeout(pollLog, LOG_POLL_MS);
  }
  if (!panelsDone) {
    panelsTimer = window.setTimeout(refreshPanels, PANELS_POLL_MS);
  }
})();

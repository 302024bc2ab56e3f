"use strict";
// Keeps relative times ("3 min ago") current on every console page; the exact time stays in
// each <time>'s tooltip. Same wording as fastflow_site/console.py:relative_time.
(function () {
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
    "Dec"];
  const pad = (n) => String(n).padStart(2, "0");

  function relative(moment, now) {
    const delta = (now - moment) / 1000;
    const seconds = Math.abs(delta);
    let text;
    if (seconds < 45) {
      text = Math.floor(seconds) + " s";
    } else if (seconds < 45 * 60) {
      text = Math.round(seconds / 60) + " min";
    } else if (seconds < 20 * 3600) {
      const hours = Math.floor(seconds / 3600);
      const minutes = Math.round((seconds - hours * 3600) / 60);
      text = hours < 3 && minutes ? hours + " h " + pad(minutes) + " min"
        : Math.round(seconds / 3600) + " h";
    } else {
      const hm = pad(moment.getUTCHours()) + ":" + pad(moment.getUTCMinutes());
      const yesterday = new Date(now.getTime() - 86400000);
      if (moment.toISOString().slice(0, 10) === yesterday.toISOString().slice(0, 10)) {
        return "yesterday " + hm;
      }
      if (moment.getUTCFullYear() === now.getUTCFullYear()) {
        return MONTHS[moment.getUTCMonth()] + " " + moment.getUTCDate() + " " + hm;
      }
      return moment.toISOString().slice(0, 10) + " " + hm;
    }
    return delta < 0 ? "in " + text : text + " ago";
  }

  function refresh(root) {
    const now = new Date();
    (root || document).querySelectorAll("time[data-ff-relative]").forEach(function (element) {
      const moment = new Date(element.getAttribute("datetime"));
      if (!Number.isNaN(moment.getTime())) {
        element.textContent = relative(moment, now);
      }
    });
  }

  // Tabs: without script every panel shows, one under the other.
  function tabs(container) {
    const links = Array.from(container.querySelectorAll('[role="tab"]'));
    function select(link) {
      links.forEach(function (other) {
        const panel = document.querySelector(other.getAttribute("href"));
        other.setAttribute("aria-selected", String(other === link));
        if (panel) {
          panel.hidden = other !== link;
        }
      });
    }
    links.forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        select(link);
      });
    });
    container.classList.add("ff-tabs-ready");
    if (links.length) {
      select(links[0]);
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-ff-tabs]").forEach(tabs);
  });

  window.ffConsole = {refreshTimes: refresh};
  window.setInterval(refresh, 15000);
})();

// Progressive enhancements; every page works without them.
"use strict";

// The organization switcher goes to the chosen organization at once.
document.querySelectorAll("form[data-switcher] select").forEach((select) => {
  select.addEventListener("change", () => {
    location.href = "/orgs/" + encodeURIComponent(select.value);
  });
});

// Repositories: filter as you type (the table is replaced, the URL kept in step).
const filter = document.querySelector("form[data-repo-filter]");
if (filter) {
  const results = document.getElementById("repo-results");
  let timer = null;
  let latest = 0;
  const refresh = async () => {
    const params = new URLSearchParams(new FormData(filter));
    for (const [key, value] of [...params.entries()]) {
      if (!value) params.delete(key);
    }
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
    params.set("partial", "1");
    const ticket = ++latest;
    const response = await fetch(location.pathname + "?" + params.toString(),
                                 { headers: { Accept: "text/html" }, credentials: "same-origin" });
    if (ticket === latest && response.ok) {
      results.innerHTML = await response.text();
      results.dataset.query = query;
    }
  };
  filter.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 150);
  });
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    refresh();
  });
}

// A live scan: progress from Server-Sent Events; the page reloads when the scan ends.
const follow = (element, onDone) => {
  const source = new EventSource(element.dataset.events);
  const set = (name, value) => {
    element.querySelectorAll("[data-" + name + "]").forEach((node) => {
      node.textContent = value === null || value === undefined ? "" : String(value);
    });
  };
  source.addEventListener("progress", (event) => {
    const p = JSON.parse(event.data);
    set("status", p.status);
    set("detail", p.detail);
    set("done", p.done);
    set("total", p.total);
    set("errored", p.errored);
    set("waiting", p.waiting);
    set("opened", p.opened);
    set("resolved", p.resolved);
    set("filing", p.filing);
    element.querySelectorAll("[data-filing]").forEach((node) => {
      node.parentElement.hidden = !p.filing;
    });
    const bar = element.querySelector("progress[data-progress]");
    if (bar) {
      bar.max = Math.max(1, p.total);
      bar.value = p.done + p.errored;
    }
  });
  source.addEventListener("done", () => {
    source.close();
    onDone();
  });
};
document.querySelectorAll("[data-scan][data-live=yes]").forEach((element) => {
  follow(element, () => location.reload());
});
document.querySelectorAll("[data-checking][data-events]").forEach((element) => {
  follow(element, () => { location.href = location.pathname; });
});

// A queued rescan of one repository: reload once it has run.
const queued = document.querySelector("[data-rescan-queued]");
const scanned = document.querySelector("[data-last-scanned]");
if (queued && scanned) {
  const before = scanned.dataset.lastScanned;
  let tries = 0;
  const poll = async () => {
    tries += 1;
    const response = await fetch(location.pathname + "?format=json", { credentials: "same-origin" });
    if (response.ok) {
      const data = await response.json();
      if ((data.last_scanned_at || "") !== before) {
        location.href = location.pathname;
        return;
      }
    }
    if (tries < 240) setTimeout(poll, 1000);
  };
  setTimeout(poll, 1000);
}

// KACHING live pages. The page names its event stream (body data-events)
// and its live fragment (body data-live); on every event this fetches the
// fragment from the same origin and swaps it into #live, so the server's
// escaped HTML is the only HTML there is. Forms live outside #live and are
// never replaced. body data-updates counts swaps; data-event-at and
// data-updated-at (ms since the epoch) time the last one, for tests and
// benchmarks.
(function () {
  "use strict";
  var body = document.body;
  var events = body.dataset.events;
  var live = body.dataset.live;
  var region = document.getElementById("live");
  var state = document.getElementById("live-state");
  if (!events || !live || !region || !window.EventSource) {
    return;
  }
  var busy = false;
  var again = false;
  var updates = 0;
  function say(text) {
    if (state) {
      state.textContent = text;
    }
  }
  function refresh() {
    body.dataset.eventAt = String(Date.now());
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(live, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) {
          window.location.reload();
        }
        if (!r.ok) {
          throw new Error("HTTP " + r.status);
        }
        return r.text();
      })
      .then(function (html) {
        region.innerHTML = html;
        updates += 1;
        body.dataset.updates = String(updates);
        body.dataset.updatedAt = String(Date.now());
        say("live");
      })
      .catch(function (e) {
        say("update failed (" + e.message + "): reload the page");
      })
      .finally(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }
  var stream = null;
  function follow() {
    stream = new EventSource(events);
    stream.onopen = function () {
      say("live");
    };
    stream.onerror = function () {
      say("reconnecting…");
    };
    ["status", "reload", "rejected", "upgrade_request", "license_changed", "downgrade_held", "lagged"].forEach(function (kind) {
      stream.addEventListener(kind, refresh);
    });
  }
  follow();
  // The stream is closed when the page goes. Left open (a page kept for
  // the Back button keeps it), each visited page held one of the six
  // connections a browser opens to one origin, and the seventh page
  // waited about a minute for a free one. A page brought back by Back
  // follows again, and fetches what it missed.
  window.addEventListener("pagehide", function () {
    stream.close();
  });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) {
      follow();
      refresh();
    }
  });
})();

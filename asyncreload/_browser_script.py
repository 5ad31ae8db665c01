"""The script that live reload adds to pages, and what it listens to: one for ``serve``'s
workers and ``run``'s live reload server alike (stdlib-only: the worker imports it).

The script names the server it came from in ``data-worker`` (a page that includes it by hand has
none, and takes the first ``hello`` it gets). It opens :data:`EVENTS` beside its own URL and
reacts to what comes: ``hello`` (the name of what serves now: another than the page's reloads
it), ``page`` (reload), ``css`` (swap the page's own stylesheets in place) and ``broken`` (the
new code failed: show its error over the page).
"""

from __future__ import annotations

__all__ = ["EVENTS", "JAVASCRIPT", "PREFIX", "SCRIPT", "event"]

PREFIX = "/__asyncreload__/"
EVENTS = PREFIX + "events"
SCRIPT = PREFIX + "live.js"

JAVASCRIPT = """\
(() => {
  const me = document.currentScript;
  // The worker that served this page; a page that includes the script itself (asyncreload run)
  // has none, and takes the first one it hears of.
  let page = me.dataset.worker;
  const events = new EventSource(me.src.replace(/live\\.js(\\?.*)?$/, "events"));
  const reload = () => {
    events.close();
    location.reload();
  };
  events.addEventListener("hello", (e) => {
    if (page === undefined) page = e.data;
    else if (e.data !== page) reload();
  });
  events.addEventListener("page", reload);
  // A stylesheet changed: each of this site's is fetched again, and swapped for the old one
  // once it has loaded (no flash of an unstyled page); the page itself stays as it is.
  events.addEventListener("css", () => {
    const stamp = Date.now().toString(36);
    for (const link of document.querySelectorAll('link[rel~="stylesheet"]')) {
      const url = new URL(link.href, location.href);
      if (url.origin !== location.origin) continue;
      url.searchParams.set("asyncreload", stamp);
      const fresh = link.cloneNode();
      fresh.href = url.href;
      const done = () => link.remove();
      fresh.addEventListener("load", done);
      fresh.addEventListener("error", done);
      link.after(fresh);
    }
  });
  events.addEventListener("broken", (e) => {
    let box = document.getElementById("__asyncreload_error");
    if (!box) {
      box = document.createElement("pre");
      box.id = "__asyncreload_error";
      box.style.cssText = "position:fixed;z-index:2147483647;left:1em;right:1em;bottom:1em;" +
        "max-height:40vh;overflow:auto;margin:0;padding:1em;background:#2b0b0b;color:#ffd7d7;" +
        "font:13px/1.4 monospace;border-radius:6px;box-shadow:0 4px 24px #0008;" +
        "white-space:pre-wrap";
      box.title = "asyncreload: the new code failed to load; this page is the old version";
      document.body.appendChild(box);
    }
    box.textContent = "asyncreload: the app failed to load; this page is still the old " +
      "version\\n\\n" + JSON.parse(e.data);
  });
})();
"""


def event(name: str, data: str) -> bytes:
    """One server-sent event (``data`` on one line)."""
    return f"event: {name}\ndata: {data}\n\n".encode()

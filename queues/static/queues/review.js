// The reviewer's item page: one-key decisions, media revealed only on request, the lease kept while the page is open.
(function () {
  "use strict";
  const page = document.querySelector(".review");
  if (!page) return;

  function reveal(figure) {
    const img = figure.querySelector("img[data-src]");
    if (!img) return;
    const url = img.getAttribute("data-src");
    // Only the platform's own signed links to stored copies load; nothing else is ever put in src.
    if (/^\/media\/copy\/[A-Za-z0-9:_-]+$/.test(url)) img.src = url;
    img.removeAttribute("data-src");
    img.alt = img.alt.replace(", hidden until revealed", "");
    figure.classList.remove("blurred");
    figure.classList.add("revealed");
  }

  document.querySelectorAll("[data-reveal]").forEach(function (button) {
    button.addEventListener("click", function () { reveal(button.closest("figure")); });
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.target.isContentEditable) return;
    const key = event.key.toLowerCase();
    if (key === "r") {
      document.querySelectorAll("figure.media.blurred, figure.media:not(.revealed)").forEach(reveal);
      event.preventDefault();
      return;
    }
    const focus = document.querySelector('[data-focus-key="' + key + '"]');
    if (focus) { focus.focus(); event.preventDefault(); return; }
    const button = document.querySelector('button[data-key="' + key + '"]');
    if (button) { event.preventDefault(); button.click(); }
  });

  // Tests (and people on slow links) can tell when the shortcuts are live.
  page.setAttribute("data-keys", "ready");

  const leaseUrl = page.getAttribute("data-lease-url");
  const seconds = parseInt(page.getAttribute("data-lease-seconds"), 10) || 900;
  const token = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  window.setInterval(function () {
    fetch(leaseUrl, { method: "POST", headers: { "X-CSRFToken": token }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 409) {
          const note = document.createElement("p");
          note.className = "error";
          note.textContent = "This item is no longer yours (the lease expired). Go back to your queues.";
          page.prepend(note);
        }
      });
  }, Math.max(30, seconds / 3) * 1000);
})();

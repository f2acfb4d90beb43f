// The read-only item page: its media revealed only on request, as on the review and QA pages.
(function () {
  "use strict";

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
  // The key the button shows, as on the review page.
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.key.toLowerCase() !== "r") return;
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.target.isContentEditable) return;
    document.querySelectorAll("figure.media.blurred").forEach(reveal);
  });
})();

// QA pages: media revealed only on request, one-key ratings on the calibration rating page, and on the adjudication form a preview of the error type that
// the final label implies (the server computes the real one) with the policy's severity prefilled.
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

  // The calibration rating page: one key per answer, as on the review page.
  const ratePage = document.querySelector("[data-testid=rate-page]");
  if (ratePage) {
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      const tag = (event.target.tagName || "").toLowerCase();
      if (tag === "input" || tag === "textarea" || tag === "select" || event.target.isContentEditable) return;
      const key = event.key.toLowerCase();
      const focus = ratePage.querySelector('[data-focus-key="' + key + '"]');
      if (focus) { focus.focus(); event.preventDefault(); return; }
      const button = ratePage.querySelector('button[data-key="' + key + '"]');
      if (button) { event.preventDefault(); button.click(); }
    });
    ratePage.setAttribute("data-keys", "ready");
  }

  const form = document.querySelector("form[data-adjudicate]");
  if (!form) return;
  const preview = form.querySelector("[data-error-preview]");
  const severity = form.querySelector("input[name=severity]");
  const weightsNode = document.getElementById("severities");
  const weights = weightsNode ? JSON.parse(weightsNode.textContent) : {};
  let severityTouched = false;
  if (severity) severity.addEventListener("input", function () { severityTouched = true; });

  function errorBetween(orig, correct) {
    if (orig.violation && !correct.violation) return "False positive (actioned, but no violation)";
    if (correct.violation && !orig.violation) return "False negative (a violation was missed)";
    if (!correct.violation) return "No error";
    if (orig.policy !== correct.policy) return "Wrong policy";
    if (orig.action !== correct.action) return "Wrong enforcement action";
    return "No error";
  }

  function update() {
    const checked = form.querySelector("input[name=violation]:checked");
    if (!checked) return;
    const violation = checked.value === "yes";
    const policy = violation ? form.querySelector("select[name=policy]").value : "";
    const action = violation ? form.querySelector("select[name=action]").value : "";
    const original = {
      violation: form.dataset.originalViolation === "yes",
      policy: form.dataset.originalPolicy,
      action: form.dataset.originalAction,
    };
    const found = errorBetween(original, { violation: violation, policy: policy, action: action });
    preview.textContent = found + " (preview; the server decides)";
    if (severity && !severityTouched) {
      const key = found === "No error" ? "" : (violation ? policy : "none");
      severity.value = key && weights[key] !== undefined ? weights[key] : "";
    }
  }
  form.addEventListener("change", update);
  update();
  form.setAttribute("data-preview", "ready");
})();

// Progressive help only: every page works without it. A button with data-copy="#id" copies that
// element's text to the clipboard.
document.addEventListener("click", function (ev) {
  var btn = ev.target.closest("button[data-copy]");
  if (!btn || !navigator.clipboard) return;
  var el = document.querySelector(btn.getAttribute("data-copy"));
  if (!el) return;
  navigator.clipboard.writeText(el.textContent.trim()).then(function () {
    btn.textContent = "Copied";
  });
});

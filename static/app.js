// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  document.querySelectorAll(".copy-button").forEach(function (button) {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var target = document.getElementById(button.dataset.copyTarget);
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        var label = button.firstChild;
        label.textContent = "Copied";
        setTimeout(function () { label.textContent = "Copy"; }, 2000);
      });
    });
  });
})();

// The key icon's modal: a native <dialog> (focus moves in, the page behind is inert, Escape
// closes it). Without JavaScript, or without <dialog> support, the key icon stays a link to
// a page with the same form.
(function () {
  "use strict";
  document.querySelectorAll("[data-opens-dialog]").forEach(function (opener) {
    var dialog = document.getElementById(opener.dataset.opensDialog);
    if (!dialog || typeof dialog.showModal !== "function") return;
    var fallback = opener.parentElement.querySelector(".js-hidden");
    if (fallback) fallback.hidden = true;
    opener.hidden = false;
    opener.addEventListener("click", function () { dialog.showModal(); });
    dialog.addEventListener("close", function () { opener.focus(); });
    dialog.querySelectorAll("[data-closes-dialog]").forEach(function (closer) {
      closer.addEventListener("click", function () { dialog.close(); });
    });
    // A modal <dialog> lets Tab leave for the browser's own controls: keep it inside.
    dialog.addEventListener("keydown", function (event) {
      if (event.key !== "Tab") return;
      var focusable = Array.prototype.filter.call(
        dialog.querySelectorAll("a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select, textarea"),
        function (element) { return element.offsetParent !== null; }
      );
      var first = focusable[0];
      var last = focusable[focusable.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        last.focus();
        event.preventDefault();
      } else if (!event.shiftKey && document.activeElement === last) {
        first.focus();
        event.preventDefault();
      }
    });
  });
})();

// The Client Secret is asked for only while "Client secret" is the credential chosen (without
// JavaScript both stay visible, and a certificate signup ignores the field).
(function () {
  "use strict";
  document.querySelectorAll("form").forEach(function (form) {
    var radios = form.querySelectorAll("input[name=credential_kind]");
    var secret = form.querySelector("input[name=client_secret]");
    if (!radios.length || !secret) return;
    var parts = [
      secret,
      form.querySelector("label[for='" + secret.id + "']"),
      document.getElementById(secret.id + "_helptext"),
    ];
    function update() {
      var chosen = form.querySelector("input[name=credential_kind]:checked");
      var certificate = chosen !== null && chosen.value === "certificate";
      parts.forEach(function (element) { if (element) element.hidden = certificate; });
    }
    radios.forEach(function (radio) { radio.addEventListener("change", update); });
    update();
  });
})();

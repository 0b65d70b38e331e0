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

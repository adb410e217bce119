// steadyflow dashboard: small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  var KEY = "steadyflow-token";

  // The token stays in this tab's sessionStorage: never in a cookie (a cross-site form could not
  // send it anyway) and never in a URL. Forms are filled from it and save it when submitted.
  function fillTokens() {
    var saved = null;
    try { saved = window.sessionStorage.getItem(KEY); } catch (e) { saved = null; }
    document.querySelectorAll("input.token").forEach(function (input) {
      if (saved && !input.value) { input.value = saved; }
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); return; }
    var token = form.querySelector("input.token");
    if (token && token.value) {
      try { window.sessionStorage.setItem(KEY, token.value); } catch (e) { /* private mode */ }
    }
  });

  // "load" links fetch an offloaded payload in place instead of opening it.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-load]");
    if (!link) { return; }
    event.preventDefault();
    var target = link.previousElementSibling;
    link.textContent = "loading…";
    fetch(link.getAttribute("href"), { headers: { "Accept": "application/json" } })
      .then(function (response) {
        return response.text().then(function (text) { return { ok: response.ok, text: text }; });
      })
      .then(function (result) {
        if (result.ok && target) { target.textContent = result.text; link.remove(); }
        else { link.textContent = "could not load: " + result.text; }
      })
      .catch(function (error) { link.textContent = "could not load: " + error; });
  });

  document.addEventListener("DOMContentLoaded", fillTokens);
})();

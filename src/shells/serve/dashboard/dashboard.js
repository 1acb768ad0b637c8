// ruchy-image dashboard: follows a build's log (GET /v1/builds/{id}/log?follow=true) and appends
// its text as it arrives; when a running build's log ends, reloads the page for the results.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log) {
    return;
  }
  var state = document.getElementById("log-status");
  var live = log.getAttribute("data-live") === "true";
  function say(text) {
    if (state) {
      state.textContent = text;
    }
  }
  if (!window.fetch || !window.TextDecoder || !window.ReadableStream) {
    say("This browser cannot follow the log: use the plain text link.");
    return;
  }
  var decoder = new TextDecoder();
  function append(text) {
    if (!text) {
      return;
    }
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    log.appendChild(document.createTextNode(text));
    if (atBottom) {
      log.scrollTop = log.scrollHeight;
    }
  }
  fetch(log.getAttribute("data-src"), {
    credentials: "same-origin",
    headers: { Accept: "text/plain" },
    cache: "no-store"
  }).then(function (response) {
    if (!response.ok || !response.body) {
      say("The log cannot be read (HTTP " + response.status + ").");
      return undefined;
    }
    var reader = response.body.getReader();
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          append(decoder.decode());
          if (live) {
            say("The build has ended: loading its results…");
            window.location.reload();
          } else {
            say("");
          }
          return undefined;
        }
        append(decoder.decode(chunk.value, { stream: true }));
        return pump();
      });
    }
    return pump();
  }).catch(function (error) {
    say("The log stopped: " + error.message + ". Reload the page to follow it again.");
  });
})();

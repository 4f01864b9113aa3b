// Passkeys (WebAuthn): registration on /account, passwordless sign-in on /login, the second factor on /mfa.
// The server (py_webauthn) sends the options as JSON with base64url byte fields; this file converts them to
// ArrayBuffers, calls navigator.credentials, and posts the answer back. No inline script: the CSP forbids it.
(function () {
  "use strict";

  function b64urlToBuf(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function bufToB64url(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function postJSON(url, csrf, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var data = {};
        try { data = JSON.parse(text); } catch (e) { data = {}; }
        if (!resp.ok) {
          throw new Error(data.error || "The server refused the request (HTTP " + resp.status + "). Reload the page and try again.");
        }
        return data;
      });
    });
  }

  function showError(box, err) {
    var el = document.getElementById("passkey-error");
    var msg = (err && err.name === "NotAllowedError")
      ? "The passkey request was cancelled or timed out."
      : (err && err.name === "InvalidStateError")
        ? "This authenticator already holds a passkey for your account."
        : (err && err.message) || "Something went wrong with the passkey.";
    if (el) { el.textContent = msg; el.hidden = false; }
  }

  function creationOptions(o) {
    o.challenge = b64urlToBuf(o.challenge);
    o.user.id = b64urlToBuf(o.user.id);
    (o.excludeCredentials || []).forEach(function (c) { c.id = b64urlToBuf(c.id); });
    return o;
  }

  function requestOptions(o) {
    o.challenge = b64urlToBuf(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = b64urlToBuf(c.id); });
    return o;
  }

  function registrationJSON(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: {
        clientDataJSON: bufToB64url(r.clientDataJSON), attestationObject: bufToB64url(r.attestationObject),
        transports: r.getTransports ? r.getTransports() : []
      }
    };
  }

  function assertionJSON(cred) {
    var r = cred.response;
    return {
      id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: {
        clientDataJSON: bufToB64url(r.clientDataJSON), authenticatorData: bufToB64url(r.authenticatorData),
        signature: bufToB64url(r.signature), userHandle: r.userHandle ? bufToB64url(r.userHandle) : undefined
      }
    };
  }

  function setupRegister(form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var button = document.getElementById("add-passkey"), csrf = form.dataset.csrf;
      var name = (document.getElementById("passkey-name") || {}).value || "";
      button.disabled = true;
      var link = form.dataset.link || undefined;
      postJSON(form.dataset.optionsUrl, csrf, { link: link })
        .then(function (options) { return navigator.credentials.create({ publicKey: creationOptions(options) }); })
        .then(function (cred) {
          return postJSON(form.dataset.registerUrl, csrf, { credential: registrationJSON(cred), name: name, link: link });
        })
        .then(function (data) {
          if (data.recovery_codes) { showFirstFactor(form, data); return; }
          window.location.assign(data.redirect || window.location.href);
        })
        .catch(function (err) { showError(form, err); button.disabled = false; });
    });
  }

  // A FIRST factor: every session ended (this one too); the recovery codes are shown once, here, then the user
  // signs in again with the new passkey.
  function showFirstFactor(form, data) {
    var box = document.createElement("div");
    box.id = "first-factor-done";
    var h = document.createElement("h3");
    h.textContent = "Your passkey is set up";
    var p = document.createElement("p");
    p.textContent = "Save these recovery codes somewhere safe now: each works once in place of your second " +
      "factor, and they are shown only this time. You were signed out everywhere; sign in again with your passkey.";
    var ul = document.createElement("ul");
    ul.className = "codes";
    ul.id = "recovery-codes";
    data.recovery_codes.forEach(function (code) {
      var li = document.createElement("li");
      var c = document.createElement("code");
      c.textContent = code;
      li.appendChild(c);
      ul.appendChild(li);
    });
    var a = document.createElement("a");
    a.className = "button";
    a.id = "sign-in-again";
    a.href = data.login_url || "/login";
    a.textContent = "Sign in again";
    box.appendChild(h); box.appendChild(p); box.appendChild(ul); box.appendChild(a);
    form.replaceWith(box);
  }

  function setupLogin(box, button) {
    box.hidden = false;
    button.addEventListener("click", function () {
      var csrf = box.dataset.csrf, purpose = box.dataset.purpose;
      button.disabled = true;
      postJSON(box.dataset.optionsUrl, csrf, { purpose: purpose })
        .then(function (options) { return navigator.credentials.get({ publicKey: requestOptions(options) }); })
        .then(function (cred) {
          return postJSON(box.dataset.loginUrl, csrf, {
            credential: assertionJSON(cred), purpose: purpose, next: box.dataset.next,
            request: box.dataset.request || undefined
          });
        })
        .then(function (data) { window.location.assign(data.redirect || "/"); })
        .catch(function (err) { showError(box, err); button.disabled = false; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.PublicKeyCredential || !navigator.credentials) { return; }  // the password form remains
    var form = document.getElementById("passkey-register-form");
    if (form) { setupRegister(form); }
    var box = document.getElementById("passkey-login-box");
    var button = document.getElementById("passkey-login") || document.getElementById("passkey-mfa");
    if (box && button) { setupLogin(box, button); }
  });
})();

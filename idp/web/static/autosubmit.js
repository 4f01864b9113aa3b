// HTTP-POST binding: submit the SAML form as soon as the page loads (the button remains for no-script browsers).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("saml-post");
  if (form) { form.submit(); }
});

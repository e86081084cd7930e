// Starts Swagger UI on the /docs page. A file of its own rather than an inline script, so the
// page's Content-Security-Policy can allow scripts from this origin only.
"use strict";

window.ui = SwaggerUIBundle({
  // Relative to the page (/docs -> /openapi.json), so it also works under a stage prefix.
  url: new URL("openapi.json", window.location.href).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  // Swagger's authorization state holds the password form and the token: keep it in the page
  // only, never in localStorage.
  persistAuthorization: false,
  // No badge fetched from validator.swagger.io: nothing leaves this origin.
  validatorUrl: null,
  tryItOutEnabled: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});

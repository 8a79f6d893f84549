// Swagger UI for /schema, started from a file of the app (the CSP allows no inline script).
"use strict";
(function () {
  const container = document.getElementById("swagger-container");
  const csrf = (document.cookie.split("; ").find((c) => c.startsWith("csrftoken=")) || "").slice(10);
  window.SwaggerUIBundle({
    url: container.dataset.specUrl,
    dom_id: "#swagger-container",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIStandalonePreset],
    requestInterceptor: (request) => {
      if (csrf) request.headers["x-csrftoken"] = decodeURIComponent(csrf);
      return request;
    },
  });
})();

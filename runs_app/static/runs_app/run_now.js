"use strict";
// Run now: choosing another run configuration puts its defaults into the parameter fields the
// operator has not edited, and says which default each field has (the server compares the
// same way: a field equal to its configuration's default is not sent as a parameter).
(function () {
  const data = document.getElementById("ff-run-config-defaults");
  const select = document.getElementById("id_run_config_id");
  if (!data || !select) {
    return;
  }
  const defaults = JSON.parse(data.textContent);
  const fields = Array.from(document.querySelectorAll("input[data-ff-parameter]"));
  let previous = defaults[select.value] || {};

  select.addEventListener("change", function () {
    const current = defaults[select.value] || {};
    fields.forEach(function (input) {
      const key = input.dataset.ffParameter;
      const untouched = input.value === (previous[key] || "");
      if (untouched) {
        input.value = current[key] || "";
      }
      const help = document.getElementById(input.id + "_helptext");
      if (help) {
        help.textContent = key in current
          ? "Default: '" + current[key] + "' (pipeline.json). Change it to pass a parameter."
          : "Not set by this run configuration.";
      }
    });
    previous = current;
  });
})();

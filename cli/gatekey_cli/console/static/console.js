// Gatekey console: the only script (the CSP allows no other, and no inline one).
// Copy buttons: <button data-copy="ID"> copies the value (or text) of the element #ID.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) {
    return;
  }
  const source = document.getElementById(button.dataset.copy);
  const status = document.getElementById(button.dataset.copy + "-status");
  const text = "value" in source ? source.value : source.textContent;
  let said;
  try {
    await navigator.clipboard.writeText(text);
    said = "Copied";
  } catch (error) {
    if (source.select) {
      source.select();
    }
    said = "Copying is blocked: press Ctrl+C";
  }
  if (status) {
    status.textContent = said;
  }
});

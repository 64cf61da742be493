// Admin pages: copy buttons for snippets, tokens and secrets.
import { t } from "./util.js";

for (const button of document.querySelectorAll("[data-copy]")) {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const text = source.value || source.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      source.select();
      document.execCommand("copy");
    }
    const label = button.textContent;
    button.textContent = button.dataset.done || t("admin.copied");
    setTimeout(() => (button.textContent = label), 1500);
  });
}

/* The console's small client state (Alpine.js components). Loaded before Alpine starts. */
document.addEventListener("alpine:init", () => {
  // The show-once dialog: copy the secret; leaving the dialog goes back to the page it came from
  // (re-read: the secret is never in it).
  window.Alpine.data("secretBox", () => ({
    copied: false,
    async copy() {
      const input = this.$refs.secret;
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (error) {
        input.focus();
        input.select();
        document.execCommand("copy");
      }
      this.copied = true;
    },
    leave(back) {
      window.location.assign(back);
    },
  }));
});

// Webhook events: "every event" and single types exclude each other (the API refuses both).
window.pickEvents = (fieldset, changed) => {
  if (!changed.checked) return;
  for (const box of fieldset.querySelectorAll("input[name=events]")) {
    if (box !== changed && (box.value === "*" || changed.value === "*")) box.checked = false;
  }
};

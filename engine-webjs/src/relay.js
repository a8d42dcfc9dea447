// Runs in Centinela's own isolated world of every document, where the CDP
// binding window.__centinela exists; WhatsApp's scripts (the main world)
// never see the binding. The page agent (inject.js, main world) posts its
// reports as CustomEvents on a channel named by a random token of this
// launch; this relay hands each one to the binding. Rust validates and caps
// every report (64 KiB); anything far longer is cut here so it is not
// carried whole over DevTools, and is then dropped and counted there.
(() => {
  if (window.top !== window) return;
  const CHANNEL = '__CHANNEL__';
  const LIMIT = 64 * 1024 + 1;
  document.addEventListener(CHANNEL, (e) => {
    const d = e.detail;
    if (typeof d !== 'string') return;
    try { globalThis.__centinela(d.length > LIMIT ? d.slice(0, LIMIT) : d); } catch (err) { /* binding gone */ }
  });
  const ready = () => document.dispatchEvent(new CustomEvent(CHANNEL + ':ready'));
  // Whichever world runs first, the agent learns the relay listens.
  document.addEventListener(CHANNEL + ':hello', ready);
  ready();
})();

// In the site widget's panel (a frame), Escape closes the panel: the keys
// stay in the frame, so the page tells the widget. Nothing else is said.
if (window.parent !== window) {
  window.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !document.querySelector('dialog[open]')) {
      window.parent.postMessage({ callbackd: 'close' }, '*');
    }
  });
}

// callbackd's widget for the contact centre's own site: one script tag
//
//   <script src="https://callbackd.example/assets/widget.js"
//           data-scenario="chat-delay" data-page="callback"
//           data-label="Talk to us" data-lang="ar" defer></script>
//
// adds a button in the page's corner that opens the callback page
// (`data-page="callback"`, the default) or the booking page (`"book"`) of
// `data-scenario` in a panel. The panel is a frame of callbackd's own page,
// so callbackd must allow the site with `--frame-origin`. Everything lives
// in a shadow root with a constructed stylesheet: nothing leaks into the
// site, and the site's CSP needs no inline style.
(() => {
  const script = document.currentScript;
  if (!script) return;
  const origin = new URL(script.src).origin;
  const data = script.dataset;
  const scenario = data.scenario;
  if (!scenario) {
    console.warn('callbackd widget: data-scenario is missing');
    return;
  }
  const kind = data.page === 'book' ? 'book' : 'callback';
  const label = data.label || (kind === 'book' ? 'Book a call' : 'Talk to us');
  const query = new URLSearchParams();
  if (data.lang) query.set('lang', data.lang);
  const src = `${origin}/${kind}/${encodeURIComponent(scenario)}${query.toString() ? `?${query}` : ''}`;
  const side = data.position === 'left' ? 'left' : 'right';

  const host = document.createElement('div');
  host.setAttribute('data-callbackd-widget', '');
  const root = host.attachShadow({ mode: 'open' });
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(`
    :host { all: initial; }
    .launcher {
      position: fixed; ${side}: 20px; bottom: 20px; z-index: 2147483000;
      font: 600 15px/1 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
      color: #fff; background: ${data.color || '#2453d4'}; border: 0; border-radius: 999px;
      padding: 14px 20px; min-height: 48px; box-shadow: 0 8px 24px rgb(16 24 40 / 25%); cursor: pointer;
    }
    .launcher:focus-visible, .close:focus-visible { outline: 3px solid #9bb5f5; outline-offset: 2px; }
    .panel {
      position: fixed; ${side}: 20px; bottom: 84px; z-index: 2147483001;
      width: 400px; height: min(680px, calc(100vh - 110px)); background: #fff;
      border-radius: 16px; box-shadow: 0 16px 48px rgb(16 24 40 / 30%); overflow: hidden;
      display: flex; flex-direction: column;
    }
    .panel[hidden] { display: none; }
    .bar { display: flex; justify-content: flex-end; padding: 6px; background: #f4f6fb; border-bottom: 1px solid #dde2ec; }
    .close {
      font: 600 14px system-ui, sans-serif; border: 1px solid #c5ccda; background: #fff; color: #1b2333;
      border-radius: 8px; min-height: 36px; padding: 0 12px; cursor: pointer;
    }
    iframe { border: 0; width: 100%; flex: 1; }
    @media (max-width: 480px) {
      .panel { inset: 0; width: auto; height: auto; border-radius: 0; }
    }
  `);
  root.adoptedStyleSheets = [sheet];

  const launcher = document.createElement('button');
  launcher.type = 'button';
  launcher.className = 'launcher';
  launcher.textContent = label;
  launcher.setAttribute('aria-expanded', 'false');
  launcher.setAttribute('aria-controls', 'callbackd-panel');

  const panel = document.createElement('div');
  panel.className = 'panel';
  panel.id = 'callbackd-panel';
  panel.setAttribute('role', 'dialog');
  panel.setAttribute('aria-label', label);
  panel.hidden = true;
  const bar = document.createElement('div');
  bar.className = 'bar';
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'close';
  close.textContent = data.closeLabel || (data.lang === 'ar' ? 'إغلاق' : 'Close');
  bar.append(close);
  panel.append(bar);
  let frame = null;

  const open = () => {
    if (!frame) {
      // Loaded on first open: a site visit costs callbackd nothing.
      frame = document.createElement('iframe');
      frame.title = label;
      frame.src = src;
      frame.allow = 'camera; microphone; display-capture; autoplay';
      panel.append(frame);
    }
    panel.hidden = false;
    launcher.setAttribute('aria-expanded', 'true');
    close.focus();
  };
  const shut = () => {
    panel.hidden = true;
    launcher.setAttribute('aria-expanded', 'false');
    launcher.focus();
  };
  launcher.addEventListener('click', () => (panel.hidden ? open() : shut()));
  close.addEventListener('click', shut);
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') shut();
  });
  // Escape inside the frame: callbackd's page says so.
  window.addEventListener('message', (e) => {
    if (e.origin === origin && e.data && e.data.callbackd === 'close' && !panel.hidden) shut();
  });
  root.append(panel, launcher);
  const attach = () => document.body.append(host);
  if (document.body) attach();
  else document.addEventListener('DOMContentLoaded', attach);
})();

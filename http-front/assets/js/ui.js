// What every page does the same way: its error and notice lines, a failed
// call shown to people, a value kept for the tab (sessionStorage), and a
// confirmation dialog answered.

import { ApiError } from './api.js';
import { t } from './i18n.js';

export const $ = (id) => document.getElementById(id);

/// The page's alert line (`#error`); empty hides it.
export function showError(message) {
  $('error').textContent = message || '';
  $('error').hidden = !message;
}

/// The page's status line (`#notice`); empty hides it.
export function notice(message) {
  $('notice').textContent = message || '';
  $('notice').hidden = !message;
}

/// A failed call: the API's message (it names the field), else that the
/// service could not be reached.
export function failed(e) {
  if (e instanceof ApiError && e.body?.message) return showError(e.body.message);
  showError(t('error.network', 'We could not reach the service. Please try again.'));
}

/// A JSON value kept for this tab under `key` (a reload keeps it).
export function stored(key) {
  return {
    load() {
      try {
        return JSON.parse(sessionStorage.getItem(key)) || null;
      } catch {
        return null;
      }
    },
    save(value) {
      if (value) sessionStorage.setItem(key, JSON.stringify(value));
      else sessionStorage.removeItem(key);
    },
  };
}

/// Opens a `<dialog>` of buttons with values; its answer (`returnValue`).
export function ask(dialog) {
  dialog.showModal();
  return new Promise((resolve) =>
    dialog.addEventListener('close', () => resolve(dialog.returnValue), { once: true }),
  );
}

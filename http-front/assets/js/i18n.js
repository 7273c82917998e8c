// Translations: elements carry `data-i18n="key"` (their text) and
// `data-i18n-attr="attr:key;…"`; the English text in the markup is the
// fallback. The language is `?lang=`, else the last one chosen, else the
// browser's; a right-to-left language turns the page with `dir="rtl"`.

const SUPPORTED = ['en', 'ar'];
const RTL = new Set(['ar', 'he', 'fa', 'ur']);
let table = {};
let current = 'en';

export function pickLanguage() {
  const asked = new URLSearchParams(location.search).get('lang');
  const stored = safeStorage()?.getItem('callbackd:lang');
  const browser = (navigator.languages || [navigator.language || 'en']).map((l) => l.slice(0, 2));
  for (const lang of [asked, stored, ...browser]) {
    if (lang && SUPPORTED.includes(lang)) return lang;
  }
  return 'en';
}

export async function setLanguage(lang) {
  current = SUPPORTED.includes(lang) ? lang : 'en';
  table = {};
  if (current !== 'en') {
    const res = await fetch(`/assets/i18n/${current}.json`);
    if (res.ok) table = await res.json();
  }
  const root = document.documentElement;
  root.lang = current;
  root.dir = RTL.has(current) ? 'rtl' : 'ltr';
  safeStorage()?.setItem('callbackd:lang', current);
  apply(document);
}

/// The current language (a BCP 47 tag for Intl).
export function language() {
  return current;
}

/// `key`'s text, with `{name}` filled from `vars`; `fallback` when no
/// translation has it.
export function t(key, fallback, vars = {}) {
  const text = table[key] ?? fallback;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ''));
}

export function apply(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    if (!el.dataset.i18nDefault) el.dataset.i18nDefault = el.textContent;
    el.textContent = t(el.dataset.i18n, el.dataset.i18nDefault);
  }
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.dataset.i18nAttr.split(';')) {
      const [attr, key] = pair.split(':');
      const saved = `i18nDefault${attr.replace(/[^a-z]/gi, '')}`;
      if (!el.dataset[saved]) el.dataset[saved] = el.getAttribute(attr) ?? '';
      el.setAttribute(attr, t(key, el.dataset[saved]));
    }
  }
}

/// A duration in seconds as people say it: "under a minute", "4 min".
export function duration(seconds) {
  if (seconds == null || Number.isNaN(seconds) || seconds < 0) return t('time.unknown', 'Not known yet');
  if (seconds < 60) return t('time.underMinute', 'Under a minute');
  const minutes = Math.round(seconds / 60);
  return new Intl.NumberFormat(current, { style: 'unit', unit: 'minute', unitDisplay: 'short' }).format(minutes);
}

/// A time of day in the viewer's own time zone.
export function clock(date) {
  return new Intl.DateTimeFormat(current, { timeStyle: 'short' }).format(date);
}

export function number(n) {
  return new Intl.NumberFormat(current).format(n);
}

function safeStorage() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

// Calls to callbackd's API from the pages: the same routes apps use.
// Errors carry the API's JSON message, shown to people as text.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// A staff page's credential (an agent key, `name:secret`, or a JWT), sent as
// a Bearer token; none on a server running open.
let credential = null;

export function useCredential(token) {
  credential = token || null;
}

async function call(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (credential) init.headers.Authorization = `Bearer ${credential}`;
  if (body instanceof FormData) {
    init.body = body; // multipart/form-data, as GMS apps send it
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

/// A GET answered with its JSON and headers (a page's total), or a file.
export async function fetchWith(path, as = 'json') {
  const headers = { Accept: as === 'json' ? 'application/json' : '*/*' };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  const res = await fetch(path, { headers });
  if (!res.ok) {
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    throw new ApiError(res.status, body);
  }
  return { headers: res.headers, body: as === 'json' ? await res.json() : await res.blob() };
}

export const api = {
  get: (path) => call('GET', path),
  post: (path, body) => call('POST', path, body ?? new FormData()),
  put: (path, body) => call('PUT', path, body),
  del: (path) => call('DELETE', path),
};

/// A FormData from a plain object, leaving out empty values.
export function form(fields) {
  const data = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (v !== undefined && v !== null && String(v).trim() !== '') data.append(k, String(v).trim());
  }
  return data;
}

/// Digits, spaces and the usual separators, with 6 to 15 digits (E.164's
/// most); the server checks more where the scenario asks it to.
export function plausiblePhone(text) {
  const value = String(text).trim();
  const digits = value.replace(/\D/g, '');
  return /^\+?[\d\s().-]+$/.test(value) && digits.length >= 6 && digits.length <= 15;
}

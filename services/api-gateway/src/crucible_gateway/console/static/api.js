// The console's one way to the gateway: every request carries the operator token of this tab.

const TOKEN_KEY = "crucible.operatorToken";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    const message = body && body.error ? body.error.message : `HTTP ${status}`;
    super(message);
    this.status = status;
    this.body = body;
  }
  get unauthorised() {
    return this.status === 401 || this.status === 403;
  }
}

export function authHeaders() {
  return { "X-Operator-Token": token.get() || "" };
}

// JSON in, JSON out; ApiError with the gateway's one error body for any non-2xx answer.
export async function api(path, { method = "GET", body, query, signal } = {}) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      for (const item of Array.isArray(value) ? value : [value]) {
        if (item !== undefined && item !== null && item !== "") params.append(key, item);
      }
    }
    if ([...params].length) url += `?${params}`;
  }
  const response = await fetch(url, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: { message: text } };
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Calls to the service, with the one credential this tab holds. The credential lives in
// this module's memory only — never in localStorage, sessionStorage or a cookie — so it
// is gone when the tab closes (a reload asks for an API key again; a client token comes
// back from the URL fragment).

export type Credential =
  | { kind: 'none' }
  | { kind: 'key'; key: string }
  | { kind: 'token'; token: string };

let credential: Credential = { kind: 'none' };

export function useCredential(next: Credential): void {
  credential = next;
}

export function currentCredential(): Credential {
  return credential;
}

/** An error answer of the service (or a stream's `error` event), as the contract gives it. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export function sessionPath(id: string): string {
  return `/v1/sessions/${encodeURIComponent(id)}`;
}

export function headers(extra: Record<string, string> = {}): Record<string, string> {
  const all: Record<string, string> = { ...extra };
  if (credential.kind === 'key') all['Authorization'] = `Bearer ${credential.key}`;
  if (credential.kind === 'token') all['Authorization'] = `Bearer ${credential.token}`;
  return all;
}

/** A JSON call; a non-2xx answer throws its [`ApiFailure`]. */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await send(path, init);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

/** `fetch` that throws an [`ApiFailure`] for a non-2xx answer or a network failure. */
export async function send(path: string, init: RequestInit): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiFailure(0, 'network_error', 'The service could not be reached.');
  }
  if (!response.ok) throw await failureOf(response);
  return response;
}

/** Reads an error answer: the session API's flat `{error, message}` or OpenAI's `{error: {…}}`. */
async function failureOf(response: Response): Promise<ApiFailure> {
  let body: Record<string, unknown> = {};
  try {
    body = (await response.json()) as Record<string, unknown>;
  } catch {
    // Not JSON: the status says enough.
  }
  return failureFromBody(response.status, body);
}

export function failureFromBody(status: number, body: Record<string, unknown>): ApiFailure {
  const nested = body['error'];
  if (nested && typeof nested === 'object') {
    const openai = nested as Record<string, unknown>;
    return new ApiFailure(status, String(openai['code'] ?? openai['type'] ?? 'error'), String(openai['message'] ?? ''), body);
  }
  const code = typeof nested === 'string' ? nested : `http_${status}`;
  return new ApiFailure(status, code, String(body['message'] ?? `HTTP ${status}`), body);
}

/** What the page says about a failure: the service's own message, its code, and why it matters here. */
export function describe(failure: unknown): string {
  if (!(failure instanceof ApiFailure)) return `Unexpected error: ${String(failure)}`;
  const status = failure.status > 0 ? `${failure.status} ` : '';
  const parts = [`${failure.message} (${status}${failure.code})`];
  const field = failure.body['field'];
  if (typeof field === 'string') parts.push(`Field: ${field}.`);
  const attempts = failure.body['attempts'];
  if (Array.isArray(attempts) && attempts.length > 0) {
    const tried = attempts.map((a: Record<string, unknown>) => `${String(a['model'])}: ${String(a['error'] ?? a['status'])}`);
    parts.push(`Attempts: ${tried.join('; ')}.`);
  }
  const hint = HINTS[failure.code];
  if (hint) parts.push(hint(failure));
  return parts.join(' ');
}

const HINTS: Record<string, (f: ApiFailure) => string> = {
  forbidden: () =>
    credential.kind === 'token'
      ? 'A client token covers its own session only: its messages, its context and the session itself.'
      : 'This credential is not allowed here.',
  invalid_api_key: () => 'The key (or client token) is missing, unknown, expired or revoked.',
  session_not_found: () => 'The session is unknown, expired or deleted.',
  session_busy: (f) => `Try again in ${String(f.body['retry_after'] ?? 1)} s.`,
  rate_limit_exceeded: (f) => `Try again in ${String(f.body['retry_after'] ?? 1)} s.`,
};

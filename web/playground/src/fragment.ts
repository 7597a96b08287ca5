// What the URL fragment holds: `#session=<id>` makes a reload or a second tab continue the
// same conversation, and `&token=srt_…` is a session-scoped client token, the credential
// an app hands a browser. A fragment is never sent to the server, so neither reaches a
// request log; the token does stay in this browser's history, like any URL.

export interface Fragment {
  session?: string;
  token?: string;
}

export function readFragment(): Fragment {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const fragment: Fragment = {};
  const session = params.get('session');
  const token = params.get('token');
  if (session) fragment.session = session;
  if (token) fragment.token = token;
  return fragment;
}

/** Replaces the fragment without a history entry (and without a `hashchange`). */
export function writeFragment(fragment: Fragment): void {
  const params = new URLSearchParams();
  if (fragment.session) params.set('session', fragment.session);
  if (fragment.token) params.set('token', fragment.token);
  const query = params.toString();
  const hash = query ? `#${query}` : '';
  window.history.replaceState(null, '', `${window.location.pathname}${window.location.search}${hash}`);
}

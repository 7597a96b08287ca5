// The playground: wires the panels to the service. Boot decides the credential — a
// client token from the URL fragment, none in loopback mode (the service has no keys
// and serves this machine only), or an API key typed in and held in memory — then opens
// the session the fragment names, if any.

import { ApiFailure, call, currentCredential, describe, headers, send, sessionPath, useCredential } from './api';
import { ContextPanel } from './context_panel';
import { byId, h, setText } from './dom';
import { readFragment, writeFragment } from './fragment';
import { SessionsPanel } from './sessions_panel';
import { sendStreaming } from './stream';
import { PAGE_SIZE, Transcript } from './transcript';
import type { ContextView, Message, Page, Session } from './types';

let sessionId: string | null = null;
let sending = false;

const messageBox = byId<HTMLTextAreaElement>('message');
const sendButton = byId<HTMLButtonElement>('send');
const context = new ContextPanel();
const transcript = new Transcript(byId('transcript'), byId('transcript-empty'), readPage, showError);
const sessions = new SessionsPanel((id) => void openSession(id));

function readPage(after: string | null): Promise<Page<Message>> {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (after) query.set('after', after);
  return call<Page<Message>>('GET', `${sessionPath(sessionId ?? '')}/messages?${query}`);
}

async function boot(): Promise<void> {
  const { token } = readFragment();
  if (token) {
    useCredential({ kind: 'token', token });
    setText('auth-status', 'Client token from the URL: this one session’s messages and context only.');
    return enter();
  }
  try {
    await call('GET', '/v1/status');
    setText('auth-status', 'Loopback mode: the service has no API keys and serves this machine only, so no key is needed.');
    return enter();
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 401) return askForKey();
    setText('auth-status', `The service refused this page: ${describe(err)}`);
  }
}

function askForKey(): void {
  setText('auth-status', 'This service needs an API key.');
  byId('key-form').hidden = false;
  byId('forget-key').hidden = true;
  byId('workspace').hidden = true;
  byId('api-key').focus();
}

async function useKey(key: string): Promise<void> {
  useCredential({ key, kind: 'key' });
  try {
    await call('GET', '/v1/status');
  } catch (err) {
    useCredential({ kind: 'none' });
    setText('key-error', `Key refused: ${describe(err)}`);
    byId('api-key').focus();
    return;
  }
  byId<HTMLInputElement>('api-key').value = '';
  setText('key-error', '');
  byId('key-form').hidden = true;
  byId('forget-key').hidden = false;
  setText('auth-status', 'Using an API key held in this tab’s memory only: a reload asks for it again.');
  await enter();
}

async function enter(): Promise<void> {
  byId('workspace').hidden = false;
  await sessions.loadModels();
  const { session } = readFragment();
  if (session) await openSession(session);
  else byId('model').focus();
}

async function openSession(id: string): Promise<void> {
  clearError();
  let session: Session;
  try {
    session = await call<Session>('GET', sessionPath(id));
  } catch (err) {
    showError(`Session ${id} could not be opened: ${describe(err)}`);
    return;
  }
  sessionId = id;
  writeFragment(fragmentFor(id));
  setText('session-id', id);
  setText('send-status', '');
  for (const part of ['session-bar', 'composer']) byId(part).hidden = false;
  byId('no-session').hidden = true;
  transcript.reset();
  context.clear();
  await transcript.loadMore();
  await refresh(session.session_id);
  messageBox.focus();
}

function closeSession(): void {
  sessionId = null;
  writeFragment(fragmentFor(undefined));
  for (const part of ['session-bar', 'composer']) byId(part).hidden = true;
  byId('no-session').hidden = false;
  transcript.reset();
  context.clear();
}

/** The fragment for a session; a client token stays in it, so a reload keeps working. */
function fragmentFor(session: string | undefined) {
  const credential = currentCredential();
  return {
    ...(session ? { session } : {}),
    ...(credential.kind === 'token' ? { token: credential.token } : {}),
  };
}

/** Reads the session and its context and draws the panel; `first` runs between the two. */
async function refresh(id: string, first?: (session: Session) => void): Promise<void> {
  let state: [Session, ContextView];
  try {
    state = await Promise.all([call<Session>('GET', sessionPath(id)), call<ContextView>('GET', `${sessionPath(id)}/context`)]);
  } catch (err) {
    showError(`The context could not be read: ${describe(err)}`);
    return;
  }
  if (id !== sessionId) return;
  const [session, view] = state;
  first?.(session);
  transcript.markDropped(view.dropped_messages);
  context.render(session, view, transcript.droppedTurns());
}

async function sendMessage(): Promise<void> {
  const content = messageBox.value;
  const id = sessionId;
  if (!id || sending || !content.trim()) return;
  sending = true;
  sendButton.disabled = true;
  clearError();
  status('Streaming the answer…', 'streaming');
  const turn = transcript.begin(content);
  messageBox.value = '';
  try {
    const response = await sendStreaming(id, content, (text) => transcript.append(turn, text));
    transcript.finish(turn, response);
    context.lastSend(response);
    await refresh(id, (session) => transcript.place(turn, session.message_count));
    if (response.finish_reason === 'tool_calls') {
      // This page sends text; the calls' results go through the API (`messages`, role `tool`).
      status('Answer stored. The model asked for tool results: send them through the API before the next message.', 'busy');
    } else {
      status('Answer stored.', 'done');
    }
  } catch (err) {
    // Nothing was stored: the text goes back to the box for a retry.
    if (!messageBox.value) messageBox.value = content;
    if (err instanceof ApiFailure && err.code === 'session_busy') {
      transcript.withdraw(turn);
      status(`Session busy: ${describe(err)}`, 'busy');
    } else {
      transcript.fail(turn, err);
      status('The answer failed and nothing was stored; the error is shown in the conversation.', 'failed');
      await refresh(id);
    }
  } finally {
    sending = false;
    sendButton.disabled = false;
  }
}

async function exportSession(): Promise<void> {
  if (!sessionId) return;
  const name = `session-${sessionId}.ndjson`;
  try {
    const response = await send(`${sessionPath(sessionId)}/export`, { headers: headers() });
    const url = URL.createObjectURL(await response.blob());
    const link = h('a', { href: url, download: name, hidden: '' });
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
    status(`Exported as ${name}.`, 'done');
  } catch (err) {
    showError(`Export failed: ${describe(err)}`);
  }
}

async function deleteSession(): Promise<void> {
  const id = sessionId;
  if (!id || !window.confirm(`Delete session ${id} and its whole history?`)) return;
  try {
    await call('DELETE', sessionPath(id));
  } catch (err) {
    showError(`Delete failed: ${describe(err)}`);
    return;
  }
  closeSession();
  setText('sessions-status', `Session ${id} deleted.`);
  byId('model').focus();
}

function status(text: string, kind: string): void {
  const line = byId('send-status');
  line.textContent = text;
  line.className = `status ${kind}`;
}

function showError(text: string): void {
  setText('conversation-error', text);
}

function clearError(): void {
  setText('conversation-error', '');
}

byId('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  void useKey(byId<HTMLInputElement>('api-key').value.trim());
});
byId('forget-key').addEventListener('click', () => {
  useCredential({ kind: 'none' });
  closeSession();
  askForKey();
});
byId('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  void sendMessage();
});
// Enter sends, Shift+Enter is a new line (and Enter while an input method composes is its own).
messageBox.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    byId<HTMLFormElement>('composer').requestSubmit();
  }
});
byId('export').addEventListener('click', () => void exportSession());
byId('delete').addEventListener('click', () => void deleteSession());
window.addEventListener('hashchange', () => {
  const fragment = readFragment();
  const credential = currentCredential();
  if ((fragment.token ?? null) !== (credential.kind === 'token' ? credential.token : null)) window.location.reload();
  else if (fragment.session && fragment.session !== sessionId) void openSession(fragment.session);
});

void boot();

// Making and finding sessions: the create form (models from `/v1/models`), opening an
// id, and a user's live sessions (`/v1/users/{user_id}/sessions`, a page at a time).

import { call, describe } from './api';
import { byId, count, fill, h, setText } from './dom';
import type { ModelList, Page, Session } from './types';

const USER_PAGE_SIZE = 10;

export class SessionsPanel {
  private userId = '';
  private userCursor: string | null = null;

  constructor(private readonly open: (id: string) => void) {
    byId('create-form').addEventListener('submit', (e) => {
      e.preventDefault();
      void this.create();
    });
    byId('open-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const id = byId<HTMLInputElement>('open-id').value.trim();
      if (id) this.open(id);
    });
    byId('user-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.userId = byId<HTMLInputElement>('list-user').value.trim();
      this.userCursor = null;
      fill(byId('user-sessions'));
      void this.listUser();
    });
    byId('user-more').addEventListener('click', () => void this.listUser());
  }

  /** Fills the model picker; the first model (the service's order) is preselected. */
  async loadModels(): Promise<void> {
    const picker = byId<HTMLSelectElement>('model');
    try {
      const models = await call<ModelList>('GET', '/v1/models');
      fill(picker, ...models.data.map((m) => h('option', { value: m.id }, m.id)));
      setText('model-help', `Fallbacks may name any of: ${models.data.map((m) => m.id).join(', ')}.`);
    } catch (err) {
      fill(picker, h('option', { value: '' }, 'the service default'));
      setText('model-help', `Models could not be listed: ${describe(err)}`);
    }
  }

  private async create(): Promise<void> {
    const status = byId('create-status');
    status.textContent = '';
    try {
      const session = await call<Session>('POST', '/v1/sessions', createBody());
      this.open(session.session_id);
    } catch (err) {
      status.textContent = `The session was not created: ${describe(err)}`;
    }
  }

  private async listUser(): Promise<void> {
    const status = byId('user-status');
    const more = byId<HTMLButtonElement>('user-more');
    status.textContent = 'Listing…';
    more.hidden = true;
    const query = new URLSearchParams({ limit: String(USER_PAGE_SIZE) });
    if (this.userCursor) query.set('after', this.userCursor);
    try {
      const page = await call<Page<Session>>('GET', `/v1/users/${encodeURIComponent(this.userId)}/sessions?${query}`);
      byId('user-sessions').append(...page.data.map((s) => this.sessionItem(s)));
      this.userCursor = page.next_cursor;
      more.hidden = !page.has_more;
      const shown = byId('user-sessions').childElementCount;
      status.textContent = `${count(shown)} session${shown === 1 ? '' : 's'} of ${this.userId}${page.has_more ? ', more to list' : ''}.`;
    } catch (err) {
      status.textContent = `Listing refused: ${describe(err)}`;
    }
  }

  private sessionItem(session: Session): HTMLLIElement {
    const button = h('button', { type: 'button', 'aria-label': `Open session ${session.session_id}` }, 'Open');
    button.addEventListener('click', () => this.open(session.session_id));
    const about = `${session.model}, ${count(session.message_count)} messages, since ${new Date(session.created_at).toLocaleString()}`;
    return h('li', {}, h('code', {}, session.session_id), ' ', h('span', { class: 'help' }, about), ' ', button);
  }
}

/** The create body: only the fields the form sets, so the service's defaults apply to the rest. */
function createBody(): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const model = value('model');
  if (model) body['model'] = model;
  const fallbacks = value('fallbacks')
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean);
  if (fallbacks.length > 0) body['fallback_models'] = fallbacks;
  const prompt = value('system-prompt');
  if (prompt) body['system_prompt'] = prompt;
  for (const [id, field] of [
    ['context-window', 'context_window'],
    ['max-context-tokens', 'max_context_tokens'],
    ['ttl-seconds', 'ttl_seconds'],
  ] as const) {
    const number = value(id);
    if (number) body[field] = Number(number);
  }
  const user = value('user-id');
  if (user) body['user_id'] = user;
  return body;
}

function value(id: string): string {
  return byId<HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>(id).value.trim();
}

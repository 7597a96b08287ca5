// The conversation as the service stores it, read a page at a time (`…/messages` with
// `after` cursors, oldest first), plus this tab's sends while they stream.
//
// Stored turns are kept by their position in the session's history: the pages fill
// positions from 0, and a completed send takes the two positions the session's
// `message_count` says it got. So a page read later that covers a turn sent here simply
// replaces it, and turns the context leaves out (the oldest `dropped_messages`) can be
// marked wherever they are.

import { describe } from './api';
import { count, h } from './dom';
import { turnText } from './turn_text';
import type { Message, Page, SendResponse } from './types';

export const PAGE_SIZE = 20;

const ROLE_NAMES: Record<string, string> = { user: 'You', assistant: 'Assistant', system: 'System', developer: 'Developer', tool: 'Tool' };

interface Shown {
  element: HTMLLIElement;
  badge: HTMLElement;
  body: HTMLElement;
  role: string;
  text: string;
}

/** One send of this tab: the user's turn and the reply as it streams. */
export interface Sending {
  user: Shown;
  reply: Shown;
}

export class Transcript {
  private stored = new Map<number, Shown>();
  private live: Sending[] = [];
  private loaded = 0;
  private cursor: string | null = null;
  private hasMore = false;
  private dropped = 0;
  private readonly more: HTMLLIElement;
  private readonly moreButton: HTMLButtonElement;

  constructor(
    private readonly list: HTMLOListElement,
    private readonly empty: HTMLElement,
    private readonly fetchPage: (after: string | null) => Promise<Page<Message>>,
    private readonly onError: (message: string) => void,
  ) {
    this.moreButton = h('button', { type: 'button', id: 'load-more' }, `Load ${PAGE_SIZE} more messages`);
    this.moreButton.addEventListener('click', () => void this.loadMore(true));
    this.more = h('li', { class: 'more' }, this.moreButton);
  }

  reset(): void {
    this.stored.clear();
    this.live = [];
    this.loaded = 0;
    this.cursor = null;
    this.hasMore = false;
    this.dropped = 0;
    this.render();
  }

  /** Reads the next page of history; `focus` moves focus to its first turn (keyboard use). */
  async loadMore(focus = false): Promise<void> {
    this.moreButton.disabled = true;
    try {
      const page = await this.fetchPage(this.cursor);
      page.data.forEach((message, i) => this.stored.set(this.loaded + i, shown(message.role, turnText(message), message)));
      const first = this.stored.get(this.loaded);
      this.loaded += page.data.length;
      this.cursor = page.next_cursor;
      this.hasMore = page.has_more;
      this.markDropped(this.dropped);
      this.render();
      if (focus && first) {
        first.element.tabIndex = -1;
        first.element.focus();
      }
    } catch (err) {
      this.onError(`History could not be read: ${describe(err)}`);
    } finally {
      this.moreButton.disabled = false;
    }
  }

  /** Marks the oldest `dropped` stored turns as left out of the context. */
  markDropped(dropped: number): void {
    this.dropped = dropped;
    for (const [position, turn] of this.stored) {
      const out = position < dropped;
      turn.element.classList.toggle('dropped', out);
      turn.badge.textContent = out ? 'dropped: not sent upstream' : 'goes upstream';
    }
  }

  /** The dropped turns this page has read, oldest first. */
  droppedTurns(): { role: string; text: string }[] {
    return [...this.stored.entries()]
      .filter(([position]) => position < this.dropped)
      .sort(([a], [b]) => a - b)
      .map(([, turn]) => ({ role: turn.role, text: turn.text }));
  }

  /** Shows a send as it starts; a failed send shown before goes away. */
  begin(content: string): Sending {
    this.live = this.live.filter((s) => !s.reply.element.classList.contains('failed'));
    const user = shown('user', content);
    const reply = shown('assistant', '');
    user.badge.textContent = 'sending';
    reply.badge.textContent = 'streaming';
    // Read out once complete (aria-busy), not at every delta.
    reply.body.setAttribute('aria-live', 'polite');
    reply.body.setAttribute('aria-busy', 'true');
    reply.element.classList.add('streaming');
    const sending = { user, reply };
    this.live.push(sending);
    this.render();
    this.keepBottomInView();
    return sending;
  }

  append(sending: Sending, text: string): void {
    sending.reply.text += text;
    sending.reply.body.append(text);
    this.keepBottomInView();
  }

  /** The answer is complete and stored; tool calls and a refusal arrive whole with it. */
  finish(sending: Sending, response: SendResponse): void {
    const { user, reply } = sending;
    reply.text = turnText({ role: 'assistant', content: response.assistant_message, tool_calls: response.tool_calls, refusal: response.refusal ?? null });
    reply.body.textContent = reply.text;
    reply.body.setAttribute('aria-busy', 'false');
    reply.element.classList.remove('streaming');
    user.badge.textContent = reply.badge.textContent = 'stored';
  }

  /** A stored send's turns sit at the session's last two positions, once its count is known. */
  place(sending: Sending, messageCount: number): void {
    this.live = this.live.filter((s) => s !== sending);
    this.stored.set(messageCount - 2, sending.user);
    this.stored.set(messageCount - 1, sending.reply);
    this.markDropped(this.dropped);
    this.render();
  }

  /** The send failed: nothing was stored, and the partial reply says so. */
  fail(sending: Sending, failure: unknown): void {
    const { user, reply } = sending;
    reply.body.setAttribute('aria-busy', 'false');
    reply.element.classList.remove('streaming');
    reply.element.classList.add('failed');
    user.element.classList.add('failed');
    user.badge.textContent = 'not stored';
    reply.badge.textContent = reply.text ? 'incomplete: not stored' : 'no answer';
    reply.element.append(h('p', { class: 'error', role: 'alert' }, `Error: ${describe(failure)}`));
    this.keepBottomInView();
  }

  /** A send refused before it began (e.g. 409 session_busy): it leaves no trace. */
  withdraw(sending: Sending): void {
    this.live = this.live.filter((s) => s !== sending);
    this.render();
  }

  private render(): void {
    const items: Node[] = [];
    let moreShown = !this.hasMore;
    for (const position of [...this.stored.keys()].sort((a, b) => a - b)) {
      if (!moreShown && position >= this.loaded) {
        items.push(this.more);
        moreShown = true;
      }
      items.push((this.stored.get(position) as Shown).element);
    }
    if (!moreShown) items.push(this.more);
    for (const { user, reply } of this.live) items.push(user.element, reply.element);
    this.list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
  }

  private keepBottomInView(): void {
    this.list.scrollTop = this.list.scrollHeight;
  }
}

function shown(role: string, text: string, stored?: Message): Shown {
  const badge = h('span', { class: 'badge' });
  const body = h('div', { class: 'body' }, text);
  const meta = h(
    'div',
    { class: 'meta' },
    h('span', { class: 'role' }, ROLE_NAMES[role] ?? role),
    ' ',
    badge,
    stored ? h('span', { class: 'tokens' }, ` ${count(stored.tokens)} tokens`) : null,
  );
  const element = h('li', { class: `msg ${role}` }, meta, body);
  return { element, badge, body, role, text };
}

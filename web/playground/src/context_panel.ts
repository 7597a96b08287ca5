// The context panel: what the next turn sends upstream (from `GET …/context`) against
// what is stored, the token budget, the last send's usage and cost, the session's
// running totals and its TTL. Drawn again after every turn.

import { byId, count, fill, h, setText as text, usd } from './dom';
import { turnText } from './turn_text';
import type { ContextView, SendResponse, Session } from './types';

const ROLE_NAMES: Record<string, string> = { user: 'You', assistant: 'Assistant', system: 'System prompt', developer: 'Developer', tool: 'Tool' };

export class ContextPanel {
  private expiresAt = 0;
  private timer: number | undefined;

  clear(): void {
    window.clearInterval(this.timer);
    this.timer = undefined;
    byId('context-body').hidden = true;
    byId('context-empty').hidden = false;
    this.lastSend(null);
  }

  render(session: Session, context: ContextView, dropped: { role: string; text: string }[]): void {
    byId('context-body').hidden = false;
    byId('context-empty').hidden = true;
    this.tokens(context);
    this.upstream(context);
    this.droppedTurns(context.dropped_messages, dropped);
    this.summary(context.summary ?? session.summary);
    this.totals(session);
    this.expiry(session.expires_at);
  }

  lastSend(response: SendResponse | null): void {
    byId('last-send').hidden = response === null;
    byId('last-send-empty').hidden = response !== null;
    if (!response) return;
    text('last-model', response.model_used);
    text('last-fallbacks', count(response.fallback_count));
    text('last-prompt-tokens', count(response.usage.prompt_tokens));
    text('last-completion-tokens', count(response.usage.completion_tokens));
    text('last-total-tokens', count(response.usage.total_tokens));
    text('last-cost', usd(response.cost_usd));
  }

  private tokens(context: ContextView): void {
    const meter = byId<HTMLMeterElement>('token-meter');
    const budget = Math.max(context.budget_tokens, 1);
    meter.max = budget;
    meter.high = budget * 0.9;
    meter.value = context.tokens;
    const share = Math.round((100 * context.tokens) / budget);
    text('token-text', `${count(context.tokens)} / ${count(context.budget_tokens)} tokens (${share}%)`);
  }

  private upstream(context: ContextView): void {
    text('upstream-count', count(context.messages.length));
    fill(byId('upstream-list'), ...context.messages.map((m) => turnItem(m.role, turnText(m))));
  }

  private droppedTurns(dropped: number, read: { role: string; text: string }[]): void {
    text('dropped-count', count(dropped));
    const unread = dropped - read.length;
    fill(
      byId('dropped-list'),
      ...read.map((t) => turnItem(t.role, t.text)),
      unread > 0 ? h('li', { class: 'unread' }, `${count(unread)} more not loaded in the conversation yet`) : null,
    );
  }

  /** Context compression: a summary stands in for dropped turns once the service makes one. */
  private summary(summary: unknown): void {
    const block = byId('summary-block');
    block.hidden = summary === undefined || summary === null;
    if (!block.hidden) text('summary-text', summaryText(summary));
  }

  private totals(session: Session): void {
    text('session-model', [session.model, ...session.fallback_models].join(' → '));
    text('session-window', session.context_window === null ? 'as many as fit' : `${count(session.context_window)} messages`);
    text('total-messages', count(session.message_count));
    text('total-prompt-tokens', count(session.usage.prompt_tokens));
    text('total-completion-tokens', count(session.usage.completion_tokens));
    text('total-cost', usd(session.usage.cost_usd));
  }

  private expiry(expiresAt: string): void {
    this.expiresAt = Date.parse(expiresAt);
    const at = byId<HTMLTimeElement>('ttl-at');
    at.dateTime = expiresAt;
    at.textContent = new Date(this.expiresAt).toLocaleTimeString();
    this.tick();
    if (this.timer === undefined) this.timer = window.setInterval(() => this.tick(), 1000);
  }

  private tick(): void {
    const left = Math.max(0, Math.round((this.expiresAt - Date.now()) / 1000));
    const ttl = byId('ttl');
    ttl.textContent = left > 0 ? duration(left) : 'expired';
    ttl.classList.toggle('expired', left === 0);
  }
}

const SNIPPET_CHARS = 160;

function turnItem(role: string, content: string): HTMLLIElement {
  const snippet = content.length > SNIPPET_CHARS ? `${content.slice(0, SNIPPET_CHARS - 1)}…` : content;
  return h('li', { class: role }, h('span', { class: 'role' }, `${ROLE_NAMES[role] ?? role}: `), h('span', { class: 'snippet' }, snippet));
}

export function summaryText(summary: unknown): string {
  if (typeof summary === 'string') return summary;
  if (summary && typeof summary === 'object') {
    const fields = summary as Record<string, unknown>;
    for (const key of ['content', 'text']) {
      const value = fields[key];
      if (typeof value === 'string') return value;
    }
  }
  return JSON.stringify(summary, null, 2);
}

function duration(seconds: number): string {
  const hours = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const mmss = `${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
  return hours > 0 ? `${hours}:${mmss}` : mmss;
}

// The shapes of the answers this page reads, as API.md gives them. Only the fields the
// page uses are listed.

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: number;
}

export interface Session {
  session_id: string;
  model: string;
  fallback_models: string[];
  system_prompt: string | null;
  context_window: number | null;
  max_context_tokens: number | null;
  ttl_seconds: number;
  user_id: string | null;
  created_at: string;
  expires_at: string;
  message_count: number;
  usage: Usage;
  /** Context compression: present once the service summarizes dropped turns. */
  summary?: unknown;
}

export interface Message {
  id: string;
  role: string;
  content: string;
  created_at: string;
  tokens: number;
}

export interface Page<T> {
  data: T[];
  has_more: boolean;
  next_cursor: string | null;
}

/** `GET /v1/sessions/{id}/context`: exactly what the next turn would send upstream. */
export interface ContextView {
  messages: { role: string; content: string }[];
  tokens: number;
  budget_tokens: number;
  dropped_messages: number;
  summary?: unknown;
}

/** The answer to a send (the `done` event of a stream). */
export interface SendResponse {
  session_id: string;
  message_id: string;
  assistant_message: string;
  model_used: string;
  fallback_count: number;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  cost_usd: number;
  context: { messages: number; tokens: number; dropped_messages: number; budget_tokens: number };
}

export interface ModelList {
  data: { id: string }[];
}

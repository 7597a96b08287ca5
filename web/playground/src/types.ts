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

export interface ToolCall {
  id: string;
  function: { name: string; arguments: string };
}

/** A turn in OpenAI's chat-message shape; `content` is a string, a list of parts or null. */
export interface ChatMessage {
  role: string;
  content: unknown;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  refusal?: string | null;
}

/** A stored turn, as `GET …/messages` lists it. */
export interface Message extends ChatMessage {
  id: string;
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
  messages: ChatMessage[];
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
  tool_calls: ToolCall[];
  finish_reason: string;
  refusal?: string | null;
  model_used: string;
  fallback_count: number;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  cost_usd: number;
  context: { messages: number; tokens: number; dropped_messages: number; budget_tokens: number };
}

export interface ModelList {
  data: { id: string }[];
}

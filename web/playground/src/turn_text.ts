// A stored or streamed turn as text. Turns are OpenAI chat messages: `content` is a
// string, a list of parts (text, image, audio, file, refusal) or null (an assistant turn
// that only calls tools); an assistant may call tools or refuse, a tool turn answers a call.

import type { ChatMessage } from './types';

export function turnText(message: ChatMessage): string {
  const lines: string[] = [];
  if (message.tool_call_id) lines.push(`[result of ${message.tool_call_id}]`);
  const content = contentText(message.content);
  if (content) lines.push(content);
  if (message.refusal) lines.push(`Refused: ${message.refusal}`);
  for (const call of message.tool_calls ?? []) lines.push(`→ calls ${call.function.name}(${call.function.arguments})`);
  return lines.join('\n');
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map(partText).join('\n');
}

function partText(part: Record<string, unknown>): string {
  if (part['type'] === 'text') return String(part['text'] ?? '');
  if (part['type'] === 'refusal') return `Refused: ${String(part['refusal'] ?? '')}`;
  const names: Record<string, string> = { image_url: 'image', input_audio: 'audio', file: 'file' };
  return `[${names[String(part['type'])] ?? String(part['type'])}]`;
}

// Sending a message with `"stream": true`: `delta` events are handed over as they arrive;
// one `done` event carries the full response; an `error` event (or a stream that ends
// without either) is a failure — never a finished answer, and nothing was stored.

import { ApiFailure, failureFromBody, headers, send, sessionPath } from './api';
import { events } from './sse';
import type { SendResponse } from './types';

export async function sendStreaming(
  sessionId: string,
  content: string,
  onDelta: (text: string) => void,
): Promise<SendResponse> {
  const response = await send(`${sessionPath(sessionId)}/messages`, {
    method: 'POST',
    headers: headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
    body: JSON.stringify({ content, stream: true }),
  });
  if (!response.body) throw new ApiFailure(response.status, 'stream_unreadable', 'The browser cannot read this stream.');
  try {
    for await (const event of events(response.body)) {
      const data = JSON.parse(event.data) as Record<string, unknown>;
      if (event.event === 'delta') onDelta(String(data['content'] ?? ''));
      if (event.event === 'done') return data as unknown as SendResponse;
      // After the first byte the HTTP status is 200 whatever happens: the event tells.
      if (event.event === 'error') throw failureFromBody(0, data);
    }
  } catch (err) {
    if (err instanceof ApiFailure) throw err;
    throw new ApiFailure(0, 'stream_broken', 'The stream broke off; nothing was stored.');
  }
  throw new ApiFailure(0, 'stream_incomplete', 'The stream ended without a final event; nothing was stored.');
}

// A server-sent-events reader over `fetch`: EventSource cannot POST, and the send
// endpoint streams its answer to a POST.

export interface SseEvent {
  event: string;
  data: string;
}

/** Splits a text stream into events; feed it text as it arrives. */
export class SseParser {
  private buffer = '';

  push(text: string): SseEvent[] {
    this.buffer += text;
    // A lone `\r` at the end may be the first half of a `\r\n`: keep it for the next push.
    const keep = this.buffer.endsWith('\r') ? 1 : 0;
    const ready = this.buffer.slice(0, this.buffer.length - keep).replace(/\r\n?/g, '\n');
    const blocks = ready.split('\n\n');
    this.buffer = (blocks.pop() ?? '') + this.buffer.slice(this.buffer.length - keep);
    return blocks.map(parseBlock).filter((e): e is SseEvent => e !== null);
  }
}

function parseBlock(block: string): SseEvent | null {
  let event = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    if (field === 'data') data.push(value);
  }
  return data.length > 0 ? { event, data: data.join('\n') } : null;
}

/** The events of a response body, in order, as they arrive. */
export async function* events(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
    yield* parser.push(decoder.decode() + '\n\n');
  } finally {
    reader.releaseLock();
  }
}

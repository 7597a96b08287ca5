// A fake OpenAI-compatible upstream on 127.0.0.1 that the tests control: it answers
// `/chat/completions` word by word as server-sent events, a pause before each word, and
// can be told to break a stream off after a number of words (the connection is
// destroyed, as a crashed provider would leave it) or to fail a model outright. A request
// that offers tools is answered with a call of one.

import { createServer } from 'node:http';

export class FakeUpstream {
  /** Pause before each streamed word. */
  gapMs = 40;
  /** Words sent before the connection is destroyed; `null` streams to the end. */
  breakAfter = null;
  /** Models (upstream names) answered with a 500 before anything streams. */
  failing = new Set();
  /** Every request body received, in order. */
  requests = [];

  async start() {
    this.server = createServer((req, res) => this.#serve(req, res));
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.baseUrl = `http://127.0.0.1:${this.server.address().port}/v1`;
    return this;
  }

  async stop() {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  /** The `messages` of the latest request. */
  lastMessages() {
    return this.requests.at(-1)?.messages ?? [];
  }

  /** What the fake answers to a request: it names the question, so each answer differs. */
  static answer(body) {
    const last = body.messages.filter((m) => m.role === 'user').at(-1)?.content ?? '';
    return `This answer streams word by word and replies to: ${last}`;
  }

  async #serve(req, res) {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const body = JSON.parse(raw || '{}');
    this.requests.push(body);
    if (this.failing.has(body.model)) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'fake outage', type: 'server_error', code: null } }));
      return;
    }
    const words = FakeUpstream.answer(body).split(' ');
    const usage = { prompt_tokens: 12 * body.messages.length, completion_tokens: words.length, total_tokens: 12 * body.messages.length + words.length };
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'chatcmpl-fake', object: 'chat.completion', created: 0, model: body.model, usage,
        choices: [{ index: 0, message: { role: 'assistant', content: words.join(' ') }, finish_reason: 'stop' }] }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const chunk = (choices, extra = {}) => `data: ${JSON.stringify({ id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 0, model: body.model, choices, ...extra })}\n\n`;
    if (body.tools?.length && body.messages.at(-1)?.role === 'user') return this.#callTool(res, chunk, usage);
    res.write(chunk([{ index: 0, delta: { role: 'assistant', content: '' } }]));
    const breakAfter = this.breakAfter;
    for (const [i, word] of words.entries()) {
      await new Promise((resolve) => setTimeout(resolve, this.gapMs));
      if (res.destroyed) return;
      res.write(chunk([{ index: 0, delta: { content: i === 0 ? word : ` ${word}` } }]));
      if (breakAfter !== null && i + 1 === breakAfter) {
        // Let the words out first, then cut the connection without a finish.
        setTimeout(() => res.destroy(), 50);
        return;
      }
    }
    res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
    res.write(chunk([], { usage }));
    res.end('data: [DONE]\n\n');
  }

  /** A request that offers tools gets a streamed call of the first one, its arguments in pieces. */
  #callTool(res, chunk, usage) {
    const call = (fields) => chunk([{ index: 0, delta: { tool_calls: [{ index: 0, ...fields }] } }]);
    res.write(call({ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } }));
    res.write(call({ function: { arguments: '{"city":' } }));
    res.write(call({ function: { arguments: '"Oslo"}' } }));
    res.write(chunk([{ index: 0, delta: {}, finish_reason: 'tool_calls' }]));
    res.write(chunk([], { usage }));
    res.end('data: [DONE]\n\n');
  }
}

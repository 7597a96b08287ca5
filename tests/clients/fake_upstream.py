"""A controllable fake of an OpenAI-compatible API and of Anthropic's Messages API.

It records every request body and answers from a per-model script of replies (the last
reply of a script repeats); a model without a script gets an echo of its last user text.
Streamed answers come in OpenAI's chunk format or Anthropic's event format, text word by
word and tool-call arguments in fragments, as the real APIs send them.
"""

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = (10, 5)


@dataclass
class Reply:
    text: str | None = None
    # (id, function name, arguments) for each call the answer makes.
    tool_calls: list = field(default_factory=list)
    finish: str | None = None
    # An error answer instead: its status, OpenAI-shaped body and headers.
    status: int = 200
    error: dict | None = None
    headers: dict = field(default_factory=dict)
    # Stream pieces this far apart.
    gap: float = 0.0


def text(content, **kw):
    return Reply(text=content, **kw)


def calls(*triples, **kw):
    return Reply(tool_calls=list(triples), **kw)


def error(status, code, message, headers=None):
    return Reply(status=status, error={"message": message, "type": "invalid_request_error", "code": code},
                 headers=headers or {})


def last_user_text(messages):
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


class FakeUpstream:
    def __init__(self):
        self.requests = []  # (path, body)
        self.scripts = defaultdict(list)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()

    def script(self, model, *replies):
        with self.lock:
            self.scripts[model] = list(replies)

    def reset(self):
        with self.lock:
            self.scripts.clear()
            self.requests.clear()

    def bodies(self, model=None):
        with self.lock:
            return [b for _, b in self.requests if model is None or b.get("model") == model]

    def last(self, model=None):
        bodies = self.bodies(model)
        assert bodies, "the upstream received no request"
        return bodies[-1]

    def _next(self, model, body):
        with self.lock:
            script = self.scripts.get(model)
            if script:
                return script.pop(0) if len(script) > 1 else script[0]
        messages = body.get("messages", [])
        return Reply(text=f"echo: {last_user_text(messages)}")

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.requests.append((self.path, body))
                reply = fake._next(body.get("model"), body)
                if reply.status != 200:
                    payload = {"error": reply.error}
                    if self.path.endswith("/messages"):
                        payload = {"type": "error", "error": {"type": "invalid_request_error",
                                                              "message": reply.error["message"]}}
                    return self._json(reply.status, payload, reply.headers)
                anthropic = self.path.endswith("/messages")
                if body.get("stream"):
                    events = anthropic_events(body, reply) if anthropic else openai_chunks(body, reply)
                    return self._stream(events, reply.gap)
                answer = anthropic_message(body, reply) if anthropic else openai_completion(body, reply)
                self._json(200, answer)

            def _json(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, events, gap):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                for event in events:
                    time.sleep(gap)
                    self.wfile.write(event.encode())
                    self.wfile.flush()
                self.close_connection = True

        return Handler


def finish_of(reply):
    return reply.finish or ("tool_calls" if reply.tool_calls else "stop")


def openai_completion(body, reply):
    message = {"role": "assistant", "content": reply.text if reply.text is not None else None}
    if reply.tool_calls:
        message["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                                 for i, n, a in reply.tool_calls]
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": body["model"],
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_of(reply), "logprobs": None}],
            "usage": {"prompt_tokens": USAGE[0], "completion_tokens": USAGE[1], "total_tokens": sum(USAGE)}}


def words(content):
    pieces, current = [], ""
    for ch in content:
        current += ch
        if ch == " ":
            pieces.append(current)
            current = ""
    return pieces + ([current] if current else [])


def openai_chunks(body, reply):
    def chunk(delta, finish=None, **extra):
        data = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(data)}\n\n"

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": piece}) for piece in words(reply.text or "")]
    for index, (call_id, name, args) in enumerate(reply.tool_calls):
        out.append(chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                          "function": {"name": name, "arguments": ""}}]}))
        half = len(args) // 2
        for fragment in (args[:half], args[half:]):
            out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}))
    out.append(chunk({}, finish_of(reply)))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": USAGE[0], "completion_tokens": USAGE[1], "total_tokens": sum(USAGE)}
        out.append(f"data: {json.dumps({'id': 'chatcmpl-fake', 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n")
    out.append("data: [DONE]\n\n")
    return out


ANTHROPIC_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def anthropic_message(body, reply):
    content = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    for call_id, name, args in reply.tool_calls:
        content.append({"type": "tool_use", "id": call_id, "name": name, "input": json.loads(args or "{}")})
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"], "content": content,
            "stop_reason": ANTHROPIC_STOP[finish_of(reply)],
            "usage": {"input_tokens": USAGE[0], "output_tokens": USAGE[1]}}


def anthropic_events(body, reply):
    def event(kind, **data):
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    out = [event("message_start", message={"id": "msg_fake", "type": "message", "role": "assistant",
                                           "model": body["model"], "content": [],
                                           "usage": {"input_tokens": USAGE[0], "output_tokens": 1}})]
    index = 0
    if reply.text:
        out.append(event("content_block_start", index=index, content_block={"type": "text", "text": ""}))
        out += [event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
                for piece in words(reply.text)]
        out.append(event("content_block_stop", index=index))
        index += 1
    for call_id, name, args in reply.tool_calls:
        out.append(event("content_block_start", index=index,
                         content_block={"type": "tool_use", "id": call_id, "name": name, "input": {}}))
        half = len(args) // 2
        for fragment in (args[:half], args[half:]):
            out.append(event("content_block_delta", index=index,
                             delta={"type": "input_json_delta", "partial_json": fragment}))
        out.append(event("content_block_stop", index=index))
        index += 1
    out.append(event("message_delta", delta={"stop_reason": ANTHROPIC_STOP[finish_of(reply)]},
                     usage={"output_tokens": USAGE[1]}))
    out.append(event("message_stop"))
    return out

// Built from web/playground/src by `npm run build` (in web/playground). Do not edit.
"use strict";
(() => {
  // src/api.ts
  var credential = { kind: "none" };
  function useCredential(next) {
    credential = next;
  }
  function currentCredential() {
    return credential;
  }
  var ApiFailure = class extends Error {
    constructor(status2, code, message, body = {}) {
      super(message);
      this.status = status2;
      this.code = code;
      this.body = body;
    }
    status;
    code;
    body;
  };
  function sessionPath(id) {
    return `/v1/sessions/${encodeURIComponent(id)}`;
  }
  function headers(extra = {}) {
    const all = { ...extra };
    if (credential.kind === "key") all["Authorization"] = `Bearer ${credential.key}`;
    if (credential.kind === "token") all["Authorization"] = `Bearer ${credential.token}`;
    return all;
  }
  async function call(method, path, body) {
    const init = { method, headers: headers(body === void 0 ? {} : { "Content-Type": "application/json" }) };
    if (body !== void 0) init.body = JSON.stringify(body);
    const response = await send(path, init);
    if (response.status === 204) return void 0;
    return await response.json();
  }
  async function send(path, init) {
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiFailure(0, "network_error", "The service could not be reached.");
    }
    if (!response.ok) throw await failureOf(response);
    return response;
  }
  async function failureOf(response) {
    let body = {};
    try {
      body = await response.json();
    } catch {
    }
    return failureFromBody(response.status, body);
  }
  function failureFromBody(status2, body) {
    const nested = body["error"];
    if (nested && typeof nested === "object") {
      const openai = nested;
      return new ApiFailure(status2, String(openai["code"] ?? openai["type"] ?? "error"), String(openai["message"] ?? ""), body);
    }
    const code = typeof nested === "string" ? nested : `http_${status2}`;
    return new ApiFailure(status2, code, String(body["message"] ?? `HTTP ${status2}`), body);
  }
  function describe(failure) {
    if (!(failure instanceof ApiFailure)) return `Unexpected error: ${String(failure)}`;
    const status2 = failure.status > 0 ? `${failure.status} ` : "";
    const parts = [`${failure.message} (${status2}${failure.code})`];
    const field = failure.body["field"];
    if (typeof field === "string") parts.push(`Field: ${field}.`);
    const attempts = failure.body["attempts"];
    if (Array.isArray(attempts) && attempts.length > 0) {
      const tried = attempts.map((a) => `${String(a["model"])}: ${String(a["error"] ?? a["status"])}`);
      parts.push(`Attempts: ${tried.join("; ")}.`);
    }
    const hint = HINTS[failure.code];
    if (hint) parts.push(hint(failure));
    return parts.join(" ");
  }
  var HINTS = {
    forbidden: () => credential.kind === "token" ? "A client token covers its own session only: its messages, its context and the session itself." : "This credential is not allowed here.",
    invalid_api_key: () => "The key (or client token) is missing, unknown, expired or revoked.",
    session_not_found: () => "The session is unknown, expired or deleted.",
    session_busy: (f) => `Try again in ${String(f.body["retry_after"] ?? 1)} s.`,
    rate_limit_exceeded: (f) => `Try again in ${String(f.body["retry_after"] ?? 1)} s.`
  };

  // src/dom.ts
  function byId(id) {
    const found = document.getElementById(id);
    if (!found) throw new Error(`the page has no #${id}`);
    return found;
  }
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value2] of Object.entries(attrs)) node.setAttribute(name, value2);
    for (const child of children) {
      if (child) node.append(child);
    }
    return node;
  }
  function fill(parent, ...children) {
    parent.replaceChildren(...children.filter((c) => Boolean(c)));
  }
  function setText(id, text) {
    byId(id).textContent = text;
  }
  var integer = new Intl.NumberFormat("en");
  function count(n) {
    return integer.format(n);
  }
  function usd(n) {
    return `$${n.toFixed(6).replace(/0{1,4}$/, "")}`;
  }

  // src/turn_text.ts
  function turnText(message) {
    const lines = [];
    if (message.tool_call_id) lines.push(`[result of ${message.tool_call_id}]`);
    const content = contentText(message.content);
    if (content) lines.push(content);
    if (message.refusal) lines.push(`Refused: ${message.refusal}`);
    for (const call2 of message.tool_calls ?? []) lines.push(`→ calls ${call2.function.name}(${call2.function.arguments})`);
    return lines.join("\n");
  }
  function contentText(content) {
    if (typeof content === "string") return content;
    if (!Array.isArray(content)) return "";
    return content.map(partText).join("\n");
  }
  function partText(part) {
    if (part["type"] === "text") return String(part["text"] ?? "");
    if (part["type"] === "refusal") return `Refused: ${String(part["refusal"] ?? "")}`;
    const names = { image_url: "image", input_audio: "audio", file: "file" };
    return `[${names[String(part["type"])] ?? String(part["type"])}]`;
  }

  // src/context_panel.ts
  var ROLE_NAMES = { user: "You", assistant: "Assistant", system: "System prompt", developer: "Developer", tool: "Tool" };
  var ContextPanel = class {
    expiresAt = 0;
    timer;
    clear() {
      window.clearInterval(this.timer);
      this.timer = void 0;
      byId("context-body").hidden = true;
      byId("context-empty").hidden = false;
      this.lastSend(null);
    }
    render(session, context2, dropped) {
      byId("context-body").hidden = false;
      byId("context-empty").hidden = true;
      this.tokens(context2);
      this.upstream(context2);
      this.droppedTurns(context2.dropped_messages, dropped);
      this.summary(context2.summary ?? session.summary);
      this.totals(session);
      this.expiry(session.expires_at);
    }
    lastSend(response) {
      byId("last-send").hidden = response === null;
      byId("last-send-empty").hidden = response !== null;
      if (!response) return;
      setText("last-model", response.model_used);
      setText("last-fallbacks", count(response.fallback_count));
      setText("last-prompt-tokens", count(response.usage.prompt_tokens));
      setText("last-completion-tokens", count(response.usage.completion_tokens));
      setText("last-total-tokens", count(response.usage.total_tokens));
      setText("last-cost", usd(response.cost_usd));
    }
    tokens(context2) {
      const meter = byId("token-meter");
      const budget = Math.max(context2.budget_tokens, 1);
      meter.max = budget;
      meter.high = budget * 0.9;
      meter.value = context2.tokens;
      const share = Math.round(100 * context2.tokens / budget);
      setText("token-text", `${count(context2.tokens)} / ${count(context2.budget_tokens)} tokens (${share}%)`);
    }
    upstream(context2) {
      setText("upstream-count", count(context2.messages.length));
      fill(byId("upstream-list"), ...context2.messages.map((m) => turnItem(m.role, turnText(m))));
    }
    droppedTurns(dropped, read) {
      setText("dropped-count", count(dropped));
      const unread = dropped - read.length;
      fill(
        byId("dropped-list"),
        ...read.map((t) => turnItem(t.role, t.text)),
        unread > 0 ? h("li", { class: "unread" }, `${count(unread)} more not loaded in the conversation yet`) : null
      );
    }
    /** Context compression: a summary stands in for dropped turns once the service makes one. */
    summary(summary) {
      const block = byId("summary-block");
      block.hidden = summary === void 0 || summary === null;
      if (!block.hidden) setText("summary-text", summaryText(summary));
    }
    totals(session) {
      setText("session-model", [session.model, ...session.fallback_models].join(" → "));
      setText("session-window", session.context_window === null ? "as many as fit" : `${count(session.context_window)} messages`);
      setText("total-messages", count(session.message_count));
      setText("total-prompt-tokens", count(session.usage.prompt_tokens));
      setText("total-completion-tokens", count(session.usage.completion_tokens));
      setText("total-cost", usd(session.usage.cost_usd));
    }
    expiry(expiresAt) {
      this.expiresAt = Date.parse(expiresAt);
      const at = byId("ttl-at");
      at.dateTime = expiresAt;
      at.textContent = new Date(this.expiresAt).toLocaleTimeString();
      this.tick();
      if (this.timer === void 0) this.timer = window.setInterval(() => this.tick(), 1e3);
    }
    tick() {
      const left = Math.max(0, Math.round((this.expiresAt - Date.now()) / 1e3));
      const ttl = byId("ttl");
      ttl.textContent = left > 0 ? duration(left) : "expired";
      ttl.classList.toggle("expired", left === 0);
    }
  };
  var SNIPPET_CHARS = 160;
  function turnItem(role, content) {
    const snippet = content.length > SNIPPET_CHARS ? `${content.slice(0, SNIPPET_CHARS - 1)}…` : content;
    return h("li", { class: role }, h("span", { class: "role" }, `${ROLE_NAMES[role] ?? role}: `), h("span", { class: "snippet" }, snippet));
  }
  function summaryText(summary) {
    if (typeof summary === "string") return summary;
    if (summary && typeof summary === "object") {
      const fields = summary;
      for (const key of ["content", "text"]) {
        const value2 = fields[key];
        if (typeof value2 === "string") return value2;
      }
    }
    return JSON.stringify(summary, null, 2);
  }
  function duration(seconds) {
    const hours = Math.floor(seconds / 3600);
    const m = Math.floor(seconds % 3600 / 60);
    const s = seconds % 60;
    const mmss = `${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
    return hours > 0 ? `${hours}:${mmss}` : mmss;
  }

  // src/fragment.ts
  function readFragment() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    const fragment = {};
    const session = params.get("session");
    const token = params.get("token");
    if (session) fragment.session = session;
    if (token) fragment.token = token;
    return fragment;
  }
  function writeFragment(fragment) {
    const params = new URLSearchParams();
    if (fragment.session) params.set("session", fragment.session);
    if (fragment.token) params.set("token", fragment.token);
    const query = params.toString();
    const hash = query ? `#${query}` : "";
    window.history.replaceState(null, "", `${window.location.pathname}${window.location.search}${hash}`);
  }

  // src/sessions_panel.ts
  var USER_PAGE_SIZE = 10;
  var SessionsPanel = class {
    constructor(open) {
      this.open = open;
      byId("create-form").addEventListener("submit", (e) => {
        e.preventDefault();
        void this.create();
      });
      byId("open-form").addEventListener("submit", (e) => {
        e.preventDefault();
        const id = byId("open-id").value.trim();
        if (id) this.open(id);
      });
      byId("user-form").addEventListener("submit", (e) => {
        e.preventDefault();
        this.userId = byId("list-user").value.trim();
        this.userCursor = null;
        fill(byId("user-sessions"));
        void this.listUser();
      });
      byId("user-more").addEventListener("click", () => void this.listUser());
    }
    open;
    userId = "";
    userCursor = null;
    /** Fills the model picker; the first model (the service's order) is preselected. */
    async loadModels() {
      const picker = byId("model");
      try {
        const models = await call("GET", "/v1/models");
        fill(picker, ...models.data.map((m) => h("option", { value: m.id }, m.id)));
        setText("model-help", `Fallbacks may name any of: ${models.data.map((m) => m.id).join(", ")}.`);
      } catch (err) {
        fill(picker, h("option", { value: "" }, "the service default"));
        setText("model-help", `Models could not be listed: ${describe(err)}`);
      }
    }
    async create() {
      const status2 = byId("create-status");
      status2.textContent = "";
      try {
        const session = await call("POST", "/v1/sessions", createBody());
        this.open(session.session_id);
      } catch (err) {
        status2.textContent = `The session was not created: ${describe(err)}`;
      }
    }
    async listUser() {
      const status2 = byId("user-status");
      const more = byId("user-more");
      status2.textContent = "Listing…";
      more.hidden = true;
      const query = new URLSearchParams({ limit: String(USER_PAGE_SIZE) });
      if (this.userCursor) query.set("after", this.userCursor);
      try {
        const page = await call("GET", `/v1/users/${encodeURIComponent(this.userId)}/sessions?${query}`);
        byId("user-sessions").append(...page.data.map((s) => this.sessionItem(s)));
        this.userCursor = page.next_cursor;
        more.hidden = !page.has_more;
        const shown2 = byId("user-sessions").childElementCount;
        status2.textContent = `${count(shown2)} session${shown2 === 1 ? "" : "s"} of ${this.userId}${page.has_more ? ", more to list" : ""}.`;
      } catch (err) {
        status2.textContent = `Listing refused: ${describe(err)}`;
      }
    }
    sessionItem(session) {
      const button = h("button", { type: "button", "aria-label": `Open session ${session.session_id}` }, "Open");
      button.addEventListener("click", () => this.open(session.session_id));
      const about = `${session.model}, ${count(session.message_count)} messages, since ${new Date(session.created_at).toLocaleString()}`;
      return h("li", {}, h("code", {}, session.session_id), " ", h("span", { class: "help" }, about), " ", button);
    }
  };
  function createBody() {
    const body = {};
    const model = value("model");
    if (model) body["model"] = model;
    const fallbacks = value("fallbacks").split(",").map((m) => m.trim()).filter(Boolean);
    if (fallbacks.length > 0) body["fallback_models"] = fallbacks;
    const prompt = value("system-prompt");
    if (prompt) body["system_prompt"] = prompt;
    for (const [id, field] of [
      ["context-window", "context_window"],
      ["max-context-tokens", "max_context_tokens"],
      ["ttl-seconds", "ttl_seconds"]
    ]) {
      const number = value(id);
      if (number) body[field] = Number(number);
    }
    const user = value("user-id");
    if (user) body["user_id"] = user;
    return body;
  }
  function value(id) {
    return byId(id).value.trim();
  }

  // src/sse.ts
  var SseParser = class {
    buffer = "";
    push(text) {
      this.buffer += text;
      const keep = this.buffer.endsWith("\r") ? 1 : 0;
      const ready = this.buffer.slice(0, this.buffer.length - keep).replace(/\r\n?/g, "\n");
      const blocks = ready.split("\n\n");
      this.buffer = (blocks.pop() ?? "") + this.buffer.slice(this.buffer.length - keep);
      return blocks.map(parseBlock).filter((e) => e !== null);
    }
  };
  function parseBlock(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value2 = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value2;
      if (field === "data") data.push(value2);
    }
    return data.length > 0 ? { event, data: data.join("\n") } : null;
  }
  async function* events(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser();
    try {
      for (; ; ) {
        const { done, value: value2 } = await reader.read();
        if (done) break;
        yield* parser.push(decoder.decode(value2, { stream: true }));
      }
      yield* parser.push(decoder.decode() + "\n\n");
    } finally {
      reader.releaseLock();
    }
  }

  // src/stream.ts
  async function sendStreaming(sessionId2, content, onDelta) {
    const response = await send(`${sessionPath(sessionId2)}/messages`, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ content, stream: true })
    });
    if (!response.body) throw new ApiFailure(response.status, "stream_unreadable", "The browser cannot read this stream.");
    try {
      for await (const event of events(response.body)) {
        const data = JSON.parse(event.data);
        if (event.event === "delta") onDelta(String(data["content"] ?? ""));
        if (event.event === "done") return data;
        if (event.event === "error") throw failureFromBody(0, data);
      }
    } catch (err) {
      if (err instanceof ApiFailure) throw err;
      throw new ApiFailure(0, "stream_broken", "The stream broke off; nothing was stored.");
    }
    throw new ApiFailure(0, "stream_incomplete", "The stream ended without a final event; nothing was stored.");
  }

  // src/transcript.ts
  var PAGE_SIZE = 20;
  var ROLE_NAMES2 = { user: "You", assistant: "Assistant", system: "System", developer: "Developer", tool: "Tool" };
  var Transcript = class {
    constructor(list, empty, fetchPage, onError) {
      this.list = list;
      this.empty = empty;
      this.fetchPage = fetchPage;
      this.onError = onError;
      this.moreButton = h("button", { type: "button", id: "load-more" }, `Load ${PAGE_SIZE} more messages`);
      this.moreButton.addEventListener("click", () => void this.loadMore(true));
      this.more = h("li", { class: "more" }, this.moreButton);
    }
    list;
    empty;
    fetchPage;
    onError;
    stored = /* @__PURE__ */ new Map();
    live = [];
    loaded = 0;
    cursor = null;
    hasMore = false;
    dropped = 0;
    more;
    moreButton;
    reset() {
      this.stored.clear();
      this.live = [];
      this.loaded = 0;
      this.cursor = null;
      this.hasMore = false;
      this.dropped = 0;
      this.render();
    }
    /** Reads the next page of history; `focus` moves focus to its first turn (keyboard use). */
    async loadMore(focus = false) {
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
    markDropped(dropped) {
      this.dropped = dropped;
      for (const [position, turn] of this.stored) {
        const out = position < dropped;
        turn.element.classList.toggle("dropped", out);
        turn.badge.textContent = out ? "dropped: not sent upstream" : "goes upstream";
      }
    }
    /** The dropped turns this page has read, oldest first. */
    droppedTurns() {
      return [...this.stored.entries()].filter(([position]) => position < this.dropped).sort(([a], [b]) => a - b).map(([, turn]) => ({ role: turn.role, text: turn.text }));
    }
    /** Shows a send as it starts; a failed send shown before goes away. */
    begin(content) {
      this.live = this.live.filter((s) => !s.reply.element.classList.contains("failed"));
      const user = shown("user", content);
      const reply = shown("assistant", "");
      user.badge.textContent = "sending";
      reply.badge.textContent = "streaming";
      reply.body.setAttribute("aria-live", "polite");
      reply.body.setAttribute("aria-busy", "true");
      reply.element.classList.add("streaming");
      const sending2 = { user, reply };
      this.live.push(sending2);
      this.render();
      this.keepBottomInView();
      return sending2;
    }
    append(sending2, text) {
      sending2.reply.text += text;
      sending2.reply.body.append(text);
      this.keepBottomInView();
    }
    /** The answer is complete and stored; tool calls and a refusal arrive whole with it. */
    finish(sending2, response) {
      const { user, reply } = sending2;
      reply.text = turnText({ role: "assistant", content: response.assistant_message, tool_calls: response.tool_calls, refusal: response.refusal ?? null });
      reply.body.textContent = reply.text;
      reply.body.setAttribute("aria-busy", "false");
      reply.element.classList.remove("streaming");
      user.badge.textContent = reply.badge.textContent = "stored";
    }
    /** A stored send's turns sit at the session's last two positions, once its count is known. */
    place(sending2, messageCount) {
      this.live = this.live.filter((s) => s !== sending2);
      this.stored.set(messageCount - 2, sending2.user);
      this.stored.set(messageCount - 1, sending2.reply);
      this.markDropped(this.dropped);
      this.render();
    }
    /** The send failed: nothing was stored, and the partial reply says so. */
    fail(sending2, failure) {
      const { user, reply } = sending2;
      reply.body.setAttribute("aria-busy", "false");
      reply.element.classList.remove("streaming");
      reply.element.classList.add("failed");
      user.element.classList.add("failed");
      user.badge.textContent = "not stored";
      reply.badge.textContent = reply.text ? "incomplete: not stored" : "no answer";
      reply.element.append(h("p", { class: "error", role: "alert" }, `Error: ${describe(failure)}`));
      this.keepBottomInView();
    }
    /** A send refused before it began (e.g. 409 session_busy): it leaves no trace. */
    withdraw(sending2) {
      this.live = this.live.filter((s) => s !== sending2);
      this.render();
    }
    render() {
      const items = [];
      let moreShown = !this.hasMore;
      for (const position of [...this.stored.keys()].sort((a, b) => a - b)) {
        if (!moreShown && position >= this.loaded) {
          items.push(this.more);
          moreShown = true;
        }
        items.push(this.stored.get(position).element);
      }
      if (!moreShown) items.push(this.more);
      for (const { user, reply } of this.live) items.push(user.element, reply.element);
      this.list.replaceChildren(...items);
      this.empty.hidden = items.length > 0;
    }
    keepBottomInView() {
      this.list.scrollTop = this.list.scrollHeight;
    }
  };
  function shown(role, text, stored) {
    const badge = h("span", { class: "badge" });
    const body = h("div", { class: "body" }, text);
    const meta = h(
      "div",
      { class: "meta" },
      h("span", { class: "role" }, ROLE_NAMES2[role] ?? role),
      " ",
      badge,
      stored ? h("span", { class: "tokens" }, ` ${count(stored.tokens)} tokens`) : null
    );
    const element = h("li", { class: `msg ${role}` }, meta, body);
    return { element, badge, body, role, text };
  }

  // src/main.ts
  var sessionId = null;
  var sending = false;
  var messageBox = byId("message");
  var sendButton = byId("send");
  var context = new ContextPanel();
  var transcript = new Transcript(byId("transcript"), byId("transcript-empty"), readPage, showError);
  var sessions = new SessionsPanel((id) => void openSession(id));
  function readPage(after) {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (after) query.set("after", after);
    return call("GET", `${sessionPath(sessionId ?? "")}/messages?${query}`);
  }
  async function boot() {
    const { token } = readFragment();
    if (token) {
      useCredential({ kind: "token", token });
      setText("auth-status", "Client token from the URL: this one session’s messages and context only.");
      return enter();
    }
    try {
      await call("GET", "/v1/status");
      setText("auth-status", "Loopback mode: the service has no API keys and serves this machine only, so no key is needed.");
      return enter();
    } catch (err) {
      if (err instanceof ApiFailure && err.status === 401) return askForKey();
      setText("auth-status", `The service refused this page: ${describe(err)}`);
    }
  }
  function askForKey() {
    setText("auth-status", "This service needs an API key.");
    byId("key-form").hidden = false;
    byId("forget-key").hidden = true;
    byId("workspace").hidden = true;
    byId("api-key").focus();
  }
  async function useKey(key) {
    useCredential({ key, kind: "key" });
    try {
      await call("GET", "/v1/status");
    } catch (err) {
      useCredential({ kind: "none" });
      setText("key-error", `Key refused: ${describe(err)}`);
      byId("api-key").focus();
      return;
    }
    byId("api-key").value = "";
    setText("key-error", "");
    byId("key-form").hidden = true;
    byId("forget-key").hidden = false;
    setText("auth-status", "Using an API key held in this tab’s memory only: a reload asks for it again.");
    await enter();
  }
  async function enter() {
    byId("workspace").hidden = false;
    await sessions.loadModels();
    const { session } = readFragment();
    if (session) await openSession(session);
    else byId("model").focus();
  }
  async function openSession(id) {
    clearError();
    let session;
    try {
      session = await call("GET", sessionPath(id));
    } catch (err) {
      showError(`Session ${id} could not be opened: ${describe(err)}`);
      return;
    }
    sessionId = id;
    writeFragment(fragmentFor(id));
    setText("session-id", id);
    setText("send-status", "");
    for (const part of ["session-bar", "composer"]) byId(part).hidden = false;
    byId("no-session").hidden = true;
    transcript.reset();
    context.clear();
    await transcript.loadMore();
    await refresh(session.session_id);
    messageBox.focus();
  }
  function closeSession() {
    sessionId = null;
    writeFragment(fragmentFor(void 0));
    for (const part of ["session-bar", "composer"]) byId(part).hidden = true;
    byId("no-session").hidden = false;
    transcript.reset();
    context.clear();
  }
  function fragmentFor(session) {
    const credential2 = currentCredential();
    return {
      ...session ? { session } : {},
      ...credential2.kind === "token" ? { token: credential2.token } : {}
    };
  }
  async function refresh(id, first) {
    let state;
    try {
      state = await Promise.all([call("GET", sessionPath(id)), call("GET", `${sessionPath(id)}/context`)]);
    } catch (err) {
      showError(`The context could not be read: ${describe(err)}`);
      return;
    }
    if (id !== sessionId) return;
    const [session, view] = state;
    first?.(session);
    transcript.markDropped(view.dropped_messages);
    context.render(session, view, transcript.droppedTurns());
  }
  async function sendMessage() {
    const content = messageBox.value;
    const id = sessionId;
    if (!id || sending || !content.trim()) return;
    sending = true;
    sendButton.disabled = true;
    clearError();
    status("Streaming the answer…", "streaming");
    const turn = transcript.begin(content);
    messageBox.value = "";
    try {
      const response = await sendStreaming(id, content, (text) => transcript.append(turn, text));
      transcript.finish(turn, response);
      context.lastSend(response);
      await refresh(id, (session) => transcript.place(turn, session.message_count));
      if (response.finish_reason === "tool_calls") {
        status("Answer stored. The model asked for tool results: send them through the API before the next message.", "busy");
      } else {
        status("Answer stored.", "done");
      }
    } catch (err) {
      if (!messageBox.value) messageBox.value = content;
      if (err instanceof ApiFailure && err.code === "session_busy") {
        transcript.withdraw(turn);
        status(`Session busy: ${describe(err)}`, "busy");
      } else {
        transcript.fail(turn, err);
        status("The answer failed and nothing was stored; the error is shown in the conversation.", "failed");
        await refresh(id);
      }
    } finally {
      sending = false;
      sendButton.disabled = false;
    }
  }
  async function exportSession() {
    if (!sessionId) return;
    const name = `session-${sessionId}.ndjson`;
    try {
      const response = await send(`${sessionPath(sessionId)}/export`, { headers: headers() });
      const url = URL.createObjectURL(await response.blob());
      const link = h("a", { href: url, download: name, hidden: "" });
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 6e4);
      status(`Exported as ${name}.`, "done");
    } catch (err) {
      showError(`Export failed: ${describe(err)}`);
    }
  }
  async function deleteSession() {
    const id = sessionId;
    if (!id || !window.confirm(`Delete session ${id} and its whole history?`)) return;
    try {
      await call("DELETE", sessionPath(id));
    } catch (err) {
      showError(`Delete failed: ${describe(err)}`);
      return;
    }
    closeSession();
    setText("sessions-status", `Session ${id} deleted.`);
    byId("model").focus();
  }
  function status(text, kind) {
    const line = byId("send-status");
    line.textContent = text;
    line.className = `status ${kind}`;
  }
  function showError(text) {
    setText("conversation-error", text);
  }
  function clearError() {
    setText("conversation-error", "");
  }
  byId("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    void useKey(byId("api-key").value.trim());
  });
  byId("forget-key").addEventListener("click", () => {
    useCredential({ kind: "none" });
    closeSession();
    askForKey();
  });
  byId("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    void sendMessage();
  });
  messageBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      byId("composer").requestSubmit();
    }
  });
  byId("export").addEventListener("click", () => void exportSession());
  byId("delete").addEventListener("click", () => void deleteSession());
  window.addEventListener("hashchange", () => {
    const fragment = readFragment();
    const credential2 = currentCredential();
    if ((fragment.token ?? null) !== (credential2.kind === "token" ? credential2.token : null)) window.location.reload();
    else if (fragment.session && fragment.session !== sessionId) void openSession(fragment.session);
  });
  void boot();
})();

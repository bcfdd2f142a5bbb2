// Live events: GET /api/events read with fetch() (it needs the operator header, which
// EventSource cannot send), parsed as the SSE text format, resumed with Last-Event-ID.

// A parser of the text/event-stream format (WHATWG HTML, "Server-sent events"): feed it text as
// it arrives, in chunks of any size; it calls onMessage({id, event, data}) per complete message.
export function sseParser(onMessage) {
  let pending = "";
  let data = [];
  let event = "";
  let lastId = null;
  let retry = null;

  function line(text) {
    if (text === "") {
      if (data.length) onMessage({ id: lastId, event: event || "message", data: data.join("\n") });
      data = [];
      event = "";
      return;
    }
    if (text.startsWith(":")) return; // a comment: the keep-alive
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
    else if (field === "id" && !value.includes("\0")) lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }

  return {
    feed(chunk) {
      pending += chunk;
      // A chunk may end between the \r and \n of one line end: keep a trailing \r for later.
      const cut = pending.endsWith("\r") ? pending.length - 1 : pending.length;
      const lines = pending.slice(0, cut).split(/\r\n|\r|\n/);
      pending = lines.pop() + pending.slice(cut);
      lines.forEach(line);
    },
    get lastId() { return lastId; },
    get retry() { return retry; },
  };
}

// Follows a stream of events and says how it goes through onState(state, detail):
// "connecting", "live", "reconnecting", "unavailable" (the gateway has no such stream: 404),
// "refused" (401/403). Pages keep refreshing on their interval whatever the state.
export class LiveEvents {
  constructor({ url, headers, onEvent, onState, retryMs = 2000, unavailableRetryMs = 30000 }) {
    Object.assign(this, { url, headers, onEvent, onState, retryMs, unavailableRetryMs });
    this.lastId = null;
    this.controller = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async loop() {
    while (!this.stopped) {
      const wait = await this.once();
      if (this.stopped || wait === null) return;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  // One connection; returns how long to wait before the next (null: do not reconnect).
  async once() {
    this.controller = new AbortController();
    const headers = { ...this.headers(), Accept: "text/event-stream" };
    if (this.lastId !== null) headers["Last-Event-ID"] = this.lastId;
    let response;
    try {
      response = await fetch(this.url, { headers, signal: this.controller.signal, cache: "no-store" });
    } catch (error) {
      this.onState("reconnecting", String(error));
      return this.retryMs;
    }
    if (response.status === 404) {
      this.onState("unavailable", "the gateway serves no live event stream");
      return this.unavailableRetryMs;
    }
    if (response.status === 401 || response.status === 403) {
      this.onState("refused", `HTTP ${response.status}`);
      return null;
    }
    if (!response.ok || !response.body) {
      this.onState("reconnecting", `HTTP ${response.status}`);
      return this.retryMs;
    }
    this.onState("live");
    const parser = sseParser((message) => {
      if (message.id !== null) this.lastId = message.id;
      let data = null;
      try {
        data = JSON.parse(message.data);
      } catch {
        data = message.data;
      }
      this.onEvent({ id: message.id, event: message.event, data });
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
    } catch (error) {
      if (this.stopped) return null;
    }
    if (this.stopped) return null;
    this.onState("reconnecting", "the stream ended");
    return parser.retry ?? this.retryMs;
  }
}

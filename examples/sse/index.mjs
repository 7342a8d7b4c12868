// Server-sent events from a function: the response body is a ReadableStream, and each event
// reaches the client as soon as it is enqueued, not when the handler's stream ends.
//
//   GET /?count=5&interval=200   `count` events (1-100, default 5), `interval` ms apart (0-10000,
//                                default 200), then the stream ends
//
// Each event: `id: n`, `event: tick`, `data: {"n": n, "of": count, "at": "<ISO time>"}`.

const encoder = new TextEncoder();

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const count = bounded(url.searchParams.get('count'), 5, 1, 100);
    const interval = bounded(url.searchParams.get('interval'), 200, 0, 10_000);
    let timer;
    const stream = new ReadableStream({
      start(controller) {
        let n = 0;
        const tick = () => {
          n += 1;
          const data = JSON.stringify({ n, of: count, at: new Date().toISOString() });
          controller.enqueue(encoder.encode(`id: ${n}\nevent: tick\ndata: ${data}\n\n`));
          if (n === count) controller.close();
          else timer = setTimeout(tick, interval);
        };
        tick();
      },
      // the client went away: stop producing
      cancel() {
        clearTimeout(timer);
      },
    });
    return new Response(stream, {
      headers: {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
      },
    });
  },
};

function bounded(raw, fallback, min, max) {
  const n = raw === null ? fallback : Number(raw);
  if (!Number.isInteger(n)) return fallback;
  return Math.min(max, Math.max(min, n));
}

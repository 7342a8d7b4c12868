// An event function: the handler takes a JSON event and returns a JSON-serializable result.
// The same handler answers `containerpub invoke`, POST /api/functions/{id}/invoke and its
// endpoint, where the request body parsed as JSON is the event (null when there is no body) and the
// result comes back as JSON 200.
//
// This one counts the words of {"text": "…"} and names the most frequent ones.

export default async (event, context) => {
  const text = typeof event?.text === 'string' ? event.text : '';
  const words = text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
  const counts = new Map();
  for (const word of words) counts.set(word, (counts.get(word) ?? 0) + 1);
  const top = [...counts.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, 3)
    .map(([word, count]) => ({ word, count }));
  return {
    words: words.length,
    characters: text.length,
    top,
    ...(text === '' ? { hint: 'send {"text": "…"}' } : {}),
    version: context.version,
    requestId: context.requestId,
  };
};

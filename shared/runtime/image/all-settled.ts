// Runs tasks side by side under one abort signal: the first failure aborts the others, and the call
// returns only once every task has stopped, so that nothing is still writing into (or uploading
// from) a work directory the caller is about to remove.

/** Each task gets a signal aborted when the caller's is, or when another task fails. */
export async function allOrAbort<T extends readonly unknown[]>(
  signal: AbortSignal | undefined,
  tasks: { [K in keyof T]: (signal: AbortSignal) => Promise<T[K]> },
): Promise<T> {
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal!.reason);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  let first: { error: unknown } | null = null;
  try {
    const results = await Promise.allSettled(
      tasks.map((task) =>
        task(ac.signal).catch((err: unknown) => {
          // the first failure is the cause; the others are mostly its consequence (aborted)
          first ??= { error: err };
          ac.abort(err);
          throw err;
        }),
      ),
    );
    if (first) throw (first as { error: unknown }).error;
    return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

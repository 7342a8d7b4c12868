// One event stream per function page (GET /api/functions/{name}/events/stream): the tabs and the
// build follower subscribe to it instead of each opening their own, since the API bounds open
// streams per user. EventSource reconnects by itself and resumes from the last id it saw.
import { fnPath } from './api.js';

// an SSE message is only delivered to listeners of its event name: these are the names the
// stream sends (shared/domain/events.ts FunctionEvent, plus invocation and build_log)
const EVENT_NAMES = [
  'deploy_requested', 'upload_completed', 'upload_rejected', 'upload_expired', 'build_started', 'build_succeeded',
  'build_failed', 'build_retried', 'build_waiting', 'activated', 'activation_skipped', 'rolled_back',
  'restore_requested', 'rebuild_requested', 'archived', 'archive_deleted', 'image_removed', 'crash_loop',
  'traffic_changed', 'promoted', 'tag_set', 'tag_removed', 'awaiting_approval', 'approved', 'activation_held',
  'canary_started', 'canary_advanced', 'canary_waiting', 'canary_promoted', 'canary_rolled_back', 'canary_aborted',
  'invocation', 'build_log',
];

export class FunctionStream {
  constructor(name) {
    this.name = name;
    this.subscribers = new Set();
    this.statusSubscribers = new Set();
    this.connected = false;
    this.source = null;
  }

  open() {
    if (this.source) return;
    const source = new EventSource(fnPath(this.name, '/events/stream'));
    this.source = source;
    const deliver = (e) => {
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
      for (const fn of this.subscribers) fn(e.type, data, e.lastEventId);
    };
    for (const name of EVENT_NAMES) source.addEventListener(name, deliver);
    source.onopen = () => this.setConnected(true);
    source.onerror = () => this.setConnected(false);
  }

  setConnected(v) {
    if (this.connected === v) return;
    this.connected = v;
    for (const fn of this.statusSubscribers) fn(v);
  }

  /** fn(type, data, id) for every message; returns the unsubscribe */
  subscribe(fn) {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  onStatus(fn) {
    this.statusSubscribers.add(fn);
    return () => this.statusSubscribers.delete(fn);
  }

  close() {
    this.source?.close();
    this.source = null;
    this.setConnected(false);
  }
}

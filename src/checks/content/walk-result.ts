// The MIME walk of a message, done once and shared: every content check asks walkOf(message)
// and gets the same memoised promise, whichever runs first (the runner orders them after the
// mime-walk check through `needs: ['mime.*']`; until it does, the promise makes order irrelevant).
import type { MessageView } from '../../pipeline/check.ts';
import { walkMime, DEFAULT_WALK_LIMITS, type MimeWalk, type WalkLimits } from '../../message/mime-walk.ts';
import type { ContentConfig } from '../../config/content-schema.ts';

// Keyed by the per-message MessageView, so the walk is garbage once the message is.
const walks = new WeakMap<MessageView, Promise<MimeWalk>>();

export function walkLimitsFrom(mime: ContentConfig['mime']): WalkLimits {
  return {
    maxDepth: mime.max_depth,
    maxParts: mime.max_parts,
    maxPartHeaderBytes: mime.max_part_header_bytes,
    maxDecodedBytes: mime.max_decoded_bytes,
    maxTextBytes: mime.max_text_bytes,
    maxKeepBytes: mime.max_keep_bytes,
    maxKeepTotalBytes: mime.max_keep_total_bytes,
  };
}

/** The walk of `message`, started on first call (from its spool stream) and memoised. */
export function walkOf(message: MessageView, limits: WalkLimits = DEFAULT_WALK_LIMITS): Promise<MimeWalk> {
  let w = walks.get(message);
  if (!w) {
    // In memory: the spool's buffers, walked at once (no stream); from a temp file: its stream.
    w = walkMime(message.memoryChunks?.() ?? (message.stream() as AsyncIterable<Buffer>), limits);
    walks.set(message, w);
  }
  return w;
}

/** Memoised per-message results of other content analyses (attachments), keyed by name. */
const derived = new WeakMap<MessageView, Map<string, Promise<unknown>>>();

export function derivedOf<T>(message: MessageView, key: string, make: () => Promise<T>): Promise<T> {
  let m = derived.get(message);
  if (!m) {
    m = new Map();
    derived.set(message, m);
  }
  let p = m.get(key) as Promise<T> | undefined;
  if (!p) {
    p = make();
    m.set(key, p);
  }
  return p;
}

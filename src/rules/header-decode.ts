// Decodes RFC 2047 encoded-words (`=?utf-8?B?...?=`) in header values so that `header.*` rules
// match what a reader sees; spammers encode subjects precisely to dodge plain-text filters.

const ENCODED_WORD = /=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=/g;
/** Whitespace between two adjacent encoded-words is not part of the text (RFC 2047 §6.2). */
const BETWEEN_WORDS = /(\?=)\s+(=\?)/g;

function decodeQ(text: string): Uint8Array {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '_') bytes.push(0x20);
    else if (ch === '=' && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(text.charCodeAt(i) & 0xff);
  }
  return Uint8Array.from(bytes);
}

function decoderFor(charset: string): TextDecoder | undefined {
  try {
    return new TextDecoder(charset.toLowerCase(), { fatal: false });
  } catch {
    return undefined;
  }
}

/** Returns `value` with every well-formed encoded-word decoded; others are left as written. */
export function decodeHeaderValue(value: string): string {
  if (!value.includes('=?')) return value;
  return value.replace(BETWEEN_WORDS, '$1$2').replace(ENCODED_WORD, (word, charset: string, enc: string, text: string) => {
    const decoder = decoderFor(charset);
    if (!decoder) return word;
    const bytes = enc.toUpperCase() === 'B' ? Buffer.from(text, 'base64') : decodeQ(text);
    return decoder.decode(bytes);
  });
}

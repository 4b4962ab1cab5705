/**
 * Request bodies are small everywhere (a route with a legitimately larger one declares its own `bodyLimit`).
 * Anything bigger is a 413 before a byte of it is parsed.
 */
export const DEFAULT_BODY_LIMIT = 16 * 1024;

/** Token-bucket defaults per token: a steady rate with room for a short burst. */
export const DEFAULT_RATE_LIMIT_PER_SECOND = 20;
export const RATE_LIMIT_BURST_FACTOR = 2;

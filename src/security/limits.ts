/**
 * Request body limits: small everywhere, larger only where a body can legitimately be (creating a container with
 * its labels). Anything bigger is a 413 before a byte of it is parsed.
 */
export const DEFAULT_BODY_LIMIT = 16 * 1024;

export const ROUTE_BODY_LIMITS: Readonly<Record<string, number>> = {
  'POST /containers': 256 * 1024,
  'POST /bundles': 256 * 1024,
};

/** Token-bucket defaults per token: a steady rate with room for a short burst. */
export const DEFAULT_RATE_LIMIT_PER_SECOND = 20;
export const RATE_LIMIT_BURST_FACTOR = 2;

/**
 * The one signal parser. Accepts what `runc kill` and `kill(1)` users type: `SIGTERM`, `TERM`, `term`, `15`.
 * Only the classic signals 1-31 are accepted: 0 is a liveness probe, not a signal a caller means to deliver, and
 * real-time signals have no stable names across libcs.
 */

const SIGNALS_BY_NAME: Readonly<Record<string, number>> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  TRAP: 5,
  ABRT: 6,
  IOT: 6,
  BUS: 7,
  FPE: 8,
  KILL: 9,
  USR1: 10,
  SEGV: 11,
  USR2: 12,
  PIPE: 13,
  ALRM: 14,
  TERM: 15,
  STKFLT: 16,
  CHLD: 17,
  CLD: 17,
  CONT: 18,
  STOP: 19,
  TSTP: 20,
  TTIN: 21,
  TTOU: 22,
  URG: 23,
  XCPU: 24,
  XFSZ: 25,
  VTALRM: 26,
  PROF: 27,
  WINCH: 28,
  IO: 29,
  POLL: 29,
  PWR: 30,
  SYS: 31,
};

const CANONICAL_NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [name, number] of Object.entries(SIGNALS_BY_NAME)) names[number] ??= `SIG${name}`;
  return names;
})();

export interface Signal {
  number: number;
  name: string;
}

export type SignalParseResult = { ok: true; signal: Signal } | { ok: false; reason: string };

/** Every name parseSignal knows, without the SIG prefix (HUP ... SYS, aliases included). */
export const SIGNAL_NAMES: readonly string[] = Object.keys(SIGNALS_BY_NAME);

export function parseSignal(input: string | number): SignalParseResult {
  const text = String(input);
  // Not trimmed: `SIGKILL ` is not what a careful caller sends, and accepting it let the OpenAPI document and
  // the parser disagree about what a signal is.
  if (text !== text.trim()) {
    return { ok: false, reason: `invalid signal ${JSON.stringify(text)}: no surrounding whitespace allowed` };
  }
  if (/^-?\d+$/.test(text)) {
    const number = Number(text);
    if (number >= 1 && number <= 31) return { ok: true, signal: { number, name: CANONICAL_NAMES[number]! } };
    return { ok: false, reason: `invalid signal ${JSON.stringify(text)}: numbers must be between 1 and 31` };
  }
  const bare = text.toUpperCase().replace(/^SIG/, '');
  const number = SIGNALS_BY_NAME[bare];
  if (number === undefined) {
    return {
      ok: false,
      reason: `unknown signal ${JSON.stringify(text)}: use a name such as SIGTERM, TERM or KILL, or a number from 1 to 31`,
    };
  }
  return { ok: true, signal: { number, name: CANONICAL_NAMES[number]! } };
}

export function signalName(number: number): string | undefined {
  return CANONICAL_NAMES[number];
}

import { ERROR_CATALOG, KIND_STATUS, type ErrorCode } from '../error-catalog.js';

/** The README's list of every error code, rendered from the catalog (a test keeps the two equal). */
export function renderErrorTable(): string {
  const rows = (Object.keys(ERROR_CATALOG) as ErrorCode[]).map((code) => {
    const { kind, description } = ERROR_CATALOG[code];
    return `| \`${code}\` | ${KIND_STATUS[kind].status} | ${kind} | ${description} |`;
  });
  return ['| code | status | kind | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

export const ERROR_TABLE_START = '<!-- error-catalog:start (generated from src/error-catalog.ts) -->';
export const ERROR_TABLE_END = '<!-- error-catalog:end -->';

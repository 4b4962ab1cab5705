import { ERROR_TABLE_END, ERROR_TABLE_START, renderErrorTable } from './error-table.js';

// Prints the README's generated section (paste it between the markers, then run prettier on README.md).
process.stdout.write(`${ERROR_TABLE_START}\n\n${renderErrorTable()}\n\n${ERROR_TABLE_END}\n`);

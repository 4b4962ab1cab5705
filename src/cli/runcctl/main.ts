import { parseArgs } from 'node:util';
import { RUNCD_VERSION } from '../../version.js';
import { COMMANDS, type Io } from './commands.js';
import { connect, DEFAULT_HOST } from './connection.js';
import { CliError, EXIT_FAILURE, EXIT_UNKNOWN_COMMAND } from './errors.js';

const GLOBAL_OPTIONS = {
  host: { type: 'string', short: 'H' },
  token: { type: 'string' },
  cacert: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

export function usage(): string {
  const commands = Object.entries(COMMANDS)
    .map(([name, spec]) => `  ${name.padEnd(8)} ${spec.summary}`)
    .join('\n');
  return `usage: runcctl [global options] COMMAND [ARGS]   (runc's commands, against runcd)

global options (each also from the environment):
  --host URL     unix:///path/to/runcd.sock or https://host:port (RUNCD_HOST; default ${DEFAULT_HOST})
  --token TOKEN  bearer token (RUNCD_TOKEN); required on TCP
  --cacert FILE  CA that signed the server's certificate (RUNCD_CACERT)
  --cert FILE, --key FILE  client certificate and key for mutual TLS (RUNCD_CERT, RUNCD_KEY)

commands:
${commands}

Exit codes follow runc's: 0 on success, 1 on failure, 255 when exec itself fails (otherwise exec and run exit
with the process's own code), 3 for an unknown command. Errors print runcd's explanation on one line.`;
}

/** Global options come before the command; everything after it belongs to the command. */
function splitAtCommand(argv: string[]): { globals: string[]; command: string | undefined; rest: string[] } {
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    if (!arg.startsWith('-'))
      return { globals: argv.slice(0, index), command: arg, rest: argv.slice(index + 1) };
    const name = arg.replace(/^-+/, '').split('=')[0]!;
    const takesValue = ['host', 'H', 'token', 'cacert', 'cert', 'key'].includes(name) && !arg.includes('=');
    if (takesValue) index++;
  }
  return { globals: argv, command: undefined, rest: [] };
}

export async function runcctl(argv: string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  try {
    const { globals, command, rest } = splitAtCommand(argv);
    let values;
    try {
      ({ values } = parseArgs({ args: globals, options: GLOBAL_OPTIONS, strict: true }));
    } catch (error) {
      throw new CliError(`${(error as Error).message} (see runcctl --help)`);
    }
    if (values.version) {
      io.stdout(`runcctl version ${RUNCD_VERSION}\n`);
      return 0;
    }
    if (values.help || command === undefined || command === 'help') {
      io.stdout(`${usage()}\n`);
      return command === undefined && !values.help ? EXIT_FAILURE : 0;
    }
    const spec = COMMANDS[command];
    if (!spec)
      throw new CliError(`No help topic for '${command}' (see runcctl --help)`, EXIT_UNKNOWN_COMMAND);
    const connection = connect({
      host: values.host ?? env.RUNCD_HOST ?? DEFAULT_HOST,
      token: values.token ?? (env.RUNCD_TOKEN || undefined),
      caFile: values.cacert ?? (env.RUNCD_CACERT || undefined),
      certFile: values.cert ?? (env.RUNCD_CERT || undefined),
      keyFile: values.key ?? (env.RUNCD_KEY || undefined),
    });
    return await spec.run({ connection, io }, rest);
  } catch (error) {
    if (error instanceof CliError) {
      io.stderr(`runcctl: ${error.message}\n`);
      return error.exitCode;
    }
    io.stderr(`runcctl: ${(error as Error).message}\n`);
    return EXIT_FAILURE;
  }
}

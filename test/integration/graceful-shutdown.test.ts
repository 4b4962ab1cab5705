import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Agent, request } from 'undici';
import type { ExecResult } from '../../src/schemas/container.js';
import { DaemonProcess, eventually, makeSandbox, RUNTIME_BINARY } from '../helpers/sandbox.js';

t.test(
  'SIGTERM: no new connections, the in-flight exec completes, streams end, containers keep running',
  async (t) => {
    const sandbox = makeSandbox(t, 'shutdown');
    // A writable rootfs, so the exec can leave a mark the test sees from the host.
    const bundle = sandbox.bundle('sleeper', ['sleep', '999999'], (spec) => {
      (spec.root as { readonly: boolean }).readonly = false;
    });
    const rootfsTmp = join(bundle, 'rootfs', 'tmp');
    const daemon = new DaemonProcess(sandbox);
    t.teardown(() => daemon.close());
    await daemon.start();
    const id = sandbox.id('busy');
    t.equal((await daemon.request('POST', '/containers', { id, bundle, start: true })).status, 201);

    // Streams that would otherwise stay open forever: they must end, not hold the shutdown.
    const streams = new Agent({ connect: { socketPath: sandbox.socket } });
    t.teardown(() => streams.close());
    const events = await request('http://localhost/events', { dispatcher: streams });
    const logs = await request(`http://localhost/containers/${id}/logs?follow=true`, { dispatcher: streams });
    t.equal(events.statusCode, 200);
    t.equal(logs.statusCode, 200);
    const eventsText = events.body.text();
    const logsText = logs.body.text();

    // The exec signals that it runs, then waits for the test's go, so the order below is certain.
    const exec = daemon.request<ExecResult>('POST', `/containers/${id}/exec`, {
      args: ['sh', '-c', 'touch /tmp/started; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo finished'],
    });
    await eventually(async () => (existsSync(join(rootfsTmp, 'started')) ? true : undefined), 15_000);

    const stopped = daemon.stop('SIGTERM');
    // New connections are refused while the exec is still in flight (the socket is gone or closed).
    await eventually(async () => {
      try {
        await new DaemonProcess(sandbox).request('GET', '/healthz');
        return undefined;
      } catch (error) {
        return (error as Error).message;
      }
    }, 10_000);
    t.notOk(existsSync(sandbox.socket), 'the socket file is removed');
    t.equal(daemon.exitStatus(), undefined, 'the daemon is still finishing the exec');

    writeFileSync(join(rootfsTmp, 'go'), '');
    const result = await exec;
    t.equal(result.status, 200, 'the in-flight exec is answered');
    t.match(result.body, { exitCode: 0, stdout: 'finished\n', timedOut: false });

    await stopped;
    t.same(daemon.exitStatus(), { code: 0, signal: null }, 'runcd exits 0 after its graceful shutdown');
    t.notMatch(daemon.output, /did not finish in time/, 'nothing had to be cut');
    await eventsText;
    t.equal(await logsText, '', 'the log follow ended (the container printed nothing)');

    const state = JSON.parse(
      execFileSync(RUNTIME_BINARY, [`--root=${sandbox.runtimeRoot}`, 'state', id]).toString(),
    ) as { status: string };
    t.equal(state.status, 'running', 'the container was never touched');

    // And a new daemon picks it up where the old one left off.
    const next = new DaemonProcess(sandbox);
    t.teardown(() => next.close());
    await next.start();
    t.match((await next.request('GET', `/containers/${id}`)).body, { status: 'running' });
  },
);

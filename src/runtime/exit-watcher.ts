import { watch, type FSWatcher } from 'node:fs';
import { readdir } from 'node:fs/promises';

/**
 * Watches conmon's exit directory with inotify (fs.watch): conmon creates `<exitDir>/<id>` when a container's
 * init exits, so exits are seen within milliseconds and nothing polls runc.
 */
export class ExitWatcher {
  private watcher: FSWatcher | undefined;

  constructor(
    private readonly exitDir: string,
    private readonly onExitFile: (id: string) => void,
  ) {}

  async start(): Promise<void> {
    this.watcher = watch(this.exitDir, { persistent: true }, (_event, filename) => {
      if (filename) this.onExitFile(filename.toString());
    });
    // Exits that landed before the watch started are delivered too; the listener ignores ones it already knows.
    for (const name of await readdir(this.exitDir)) this.onExitFile(name);
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}

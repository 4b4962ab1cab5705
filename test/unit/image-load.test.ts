import t from 'tap';
import { familiarName, imageName } from '../../src/docker/translate/images.js';
import { ImageTools, ImageToolError, toolMessage } from '../../src/runtime/image-tools.js';
import { ProcessRunner } from '../../src/runtime/process-runner.js';

t.test('archive names become the names the docker CLI shows', async (t) => {
  t.equal(familiarName('docker.io/library/bb:latest'), 'bb:latest');
  t.equal(familiarName('docker.io/acme/app:v1'), 'acme/app:v1');
  t.equal(familiarName('index.docker.io/library/bb:1'), 'bb:1');
  t.equal(
    familiarName('docker.io/library/sub/path:1'),
    'library/sub/path:1',
    'library/ goes only before a last component',
  );
  t.equal(
    familiarName('registry.local:5000/app:v1'),
    'registry.local:5000/app:v1',
    'other registries stay as they are',
  );
  t.same(imageName(familiarName('docker.io/library/bbload:latest')), {
    name: 'bbload:latest',
    bundleId: 'bbload',
  });
});

t.test("the image tools' own words become the error message", async (t) => {
  t.equal(
    toolMessage('time="2026-01-01T00:00:00Z" level=fatal msg="reading manifest: file \\"x\\" not found"\n'),
    'reading manifest: file "x" not found',
    "skopeo's logfmt line",
  );
  t.equal(
    toolMessage(
      '   ⨯ create runtime bundle: unpack rootfs: unpack entry: hl: link: no such file or directory\n',
    ),
    'create runtime bundle: unpack rootfs: unpack entry: hl: link: no such file or directory',
    "umoci's line",
  );
  t.equal(toolMessage(''), '');
});

t.test(
  'a missing tool is "unavailable", and runcd-made paths and tags are the only ones passed',
  async (t) => {
    const tools = new ImageTools({ runner: new ProcessRunner(), skopeoBinary: '/nonexistent/skopeo' });
    const work = t.testdir();
    const failure = await tools
      .copyToLayout(
        { transport: 'docker-archive', path: `${work}/a.tar`, index: 0 },
        `${work}/oci`,
        'image-0',
        work,
      )
      .catch((error: unknown) => error);
    t.ok(failure instanceof ImageToolError);
    t.equal((failure as ImageToolError).kind, 'unavailable');
    await t.rejects(tools.unpack(`${work}/oci`, 'a:b', `${work}/u`, work), /not a plain tag/);
    await t.rejects(tools.unpack(`${work}/o:ci`, 'image-0', `${work}/u`, work), /contains a colon/);
  },
);

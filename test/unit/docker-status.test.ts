import t from 'tap';
import { DOCKER_OPERATION_ANSWERS, dockerAnswerFor } from '../../src/docker/docker-status.js';
import { isErrorCode } from '../../src/error-catalog.js';
import {
  ConflictError,
  InvalidInputError,
  NotFoundError,
  RuntimeRejectedError,
  TimeoutError,
} from '../../src/errors.js';

const id = 'c1';
const dockerId = 'ab'.repeat(32);

t.test("Docker's answers follow runcd's codes, per operation", async (t) => {
  const running = new ConflictError(
    'container_already_running',
    'cannot start an already running container',
    id,
  );
  t.same(
    dockerAnswerFor(running, 'start', dockerId).status,
    304,
    'start of a running container: not modified',
  );
  t.same(dockerAnswerFor(running).status, 409, 'elsewhere the same code is a conflict');
  const paused = new ConflictError('container_paused', 'paused', id);
  t.equal(dockerAnswerFor(paused, 'start').status, 304);
  t.equal(
    dockerAnswerFor(paused, 'exec', dockerId).message,
    `Container ${dockerId} is paused, unpause the container before exec`,
  );
  const notRunning = new ConflictError('container_not_running', 'container "c1" is not running', id);
  t.same(dockerAnswerFor(notRunning, 'kill', dockerId), {
    status: 409,
    message: `Cannot kill container: ${dockerId}: container ${dockerId} is not running`,
  });
  const busy = new ConflictError(
    'container_not_stopped',
    'cannot delete container that is not stopped: paused',
    id,
  );
  t.match(
    dockerAnswerFor(busy, 'remove', dockerId).message,
    `You cannot remove a paused container ${dockerId}`,
  );
});

t.test('without an operation, the kind decides', async (t) => {
  t.equal(dockerAnswerFor(new NotFoundError('container_not_found', 'no', id)).status, 404);
  t.equal(dockerAnswerFor(new InvalidInputError('invalid_signal', 'bad')).status, 400);
  t.equal(dockerAnswerFor(new TimeoutError('runtime_timeout', 'slow')).status, 504);
  t.equal(
    dockerAnswerFor(new RuntimeRejectedError('runtime_create_failed', 'runc said no')).status,
    500,
    'Docker has no 422: a runtime refusal is its 500',
  );
});

t.test('the table only names codes of the catalog, and only conflicts become 304', async (t) => {
  for (const [operation, answers] of Object.entries(DOCKER_OPERATION_ANSWERS)) {
    for (const [code, answer] of Object.entries(answers)) {
      t.ok(isErrorCode(code), `${operation}: ${code}`);
      t.ok([304, 409].includes(answer.status), `${operation}: ${code} → ${answer.status}`);
    }
  }
});

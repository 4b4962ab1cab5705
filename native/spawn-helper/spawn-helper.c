/*
 * runcd's compiled spawn helper: the same job as src/runtime/spawn-helper-process.ts (spawn-helper.ts says why
 * runcd forks through a helper at all), without a Node process in the way. A Node child_process.spawn of /bin/true
 * costs ~1.9 ms on the VM this was measured on, posix_spawn + waitpid from C ~0.7 ms, and runcd makes five runtime
 * calls per container lifecycle.
 *
 * runcd starts it with a pipe on fd 0 (requests), a pipe on fd 1 (answers) and its own stderr on fd 2. Every
 * frame in either direction is a 12-byte header (body length, id, type: little-endian uint32s) and a body;
 * src/runtime/spawn-helper-protocol.ts is the other side and documents each body.
 * The first answer is a hello naming the protocol version: runcd's self-check.
 *
 * One thread and one poll loop: SIGCHLD arrives through a signalfd, children are started with posix_spawn (glibc
 * uses CLONE_VM|CLONE_VFORK, so nothing is copied), every pipe is non-blocking, and deadlines are the poll's
 * timeout. It owns no policy: what to run, with which environment and limits, is runcd's. It exits when runcd's
 * end of fd 0 closes, leaving the processes it started to run on in their own process groups, as runcd's own
 * children would.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HELLO "runcd-spawn-helper/1"

enum { REQ_RUN = 1, REQ_REMOVE = 2, REQ_KILL = 3 };
enum { ANS_HELLO = 0, ANS_SPAWNED = 1, ANS_DONE = 2, ANS_SPAWN_ERROR = 3 };
enum { RUN_IGNORE_STDOUT = 1, RUN_INPUT = 2, RUN_FIFO_AS_FD3 = 4, RUN_END_AT_EXIT = 8, RUN_CWD = 16 };
enum { DONE_TRUNCATED = 1, DONE_TIMED_OUT = 2 };

#define HEADER_BYTES 12u
/* A request body larger than this is refused (and skipped): runcd's largest is a CNI config of a few KiB. */
#define MAX_BODY_BYTES (64u * 1024u * 1024u)
/* A removal deeper than this leaves the rest for runcd's next start, which sweeps what is left. */
#define MAX_REMOVE_DEPTH 4096

struct buffer {
  char *data;
  size_t len, cap;
};

enum job_kind { JOB_RUN, JOB_REMOVE };

struct job {
  struct job *next;
  uint32_t id;
  enum job_kind kind;
  pid_t pid;
  int in_fd, out_fd, err_fd;
  char *input;
  size_t input_len, input_off;
  size_t limit;
  struct buffer out, err;
  int truncated, timed_out, end_at_exit, exited, status;
  int64_t deadline_ms; /* 0: none */
};

static struct job *jobs;
static struct buffer answers;
static size_t answers_off;
static struct buffer requests;
static size_t skip_bytes;
static int devnull = -1;

static void die(const char *what) {
  fprintf(stderr, "runcd-spawn-helper: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    errno = ENOMEM;
    die("out of memory");
  }
  return q;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void buffer_reserve(struct buffer *b, size_t extra) {
  if (b->cap - b->len >= extra) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap - b->len < extra) cap *= 2;
  b->data = xrealloc(b->data, cap);
  b->cap = cap;
}

static void buffer_append(struct buffer *b, const void *data, size_t n) {
  buffer_reserve(b, n);
  memcpy(b->data + b->len, data, n);
  b->len += n;
}

static void append_u32(struct buffer *b, uint32_t v) {
  v = htole32(v);
  buffer_append(b, &v, 4);
}

static void answer(uint32_t id, uint32_t type, const struct buffer *body) {
  append_u32(&answers, body ? (uint32_t)body->len : 0);
  append_u32(&answers, id);
  append_u32(&answers, type);
  if (body && body->len) buffer_append(&answers, body->data, body->len);
}

static void answer_text(uint32_t id, uint32_t type, const char *text) {
  struct buffer body = {0};
  buffer_append(&body, text, strlen(text));
  answer(id, type, &body);
  free(body.data);
}

/* Node's own names, so a spawn error reads the same whichever helper ran it ("spawn /x ENOENT"). */
static const char *errno_name(int e) {
  switch (e) {
  case ENOENT: return "ENOENT";
  case EACCES: return "EACCES";
  case ENOEXEC: return "ENOEXEC";
  case ENOTDIR: return "ENOTDIR";
  case EISDIR: return "EISDIR";
  case ELOOP: return "ELOOP";
  case ENAMETOOLONG: return "ENAMETOOLONG";
  case E2BIG: return "E2BIG";
  case EPERM: return "EPERM";
  case ENOMEM: return "ENOMEM";
  case EMFILE: return "EMFILE";
  case ENFILE: return "ENFILE";
  case EAGAIN: return "EAGAIN";
  case ETXTBSY: return "ETXTBSY";
  case EINVAL: return "EINVAL";
  default: return strerror(e);
  }
}

static void answer_spawn_error(uint32_t id, const char *binary, const char *what, int e) {
  char message[512];
  snprintf(message, sizeof message, "spawn %.300s %s%s", binary, what, e ? errno_name(e) : "");
  answer_text(id, ANS_SPAWN_ERROR, message);
}

/* Keeps fd 3 (and the stdio numbers) free, so the child's dup2 to 3 never meets a descriptor already there. */
static int high_fd(int fd) {
  if (fd < 0 || fd > 9) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  int saved = errno;
  close(fd);
  errno = saved;
  return moved;
}

static void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void free_job(struct job *job) {
  struct job **link = &jobs;
  while (*link && *link != job) link = &(*link)->next;
  if (*link) *link = job->next;
  close_fd(&job->in_fd);
  close_fd(&job->out_fd);
  close_fd(&job->err_fd);
  free(job->input);
  free(job->out.data);
  free(job->err.data);
  free(job);
}

static struct job *find_job(uint32_t id) {
  for (struct job *job = jobs; job; job = job->next)
    if (job->id == id) return job;
  return NULL;
}

static void kill_group(struct job *job) {
  if (job->pid > 0) kill(-job->pid, SIGKILL);
}

/* Reading a request body: every field is bounds-checked; a short or inconsistent body is a malformed request. */
struct reader {
  const char *p, *end;
  int bad;
};

static uint32_t read_u32(struct reader *r) {
  uint32_t v = 0;
  if (r->bad || (size_t)(r->end - r->p) < 4) {
    r->bad = 1;
    return 0;
  }
  memcpy(&v, r->p, 4);
  r->p += 4;
  return le32toh(v);
}

/* A copy with a terminating NUL; `binary` says it goes to execve, which cannot carry a NUL inside. */
static char *read_string(struct reader *r, size_t *len_out, int binary) {
  uint32_t len = read_u32(r);
  if (r->bad || (size_t)(r->end - r->p) < len || (!binary && memchr(r->p, 0, len))) {
    r->bad = 1;
    return NULL;
  }
  char *s = xrealloc(NULL, (size_t)len + 1);
  memcpy(s, r->p, len);
  s[len] = 0;
  r->p += len;
  if (len_out) *len_out = len;
  return s;
}

static char **read_list(struct reader *r, size_t *count_out) {
  uint32_t count = read_u32(r);
  /* Each entry takes at least its 4-byte length: a count beyond that is a lie, not an allocation. */
  if (r->bad || count > (size_t)(r->end - r->p) / 4) {
    r->bad = 1;
    return NULL;
  }
  char **list = xrealloc(NULL, ((size_t)count + 1) * sizeof *list);
  size_t i = 0;
  for (; i < count && !r->bad; i++) list[i] = read_string(r, NULL, 0);
  list[i] = NULL;
  *count_out = i;
  return list;
}

static void free_list(char **list) {
  if (!list) return;
  for (char **s = list; *s; s++) free(*s);
  free(list);
}

/* libuv looks a bare name up in the PATH of the child's environment, not the helper's: so does this. */
static char *resolve_binary(const char *binary, char **env) {
  if (strchr(binary, '/')) return strdup(binary);
  const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (char **e = env; e && *e; e++)
    if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
  size_t name_len = strlen(binary);
  while (*path) {
    const char *colon = strchr(path, ':');
    size_t dir_len = colon ? (size_t)(colon - path) : strlen(path);
    if (dir_len > 0) {
      char *candidate = xrealloc(NULL, dir_len + name_len + 2);
      memcpy(candidate, path, dir_len);
      candidate[dir_len] = '/';
      memcpy(candidate + dir_len + 1, binary, name_len + 1);
      struct stat st;
      if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode) && access(candidate, X_OK) == 0) return candidate;
      free(candidate);
    }
    if (!colon) break;
    path = colon + 1;
  }
  return NULL;
}

static void start_run(uint32_t id, struct reader *r) {
  uint32_t timeout_ms = read_u32(r);
  uint32_t limit = read_u32(r);
  uint32_t flags = read_u32(r);
  size_t input_len = 0, argc = 0, envc = 0;
  char *binary = read_string(r, NULL, 0);
  char *cwd = (flags & RUN_CWD) ? read_string(r, NULL, 0) : NULL;
  char *fifo = (flags & RUN_FIFO_AS_FD3) ? read_string(r, NULL, 0) : NULL;
  char *input = (flags & RUN_INPUT) ? read_string(r, &input_len, 1) : NULL;
  char **argv = read_list(r, &argc);
  char **env = read_list(r, &envc);
  char *path = NULL;
  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, fifo_fd = -1;
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  int have_spawn_objects = 0;
  struct job *job = NULL;

  if (r->bad || r->p != r->end || argc == 0 || !binary || !*binary) {
    answer_spawn_error(id, binary && *binary ? binary : "?", "malformed request", 0);
    goto out;
  }
  path = resolve_binary(binary, env);
  if (!path) {
    answer_spawn_error(id, binary, "", ENOENT);
    goto out;
  }
  /* The FIFO opened read-write here, as runcd would have: the child's write end can never fail with EPIPE. */
  if (fifo && (fifo_fd = high_fd(open(fifo, O_RDWR | O_CLOEXEC))) < 0) {
    answer_spawn_error(id, binary, "", errno);
    goto out;
  }
  if (((flags & RUN_INPUT) && pipe2(in_pipe, O_CLOEXEC) < 0) ||
      (!(flags & RUN_IGNORE_STDOUT) && pipe2(out_pipe, O_CLOEXEC) < 0) || pipe2(err_pipe, O_CLOEXEC) < 0) {
    answer_spawn_error(id, binary, "", errno);
    goto out;
  }

  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  have_spawn_objects = 1;
  posix_spawn_file_actions_adddup2(&actions, (flags & RUN_INPUT) ? in_pipe[0] : devnull, 0);
  posix_spawn_file_actions_adddup2(&actions, (flags & RUN_IGNORE_STDOUT) ? devnull : out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  if (fifo_fd >= 0) posix_spawn_file_actions_adddup2(&actions, fifo_fd, 3);
  if (cwd && *cwd) posix_spawn_file_actions_addchdir_np(&actions, cwd);
  /* Its own process group, so a deadline (or runcd) can kill whatever it forks too; the signal mask and
   * dispositions the helper runs with (SIGCHLD blocked for the signalfd, SIGPIPE ignored) are not the child's. */
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);

  pid_t pid;
  int error = posix_spawn(&pid, path, &actions, &attr, argv, env);
  if (error) {
    answer_spawn_error(id, binary, "", error);
    goto out;
  }

  job = xrealloc(NULL, sizeof *job);
  memset(job, 0, sizeof *job);
  job->id = id;
  job->kind = JOB_RUN;
  job->pid = pid;
  job->in_fd = in_pipe[1];
  job->out_fd = out_pipe[0];
  job->err_fd = err_pipe[0];
  in_pipe[1] = out_pipe[0] = err_pipe[0] = -1;
  if (job->in_fd >= 0) set_nonblocking(job->in_fd);
  if (job->out_fd >= 0) set_nonblocking(job->out_fd);
  set_nonblocking(job->err_fd);
  job->input = input;
  job->input_len = input_len;
  input = NULL;
  if (job->in_fd >= 0 && job->input_len == 0) close_fd(&job->in_fd);
  job->limit = limit;
  job->end_at_exit = (flags & RUN_END_AT_EXIT) != 0;
  job->deadline_ms = timeout_ms ? now_ms() + timeout_ms : 0;
  job->next = jobs;
  jobs = job;
  struct buffer body = {0};
  append_u32(&body, (uint32_t)pid);
  answer(id, ANS_SPAWNED, &body);
  free(body.data);

out:
  if (have_spawn_objects) {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  /* The child has its own copies now. */
  close_fd(&in_pipe[0]);
  close_fd(&in_pipe[1]);
  close_fd(&out_pipe[0]);
  close_fd(&out_pipe[1]);
  close_fd(&err_pipe[0]);
  close_fd(&err_pipe[1]);
  close_fd(&fifo_fd);
  free(binary);
  free(cwd);
  free(fifo);
  free(input);
  free(path);
  free_list(argv);
  free_list(env);
}

/*
 * Removes `name` under `dir` without following a symlink anywhere: each directory is opened relative to its
 * parent's descriptor with O_NOFOLLOW, so a component swapped for a symlink mid-walk (a container can write
 * into what is removed) leads nowhere outside the tree. Errors leave the entry for runcd's next sweep.
 */
static void remove_at(int dir, const char *name, int depth) {
  if (unlinkat(dir, name, 0) == 0 || errno == ENOENT) return;
  if (errno != EISDIR || depth > MAX_REMOVE_DEPTH) return;
  int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  DIR *listing = fdopendir(fd);
  if (!listing) {
    close(fd);
    return;
  }
  struct dirent *entry;
  while ((entry = readdir(listing)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
    remove_at(fd, entry->d_name, depth + 1);
  }
  closedir(listing);
  unlinkat(dir, name, AT_REMOVEDIR);
}

/* In a forked child, so a large tree never holds up the answers to other requests. */
static void start_remove(uint32_t id, struct reader *r) {
  char *path = read_string(r, NULL, 0);
  if (r->bad || r->p != r->end || !path || !*path) {
    free(path);
    answer(id, ANS_DONE, NULL);
    return;
  }
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      limit.rlim_cur = limit.rlim_max;
      setrlimit(RLIMIT_NOFILE, &limit);
    }
    remove_at(AT_FDCWD, path, 0);
    _exit(0);
  }
  if (pid < 0) {
    remove_at(AT_FDCWD, path, 0);
    free(path);
    answer(id, ANS_DONE, NULL);
    return;
  }
  free(path);
  struct job *job = xrealloc(NULL, sizeof *job);
  memset(job, 0, sizeof *job);
  job->id = id;
  job->kind = JOB_REMOVE;
  job->pid = pid;
  job->in_fd = job->out_fd = job->err_fd = -1;
  job->next = jobs;
  jobs = job;
}

static void handle_request(uint32_t id, uint32_t type, const char *body, size_t len) {
  struct reader r = {body, body + len, 0};
  if (type == REQ_RUN) {
    start_run(id, &r);
  } else if (type == REQ_REMOVE) {
    start_remove(id, &r);
  } else if (type == REQ_KILL) {
    struct job *job = find_job(id);
    if (job && job->kind == JOB_RUN) kill_group(job);
  } else {
    answer_spawn_error(id, "?", "unknown request type", 0);
  }
}

static void parse_requests(void) {
  size_t off = 0;
  for (;;) {
    size_t avail = requests.len - off;
    if (skip_bytes) {
      size_t n = avail < skip_bytes ? avail : skip_bytes;
      off += n;
      skip_bytes -= n;
      if (skip_bytes) break;
      continue;
    }
    if (avail < HEADER_BYTES) break;
    uint32_t header[3];
    memcpy(header, requests.data + off, HEADER_BYTES);
    for (int i = 0; i < 3; i++) header[i] = le32toh(header[i]);
    if (header[0] > MAX_BODY_BYTES) {
      if (header[2] == REQ_RUN || header[2] == REQ_REMOVE)
        answer_spawn_error(header[1], "?", "request too large", 0);
      off += HEADER_BYTES;
      skip_bytes = header[0];
      continue;
    }
    if (avail < HEADER_BYTES + header[0]) {
      buffer_reserve(&requests, HEADER_BYTES + header[0] - avail);
      break;
    }
    handle_request(header[1], header[2], requests.data + off + HEADER_BYTES, header[0]);
    off += HEADER_BYTES + header[0];
  }
  if (off == 0) return;
  memmove(requests.data, requests.data + off, requests.len - off);
  requests.len -= off;
}

static void keep_output(struct job *job, struct buffer *b, const char *data, size_t n) {
  size_t room = job->limit > b->len ? job->limit - b->len : 0;
  if (n > room) {
    job->truncated = 1;
    n = room;
  }
  if (n) buffer_append(b, data, n);
}

/* Reads what the pipe has now; closes it at EOF or error. */
static void drain(struct job *job, int *fd, struct buffer *b) {
  char chunk[65536];
  while (*fd >= 0) {
    ssize_t n = read(*fd, chunk, sizeof chunk);
    if (n > 0) {
      keep_output(job, b, chunk, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    close_fd(fd);
  }
}

static void feed_input(struct job *job) {
  while (job->in_fd >= 0 && job->input_off < job->input_len) {
    ssize_t n = write(job->in_fd, job->input + job->input_off, job->input_len - job->input_off);
    if (n > 0) {
      job->input_off += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return;
    } else {
      /* A child that exits without reading its input closes the pipe: EPIPE is its answer, not the helper's. */
      break;
    }
  }
  close_fd(&job->in_fd);
}

static void finish_if_done(struct job *job) {
  if (!job->exited) return;
  if (job->kind == JOB_RUN && !job->end_at_exit && (job->out_fd >= 0 || job->err_fd >= 0)) return;
  struct buffer body = {0};
  if (job->kind == JOB_RUN) {
    int32_t code = WIFEXITED(job->status) ? WEXITSTATUS(job->status) : -1;
    int32_t sig = WIFSIGNALED(job->status) ? WTERMSIG(job->status) : 0;
    append_u32(&body, (uint32_t)code);
    append_u32(&body, (uint32_t)sig);
    append_u32(&body, (job->truncated ? DONE_TRUNCATED : 0) | (job->timed_out ? DONE_TIMED_OUT : 0));
    append_u32(&body, (uint32_t)job->out.len);
    if (job->out.len) buffer_append(&body, job->out.data, job->out.len);
    append_u32(&body, (uint32_t)job->err.len);
    if (job->err.len) buffer_append(&body, job->err.data, job->err.len);
  }
  answer(job->id, ANS_DONE, &body);
  free(body.data);
  free_job(job);
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (struct job *job = jobs; job; job = job->next) {
      if (job->pid != pid || job->exited) continue;
      job->exited = 1;
      job->status = status;
      /* A process that daemonizes (conmon) leaves its pipes to a child that outlives it: its own exit is the
       * answer, with whatever it wrote before exiting. */
      if (job->kind == JOB_RUN && job->end_at_exit) {
        drain(job, &job->out_fd, &job->out);
        drain(job, &job->err_fd, &job->err);
        close_fd(&job->out_fd);
        close_fd(&job->err_fd);
      }
      finish_if_done(job);
      break;
    }
  }
}

static void flush_answers(void) {
  while (answers_off < answers.len) {
    ssize_t n = write(1, answers.data + answers_off, answers.len - answers_off);
    if (n > 0) {
      answers_off += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      break;
    } else {
      /* runcd is gone: nobody is left to tell. */
      exit(0);
    }
  }
  if (answers_off == answers.len) {
    answers.len = answers_off = 0;
  } else if (answers_off > answers.len / 2) {
    memmove(answers.data, answers.data + answers_off, answers.len - answers_off);
    answers.len -= answers_off;
    answers_off = 0;
  }
}

static void read_requests(void) {
  for (;;) {
    buffer_reserve(&requests, 65536);
    ssize_t n = read(0, requests.data + requests.len, requests.cap - requests.len);
    if (n > 0) {
      requests.len += (size_t)n;
      parse_requests();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    /* runcd's end closed (it exited, was killed, or closed the helper): the children run on. */
    exit(0);
  }
}

static void expire_deadlines(int64_t now) {
  for (struct job *job = jobs; job; job = job->next) {
    if (job->deadline_ms && job->deadline_ms <= now) {
      job->deadline_ms = 0;
      job->timed_out = 1;
      kill_group(job);
    }
  }
}

int main(void) {
  /* A descriptor runcd did not give is /dev/null, so no pipe or FIFO of a child lands on 0-2 by accident. */
  for (int fd = 0; fd <= 2; fd++)
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) die("open /dev/null");
  devnull = high_fd(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (devnull < 0) die("open /dev/null");
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0) die("sigprocmask");
  int sigfd = high_fd(signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC));
  if (sigfd < 0) die("signalfd");
  signal(SIGPIPE, SIG_IGN);
  set_nonblocking(0);
  set_nonblocking(1);
  answer_text(0, ANS_HELLO, HELLO);

  struct pollfd *fds = NULL;
  struct job **owners = NULL;
  size_t fds_cap = 0;
  for (;;) {
    size_t count = 0;
    for (struct job *job = jobs; job; job = job->next) count += 3;
    if (count + 3 > fds_cap) {
      fds_cap = (count + 3) * 2;
      fds = xrealloc(fds, fds_cap * sizeof *fds);
      owners = xrealloc(owners, fds_cap * sizeof *owners);
    }
    size_t n = 0;
    fds[n] = (struct pollfd){.fd = 0, .events = POLLIN};
    owners[n++] = NULL;
    fds[n] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    owners[n++] = NULL;
    if (answers.len > answers_off) {
      fds[n] = (struct pollfd){.fd = 1, .events = POLLOUT};
      owners[n++] = NULL;
    }
    size_t first_job_fd = n;
    int64_t now = now_ms(), wait_ms = -1;
    for (struct job *job = jobs; job; job = job->next) {
      if (job->in_fd >= 0) {
        fds[n] = (struct pollfd){.fd = job->in_fd, .events = POLLOUT};
        owners[n++] = job;
      }
      if (job->out_fd >= 0) {
        fds[n] = (struct pollfd){.fd = job->out_fd, .events = POLLIN};
        owners[n++] = job;
      }
      if (job->err_fd >= 0) {
        fds[n] = (struct pollfd){.fd = job->err_fd, .events = POLLIN};
        owners[n++] = job;
      }
      if (job->deadline_ms) {
        int64_t left = job->deadline_ms > now ? job->deadline_ms - now : 0;
        if (wait_ms < 0 || left < wait_ms) wait_ms = left;
      }
    }
    if (poll(fds, n, (int)(wait_ms > 86400000 ? 86400000 : wait_ms)) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    expire_deadlines(now_ms());
    /* Pipes first, then exits: a child's last output is read before its end is answered. */
    for (size_t i = first_job_fd; i < n; i++) {
      struct job *job = owners[i];
      if (!job || !fds[i].revents) continue;
      if (fds[i].fd == job->in_fd) feed_input(job);
      else if (fds[i].fd == job->out_fd) drain(job, &job->out_fd, &job->out);
      else if (fds[i].fd == job->err_fd) drain(job, &job->err_fd, &job->err);
    }
    /* A job is only freed in finish_if_done below, so every owner above was still alive when it was used. */
    for (struct job *job = jobs, *next; job; job = next) {
      next = job->next;
      finish_if_done(job);
    }
    if (fds[1].revents) {
      struct signalfd_siginfo info;
      while (read(sigfd, &info, sizeof info) == sizeof info) {
      }
      reap();
    }
    if (fds[0].revents) read_requests();
    flush_answers();
  }
}

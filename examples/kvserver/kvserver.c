/*
 * kvserver — a threaded key-value server on loopback whose index and values live in the heap
 * under test, and a closed-loop load generator that measures it from outside.
 *
 *   nheap-kvserver serve [mode (concurrent)] [keys (20000)]
 *       The server. Fills every key with a value of 64..2048 bytes (a steady live set of about
 *       keys x 1 KiB), listens on 127.0.0.1 (a free port), prints "PORT n", and serves one
 *       thread per connection until a client sends QUIT; then prints its RESULT line
 *       (bench/gc_peer.h: cycles and pauses while it served) and exits. Built against nheap
 *       (mode concurrent|stw|off; with off, a replaced value is freed) and against bdwgc
 *       (nheap-kvserver-bdwgc). bench/go/kvserver is the same server in Go.
 *   nheap-kvserver load [seconds (5)] [connections (4)] [keys (20000)] -- server command...
 *       The load generator: starts the server command, reads its port, opens the connections,
 *       each in its own thread sending one request at a time (half GET, half SET of a fresh
 *       64..2048-byte value, keys uniform) for a second of warm-up and then the given seconds,
 *       timing every request. Then QUIT, and one RESULT line: the server's own fields followed
 *       by requests_per_s and latency percentiles (lat_p50_us ... lat_max_us). With
 *       NH_BENCH_LATENCY=path it writes "percentile microseconds" lines for the plot.
 *
 * Index: a fixed table of buckets (a power of two >= keys), each a chain of entries {next,
 * key, value}; a lock per 1024 buckets. Every pointer store into the index goes through STORE
 * (nh_store under nheap). A GET copies the value out under the lock, so a value freed by a
 * later SET (gc = off) is never read after its free.
 *
 * Protocol (binary, little-endian): request = op (1 byte: 'G', 'S', 'Q'), key (u32), and for
 * 'S' a length (u32) and the bytes; reply to 'G' = length (u32, 0xffffffff: missing) and the
 * bytes; to 'S' = u32 0.
 */
#define _GNU_SOURCE   /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/gc_peer.h"

enum { MIN_VALUE = 64, MAX_VALUE = 2048, STRIPE = 1024 };

/* ---------------------------------------------------------------------------------------------
 * I/O helpers.
 * ------------------------------------------------------------------------------------------- */

/* All n bytes through read or write, retrying after signals; -1 on error or end of stream. */
static int io_full(int fd, char *p, size_t n, bool out) {
  while (n) {
    ssize_t r = out ? write(fd, p, n) : read(fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    p += r, n -= (size_t)r;
  }
  return 0;
}

static int read_full(int fd, void *buf, size_t n) { return io_full(fd, buf, n, false); }
static int write_full(int fd, const void *buf, size_t n) { return io_full(fd, (char *)buf, n, true); }

static uint64_t next_random(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return *s >> 33;
}

/* ---------------------------------------------------------------------------------------------
 * The server.
 * ------------------------------------------------------------------------------------------- */

typedef struct value {
  uint32_t len;
  char bytes[];
} value;

typedef struct entry {
  struct entry *next;
  value *val;
  uint32_t key;
} entry;

static entry **table;   /* in the heap under test: a root through this global */
static uint32_t nbuckets;
static pthread_mutex_t *stripes;
static atomic_int quitting;
static int listener;

static value *value_new(uint32_t len) {
  value *v = ALLOC_NOSCAN(sizeof *v + len);
  if (!v) {
    fprintf(stderr, "kvserver: out of memory\n");
    exit(1);
  }
  v->len = len;
  return v;
}

static void put(uint32_t key, value *v) {
  uint32_t b = key & (nbuckets - 1);
  pthread_mutex_lock(&stripes[b / STRIPE]);
  entry *e = table[b];
  while (e && e->key != key)
    e = e->next;
  if (e) {
    value *old = e->val;
    STORE(&e->val, v);
    FREE(old);
  } else {
    e = ALLOC(sizeof *e);
    if (!e) {
      fprintf(stderr, "kvserver: out of memory\n");
      exit(1);
    }
    e->key = key;
    STORE(&e->val, v);
    STORE(&e->next, table[b]);
    STORE(&table[b], e);
  }
  pthread_mutex_unlock(&stripes[b / STRIPE]);
}

/* Copies the value of key into buf (MAX_VALUE bytes); returns its length or UINT32_MAX. */
static uint32_t get(uint32_t key, char *buf) {
  uint32_t b = key & (nbuckets - 1), len = UINT32_MAX;
  pthread_mutex_lock(&stripes[b / STRIPE]);
  for (entry *e = table[b]; e; e = e->next)
    if (e->key == key) {
      len = e->val->len;
      memcpy(buf, e->val->bytes, len);
      break;
    }
  pthread_mutex_unlock(&stripes[b / STRIPE]);
  return len;
}

static void *serve_connection(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[MAX_VALUE + 4];
  for (;;) {
    unsigned char op;
    uint32_t key, len;
    if (read_full(fd, &op, 1) || read_full(fd, &key, 4))
      break;
    if (op == 'G') {
      len = get(key, buf + 4);
      memcpy(buf, &len, 4);
      if (write_full(fd, buf, 4 + (len == UINT32_MAX ? 0 : len)))
        break;
    } else if (op == 'S') {
      if (read_full(fd, &len, 4) || len > MAX_VALUE)
        break;
      value *v = value_new(len);
      if (read_full(fd, v->bytes, len))
        break;
      put(key, v);
      uint32_t ok = 0;
      if (write_full(fd, &ok, 4))
        break;
    } else {   /* 'Q' or garbage: stop serving */
      atomic_store(&quitting, 1);
      shutdown(listener, SHUT_RDWR);
      break;
    }
  }
  close(fd);
  return NULL;
}

static int serve(const char *mode, uint32_t keys) {
  const char *system = peer_start(mode);
  for (nbuckets = 1024; nbuckets < keys; nbuckets *= 2)
    ;
  table = ALLOC(nbuckets * sizeof *table);
  stripes = malloc(nbuckets / STRIPE * sizeof *stripes);
  if (!table || !stripes)
    return 1;
  for (uint32_t i = 0; i < nbuckets / STRIPE; i++)
    pthread_mutex_init(&stripes[i], NULL);
  uint64_t rng = 42;
  for (uint32_t k = 0; k < keys; k++) {
    uint32_t len = MIN_VALUE + (uint32_t)(next_random(&rng) % (MAX_VALUE - MIN_VALUE + 1));
    value *v = value_new(len);
    memset(v->bytes, (int)k, len);
    put(k, v);
  }

  listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 64) ||
      getsockname(listener, (struct sockaddr *)&a, &alen)) {
    perror("kvserver: listen");
    return 1;
  }
  report_begin();
  printf("PORT %d\n", ntohs(a.sin_port));
  fflush(stdout);
  pthread_t threads[256];
  int n = 0;
  while (!atomic_load(&quitting)) {
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR)
        continue;
      break;   /* shut down by QUIT */
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (n == 256 || peer_thread_start(&threads[n], serve_connection, (void *)(intptr_t)fd) != 0) {
      close(fd);
      continue;
    }
    n++;
  }
  for (int i = 0; i < n; i++)
    peer_thread_join(threads[i]);
  report_end(system, 0, "keys=%u", keys);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The load generator.
 * ------------------------------------------------------------------------------------------- */

typedef struct client {
  pthread_t thread;
  int fd;
  uint32_t keys;
  uint64_t seed;
  float *lat_us;   /* measured requests */
  size_t n, cap;
} client;

static atomic_int phase;   /* 0 warm-up, 1 measured, 2 stop */

static void *run_client(void *arg) {
  client *c = arg;
  char buf[MAX_VALUE + 16];
  while (atomic_load_explicit(&phase, memory_order_relaxed) < 2) {
    uint32_t key = (uint32_t)(next_random(&c->seed) % c->keys), len;
    bool set = next_random(&c->seed) & 1;
    size_t out = 5;
    buf[0] = set ? 'S' : 'G';
    memcpy(buf + 1, &key, 4);
    if (set) {
      len = MIN_VALUE + (uint32_t)(next_random(&c->seed) % (MAX_VALUE - MIN_VALUE + 1));
      memcpy(buf + 5, &len, 4);
      memset(buf + 9, (int)key, len);
      out = 9 + len;
    }
    double t0 = peer_now();
    if (write_full(c->fd, buf, out) || read_full(c->fd, &len, 4) ||
        (!set && len != UINT32_MAX && (len > MAX_VALUE || read_full(c->fd, buf, len)))) {
      fprintf(stderr, "kvserver: the server went away\n");
      exit(1);
    }
    double us = (peer_now() - t0) * 1e6;
    if (atomic_load_explicit(&phase, memory_order_relaxed) == 1) {
      if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1 << 16;
        if (!(c->lat_us = realloc(c->lat_us, c->cap * sizeof *c->lat_us)))
          exit(1);
      }
      c->lat_us[c->n++] = (float)us;
    }
  }
  return NULL;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int one = 1;
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("kvserver: connect");
    exit(1);
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void sleep_s(double s) {
  struct timespec d = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&d, &d) != 0 && errno == EINTR)
    ;
}

static int load(double seconds, int nconn, uint32_t keys, char **server) {
  int out[2];
  if (pipe(out) != 0)
    return 1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    execvp(server[0], server);
    fprintf(stderr, "kvserver: cannot run %s: %s\n", server[0], strerror(errno));
    _exit(127);
  }
  close(out[1]);
  FILE *from = fdopen(out[0], "r");
  char line[4096], result[4096] = "";
  int port = 0;
  while (!port && fgets(line, sizeof line, from))
    sscanf(line, "PORT %d", &port);
  if (!port) {
    fprintf(stderr, "kvserver: the server did not say its port\n");
    return 1;
  }
  client c[64];
  for (int i = 0; i < nconn; i++) {
    c[i] = (client){.fd = connect_to(port), .keys = keys, .seed = (uint64_t)i * 7919 + 1};
    pthread_create(&c[i].thread, NULL, run_client, &c[i]);
  }
  sleep_s(1);   /* warm-up */
  atomic_store(&phase, 1);
  double t0 = peer_now();
  sleep_s(seconds);
  atomic_store(&phase, 2);
  double elapsed = peer_now() - t0;
  for (int i = 0; i < nconn; i++) {
    pthread_join(c[i].thread, NULL);
    close(c[i].fd);
  }
  int q = connect_to(port);
  char quit[5] = {'Q', 0, 0, 0, 0};
  write_full(q, quit, sizeof quit);
  while (fgets(line, sizeof line, from))
    if (strncmp(line, "RESULT ", 7) == 0)
      snprintf(result, sizeof result, "%s", line);
  close(q);
  int status;
  waitpid(pid, &status, 0);
  if (!result[0] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "kvserver: the server failed\n");
    return 1;
  }
  result[strcspn(result, "\n")] = 0;

  size_t total = 0;
  for (int i = 0; i < nconn; i++)
    total += c[i].n;
  float *all = malloc((total ? total : 1) * sizeof *all);
  if (!all)
    return 1;
  for (int i = 0, k = 0; i < nconn; i++) {
    memcpy(all + k, c[i].lat_us, c[i].n * sizeof *all);
    k += (int)c[i].n;
  }
  qsort(all, total, sizeof *all, cmp_float);
  static const double pct[] = {50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100};
  double at[sizeof pct / sizeof pct[0]];
  for (size_t i = 0; i < sizeof pct / sizeof pct[0]; i++) {
    size_t k = total ? (size_t)((double)total * pct[i] / 100 + 0.5) : 0;
    at[i] = total ? all[k ? (k > total ? total : k) - 1 : 0] : 0;
  }
  const char *path = getenv("NH_BENCH_LATENCY");
  FILE *f = path && *path ? fopen(path, "w") : NULL;
  for (size_t i = 0; f && i < sizeof pct / sizeof pct[0]; i++)
    fprintf(f, "%g %.1f\n", pct[i], at[i]);
  if (f)
    fclose(f);
  printf("%s connections=%d requests_per_s=%.0f lat_p50_us=%.1f lat_p90_us=%.1f lat_p99_us=%.1f "
         "lat_p999_us=%.1f lat_max_us=%.1f\n",
         result, nconn, (double)total / elapsed, at[0], at[2], at[4], at[6], at[9]);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc > 1 && strcmp(argv[1], "serve") == 0) {
    long keys = argc > 3 ? atol(argv[3]) : 20000;
    if (keys < 1 || keys > (1L << 26))
      goto usage;
    return serve(argc > 2 ? argv[2] : "concurrent", (uint32_t)keys);
  }
  if (argc > 1 && strcmp(argv[1], "load") == 0) {
    int dash = 2;
    while (dash < argc && strcmp(argv[dash], "--") != 0)
      dash++;
    double seconds = dash > 2 ? atof(argv[2]) : 5;
    int conns = dash > 3 ? atoi(argv[3]) : 4;
    long keys = dash > 4 ? atol(argv[4]) : 20000;
    if (dash + 1 >= argc || seconds <= 0 || conns < 1 || conns > 64 || keys < 1)
      goto usage;
    return load(seconds, conns, (uint32_t)keys, argv + dash + 1);
  }
usage:
  fprintf(stderr,
          "usage: %s serve [concurrent|stw|off] [keys]\n"
          "       %s load [seconds] [connections 1..64] [keys] -- server command...\n",
          argv[0], argv[0]);
  return 2;
}

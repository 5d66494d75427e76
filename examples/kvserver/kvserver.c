/*
 * kvserver — a threaded key-value server on loopback whose index and values live in the heap
 * under test, and an open-loop load generator that measures it from outside.
 *
 *   nheap-kvserver serve [mode (concurrent)] [keys (20000)]
 *       The server. Fills every key with a value of 64..2048 bytes (a steady live set of about
 *       keys x 1 KiB), listens on 127.0.0.1 (a free port), prints "PORT n", and serves one
 *       thread per connection until a client sends QUIT; then checks its index and prints its
 *       RESULT line (bench/gc_peer.h: cycles and pauses from BEGIN to QUIT) and exits. Built
 *       against nheap (mode concurrent|stw|off; with off, a replaced value is freed) and against
 *       bdwgc (nheap-kvserver-bdwgc). bench/go/kvserver is the same server in Go.
 *   nheap-kvserver load [seconds (5)] [connections (4)] [keys (20000)] [--rate R] [--stall-ms M]
 *                       -- server command...
 *       The load generator: starts the server command, reads its port, opens a control
 *       connection and the given connections, each in its own thread with one request in
 *       flight (half GET, half SET of a fresh 64..2048-byte value, keys uniform) for a second
 *       of warm-up and then the given seconds. When the warm-up ends it sends BEGIN on the
 *       control connection, at the end QUIT, and prints one RESULT line: the server's own
 *       fields followed by connections, rate, requests_per_s (the measured requests answered,
 *       per second of the measured part or until its last reply if later), latency percentiles
 *       (lat_p50_us ... lat_p9999_us, lat_max_us), over_1ms and over_10ms (requests slower
 *       than that), bad_replies and unsent (below). With NH_BENCH_LATENCY=path it writes
 *       "percentile microseconds" lines for the plot. Exits 1 if any reply was wrong.
 *
 * Open loop (--rate R, requests per second over all connections): the load a server sees does
 * not depend on how fast it answers. Connection c of C sends its request i at the intended time
 * start + (i + c/C) * C/R, or at once if it is already late, and a request's latency runs from
 * its intended time to its reply (wrk2's correction for coordinated omission): a pause of p ms
 * delays every request due during it, about R * p of them, not only the C in flight. Still one
 * request in flight per connection, as wrk2. Every request intended before the end is sent; if
 * the server falls more than the measured time behind (a rate above its capacity), the
 * connection gives up and counts each request it never sent (unsent) with the latency it had
 * reached then, a lower bound. Without --rate (or --rate 0) the loop is closed: each
 * connection sends its next request when the last is answered and times it from its sending;
 * that measures capacity (the report's warm-up round), not latency.
 *
 * --stall-ms M (for tests): halfway through the measured part the load generator sends PAUSE M
 * on the control connection; the server holds every lock for M ms, so every request due then
 * waits. From the main thread, which only sleeps meanwhile: the clients' schedules go on.
 *
 * Checked output: the value of key k is always k's low byte repeated (the fill and every SET),
 * 64..2048 bytes. The load generator checks every reply (bad_replies); on QUIT the server walks
 * its index under the locks and counts the keys < keys with a value of a valid length: its
 * RESULT's check, which must equal keys. A value of a wrong length or with a wrong byte found on
 * that walk is reported on stderr and the server exits 1.
 *
 * Index: a fixed table of buckets (a power of two >= keys), each a chain of entries {next,
 * key, value}; a lock per 1024 buckets. Every pointer store into the index goes through STORE
 * (nh_store under nheap). A GET copies the value out under the lock, so a value freed by a
 * later SET (gc = off) is never read after its free.
 *
 * Protocol (binary, little-endian): request = op (1 byte), key (u32), and for 'S' a length (u32)
 * and the bytes. Ops: 'G' get, reply length (u32, 0xffffffff: missing) and the bytes; 'S' set,
 * reply u32 0; 'B' begin the measured part (report_begin; only the first counts), reply u32 0;
 * 'P' pause: hold every lock for key milliseconds, reply u32 0; 'Q' quit (no reply; any other
 * op too).
 *
 * Metrics, on the same port: a connection that opens with "GET /" (op 'G' with the key "ET /",
 * far above any key) is an HTTP/1.0 request. GET /metrics answers the memory manager's
 * statistics in the OpenMetrics text format (nh_stats_write; nheap builds only), GET /stats one
 * line of nh_stats_read's figures (gc_cycles, gc_pauses, heap_mapped_bytes, heap_inuse_bytes),
 * for a test to set against a scrape (tests/kvserver_metrics.py); then the connection closes.
 */
#define _GNU_SOURCE   /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/gc_peer.h"

enum { MIN_VALUE = 64, MAX_VALUE = 2048, STRIPE = 1024 };

/* ---------------------------------------------------------------------------------------------
 * I/O, time and the values' contents.
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

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleeps until t (CLOCK_MONOTONIC, ns); an absolute deadline, so a signal or a late wake-up
 * never shifts the schedule. */
static void sleep_until(int64_t t) {
  struct timespec ts = {(time_t)(t / 1000000000), (long)(t % 1000000000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
    ;
}

/* A value of key is key's low byte, MIN_VALUE..MAX_VALUE times: true if bytes[0..len) is one. */
static bool value_ok(uint32_t key, const char *bytes, uint32_t len) {
  if (len < MIN_VALUE || len > MAX_VALUE)
    return false;
  for (uint32_t i = 0; i < len; i++)
    if ((uint8_t)bytes[i] != (uint8_t)key)
      return false;
  return true;
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
static atomic_int quitting, begun;
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

/* PAUSE: every lock held for ms, as a server that stops answering for that long (a collector's
 * pause, as the clients see it), whatever collector runs. Locks in index order, as nothing else
 * takes two. */
static void stall(uint32_t ms) {
  for (uint32_t i = 0; i < nbuckets / STRIPE; i++)
    pthread_mutex_lock(&stripes[i]);
  struct timespec d = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
  while (nanosleep(&d, &d) != 0 && errno == EINTR)   /* a collector's signal: sleep the rest */
    ;
  for (uint32_t i = 0; i < nbuckets / STRIPE; i++)
    pthread_mutex_unlock(&stripes[i]);
}

/* The index's check, under every lock: the entries of keys < keys holding a value of a valid
 * length (each key once, so this is keys exactly when none was lost). A value of a wrong length
 * or contents is said on stderr and counted in *damaged. */
static unsigned long long walk(uint32_t keys, unsigned long long *damaged) {
  unsigned long long n = 0;
  *damaged = 0;
  for (uint32_t i = 0; i < nbuckets / STRIPE; i++)
    pthread_mutex_lock(&stripes[i]);
  for (uint32_t b = 0; b < nbuckets; b++)
    for (entry *e = table[b]; e; e = e->next) {
      if (!e->val) {
        if (++*damaged <= 10)
          fprintf(stderr, "kvserver: key %u has no value\n", e->key);
        continue;
      }
      uint32_t len = e->val->len;
      if (!value_ok(e->key, e->val->bytes, len)) {
        if (++*damaged <= 10)
          fprintf(stderr, "kvserver: the value of key %u is damaged (length %u)\n", e->key, len);
      }
      if (e->key < keys && len >= MIN_VALUE && len <= MAX_VALUE)
        n++;
    }
  for (uint32_t i = 0; i < nbuckets / STRIPE; i++)
    pthread_mutex_unlock(&stripes[i]);
  return n;
}

/* An HTTP request whose first five bytes ("GET /") were read: the rest of its head (up to a
 * blank line, at most 4 KiB), then the answer; the caller closes the connection. */
static void serve_http(int fd) {
  char req[4096] = "GET /";
  size_t n = 5;
  while (n < sizeof req - 1 && !(n >= 4 && !memcmp(req + n - 4, "\r\n\r\n", 4)) &&
         !(n >= 2 && !memcmp(req + n - 2, "\n\n", 2)))
    if (read_full(fd, req + n++, 1))
      return;
  req[n] = 0;
  size_t path = strcspn(req + 4, " \r\n");
  bool metrics = path == 8 && !memcmp(req + 4, "/metrics", 8), stats = path == 6 && !memcmp(req + 4, "/stats", 6);
  const char *head = metrics ? "HTTP/1.0 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; "
                               "charset=utf-8\r\nConnection: close\r\n\r\n"
                     : stats ? "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                             : NULL;
  static const char not_found[] = "HTTP/1.0 404 Not Found\r\nConnection: close\r\n\r\n";
  if (!head || !peer_has_metrics) {
    write_full(fd, not_found, sizeof not_found - 1);
    return;
  }
  if (write_full(fd, head, strlen(head)) == 0 && peer_metrics(fd, metrics) != 0)
    fprintf(stderr, "kvserver: no metrics to serve\n");
}

/* Connection threads, at most MAX_CONNECTIONS at once: a slot whose thread has finished (done)
 * is joined and reused, so that scrapers, one connection each, never run the server out. */
enum { MAX_CONNECTIONS = 256 };
static pthread_t conn_threads[MAX_CONNECTIONS];
static atomic_int conn_done[MAX_CONNECTIONS];   /* 0: free, 1: serving, 2: finished */
static int conn_fd[MAX_CONNECTIONS];

/* The first byte of the next request, read where the thread waits for it: inside
 * peer_do_blocking (nh_do_blocking, bdwgc's GC_do_blocking), so that the collector's stops
 * neither wake an idle connection's thread nor wait for it to be scheduled. It touches only
 * the caller's stack. */
typedef struct op_read {
  int fd, rc;
  unsigned char op;
} op_read;

static void *read_op(void *arg) {
  op_read *r = arg;
  r->rc = read_full(r->fd, &r->op, 1);
  return NULL;
}

static void *serve_connection(void *arg) {
  int slot = (int)(intptr_t)arg, fd = conn_fd[slot];
  char buf[MAX_VALUE + 4];
  const uint32_t ok = 0;
  for (;;) {
    op_read next = {.fd = fd};
    peer_do_blocking(read_op, &next);
    unsigned char op = next.op;
    uint32_t key, len;
    if (next.rc || read_full(fd, &key, 4))
      break;
    if (op == 'G' && !memcmp(&key, "ET /", 4)) {
      serve_http(fd);
      break;
    }
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
      if (write_full(fd, &ok, 4))
        break;
    } else if (op == 'B' || op == 'P') {
      if (op == 'B' && atomic_exchange(&begun, 1) == 0)
        report_begin();   /* the measured part starts: the warm-up is behind */
      else if (op == 'P')
        stall(key);
      if (write_full(fd, &ok, 4))
        break;
    } else {   /* 'Q' or garbage: stop serving */
      atomic_store(&quitting, 1);
      shutdown(listener, SHUT_RDWR);
      break;
    }
  }
  close(fd);
  atomic_store(&conn_done[slot], 2);
  return NULL;
}

/* A free slot (joining a finished thread's), or -1. */
static int conn_slot(void) {
  for (int i = 0; i < MAX_CONNECTIONS; i++) {
    int st = atomic_load(&conn_done[i]);
    if (st == 2)
      peer_thread_join(conn_threads[i]);
    if (st != 1)
      return i;
  }
  return -1;
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
    memset(v->bytes, (int)k, len);   /* (unsigned char)k: the byte the clients check */
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
  /* report_begin waits for BEGIN: the figures cover the measured part, not the fill or the
   * warm-up. */
  printf("PORT %d\n", ntohs(a.sin_port));
  fflush(stdout);
  while (!atomic_load(&quitting)) {
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR)
        continue;
      break;   /* shut down by QUIT */
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int slot = conn_slot();
    if (slot < 0) {
      close(fd);
      continue;
    }
    conn_fd[slot] = fd;
    atomic_store(&conn_done[slot], 1);
    if (peer_thread_start(&conn_threads[slot], serve_connection, (void *)(intptr_t)slot) != 0) {
      atomic_store(&conn_done[slot], 0);
      close(fd);
    }
  }
  for (int i = 0; i < MAX_CONNECTIONS; i++)
    if (atomic_load(&conn_done[i]))
      peer_thread_join(conn_threads[i]);
  unsigned long long damaged, check = walk(keys, &damaged);
  report_end(system, check, "keys=%u", keys);
  if (damaged) {
    fprintf(stderr, "kvserver: %llu damaged values in the index\n", damaged);
    return 1;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The load generator.
 * ------------------------------------------------------------------------------------------- */

typedef struct client {
  pthread_t thread;
  int fd, index, conns;
  uint32_t keys;
  uint64_t seed;
  double rate;        /* requests per second over all connections; 0: closed loop */
  int64_t start_ns;   /* the schedule's origin: the warm-up starts */
  int64_t begin_ns;   /* the measured part starts: requests intended (sent) from here count */
  int64_t end_ns;     /* and end before here */
  int64_t give_up_ns;
  float *lat_us;      /* measured requests */
  size_t n, cap;
  size_t bad, unsent;
  int64_t last_done_ns;
} client;

static void record(client *c, double us) {
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 1 << 16;
    if (!(c->lat_us = realloc(c->lat_us, c->cap * sizeof *c->lat_us)))
      exit(1);
  }
  c->lat_us[c->n++] = (float)us;
}

static int64_t intended_ns(const client *c, uint64_t i) {
  return c->start_ns + (int64_t)((double)(i * (uint64_t)c->conns + (uint64_t)c->index) * 1e9 / c->rate);
}

static void *run_client(void *arg) {
  client *c = arg;
  char buf[MAX_VALUE + 16];
  /* The default 50 us of timer slack would make every wake-up that late, and count it. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  for (uint64_t i = 0;; i++) {
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

    int64_t intended;   /* the request is ready: its time starts now (closed loop) or at its turn */
    if (c->rate > 0) {
      intended = intended_ns(c, i);
      if (intended >= c->end_ns)
        break;
      int64_t now = now_ns();
      if (now >= c->give_up_ns) {   /* far behind: the rest count with the latency reached */
        for (; intended < c->end_ns; intended = intended_ns(c, ++i))
          if (intended >= c->begin_ns)
            record(c, (double)(now - intended) / 1e3), c->unsent++;
        break;
      }
      if (now < intended)
        sleep_until(intended);
    } else if ((intended = now_ns()) >= c->end_ns) {
      break;
    }
    if (write_full(c->fd, buf, out) || read_full(c->fd, &len, 4) ||
        (!set && len <= MAX_VALUE && read_full(c->fd, buf, len))) {
      fprintf(stderr, "kvserver: the server went away\n");
      exit(1);
    }
    int64_t done = now_ns();
    if (set ? len != 0 : !value_ok(key, buf, len)) {
      if (++c->bad <= 10)
        fprintf(stderr, "kvserver: wrong reply to %s of key %u (length %u)\n", set ? "SET" : "GET", key, len);
      if (!set && len > MAX_VALUE && len != UINT32_MAX)
        break;   /* the bytes that follow cannot be told from the next reply: this connection is done */
    }
    if (intended >= c->begin_ns) {
      record(c, (double)(done - intended) / 1e3);
      c->last_done_ns = done;
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

/* One request on the control connection; 'B' and 'P' are answered with u32 0, 'Q' not at all. */
static void control(int fd, char op, uint32_t arg) {
  char req[5] = {op};
  uint32_t reply;
  memcpy(req + 1, &arg, 4);
  if (write_full(fd, req, sizeof req) || (op != 'Q' && (read_full(fd, &reply, 4) || reply != 0))) {
    fprintf(stderr, "kvserver: the server did not answer '%c'\n", op);
    exit(1);
  }
}

static int load(double seconds, int nconn, uint32_t keys, double rate, uint32_t stall_ms, char **server) {
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
  int ctl = connect_to(port);
  client c[64];
  for (int i = 0; i < nconn; i++)
    c[i] = (client){.fd = connect_to(port), .index = i, .conns = nconn, .keys = keys, .seed = (uint64_t)i * 7919 + 1,
                    .rate = rate};
  /* One schedule for all, from a moment every thread has started by. */
  int64_t start = now_ns() + 10000000, begin = start + 1000000000, end = begin + (int64_t)(seconds * 1e9);
  for (int i = 0; i < nconn; i++) {
    c[i].start_ns = start, c[i].begin_ns = begin, c[i].end_ns = end, c[i].give_up_ns = end + (end - begin);
    pthread_create(&c[i].thread, NULL, run_client, &c[i]);
  }
  sleep_until(begin);   /* warm-up */
  control(ctl, 'B', 0);
  if (stall_ms) {
    sleep_until(begin + (end - begin) / 2);
    control(ctl, 'P', stall_ms);
  }
  for (int i = 0; i < nconn; i++) {
    pthread_join(c[i].thread, NULL);
    close(c[i].fd);
  }
  control(ctl, 'Q', 0);
  while (fgets(line, sizeof line, from))
    if (strncmp(line, "RESULT ", 7) == 0)
      snprintf(result, sizeof result, "%s", line);
  close(ctl);
  int status;
  waitpid(pid, &status, 0);
  if (!result[0] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "kvserver: the server failed%s%s", result[0] ? ": " : "\n", result);
    return 1;
  }
  result[strcspn(result, "\n")] = 0;

  size_t total = 0, bad = 0, unsent = 0, over1 = 0, over10 = 0;
  int64_t last = begin;
  for (int i = 0; i < nconn; i++) {
    total += c[i].n, bad += c[i].bad, unsent += c[i].unsent;
    last = c[i].last_done_ns > last ? c[i].last_done_ns : last;
  }
  float *all = malloc((total ? total : 1) * sizeof *all);
  if (!all)
    return 1;
  for (int i = 0, k = 0; i < nconn; i++) {
    memcpy(all + k, c[i].lat_us, c[i].n * sizeof *all);
    k += (int)c[i].n;
  }
  qsort(all, total, sizeof *all, cmp_float);
  for (size_t i = 0; i < total; i++)
    over1 += all[i] > 1000, over10 += all[i] > 10000;
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
  /* Throughput over the measured part, or until its last reply where the server fell behind. */
  double elapsed = (double)((last - begin) > (end - begin) ? last - begin : end - begin) / 1e9;
  printf("%s connections=%d rate=%.0f requests_per_s=%.0f lat_p50_us=%.1f lat_p90_us=%.1f lat_p99_us=%.1f "
         "lat_p999_us=%.1f lat_p9999_us=%.1f lat_max_us=%.1f over_1ms=%zu over_10ms=%zu bad_replies=%zu "
         "unsent=%zu\n",
         result, nconn, rate, (double)(total - unsent) / elapsed, at[0], at[2], at[4], at[6], at[8], at[9], over1,
         over10, bad, unsent);
  fflush(stdout);
  if (bad) {
    fprintf(stderr, "kvserver: %zu wrong replies\n", bad);
    return 1;
  }
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
    double pos[3] = {5, 4, 20000}, rate = 0;
    long stall_ms = 0;
    int npos = 0, a = 2;
    for (; a < argc && strcmp(argv[a], "--") != 0; a++) {
      if (strcmp(argv[a], "--rate") == 0 && a + 1 < argc)
        rate = atof(argv[++a]);
      else if (strcmp(argv[a], "--stall-ms") == 0 && a + 1 < argc)
        stall_ms = atol(argv[++a]);
      else if (argv[a][0] != '-' && npos < 3)
        pos[npos++] = atof(argv[a]);
      else
        goto usage;
    }
    double seconds = pos[0];
    int conns = (int)pos[1];
    long keys = (long)pos[2];
    if (a + 1 >= argc || seconds <= 0 || conns < 1 || conns > 64 || keys < 1 || keys > (1L << 26) || rate < 0 ||
        stall_ms < 0 || stall_ms > 60000)
      goto usage;
    return load(seconds, conns, (uint32_t)keys, rate, (uint32_t)stall_ms, argv + a + 1);
  }
usage:
  fprintf(stderr,
          "usage: %s serve [concurrent|stw|off] [keys]\n"
          "       %s load [seconds] [connections 1..64] [keys] [--rate R] [--stall-ms M] -- server command...\n",
          argv[0], argv[0]);
  return 2;
}

/*
 * fuzz_config.c — libFuzzer target over nheap's configuration parsing: the input is an INI
 * file, then (after a NUL byte) NHEAP_* environment entries, one per line (written without
 * the prefix: "GC=stw" becomes NHEAP_GC=stw). options_load must accept or reject every input
 * with a clear error, never crash, read out of bounds or leak (ASan); a size string is also
 * fed to options_parse_size. Built by `make fuzz`; replay.c runs tests/fuzz/config/ in `make test`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/options.h"
#include "nheap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(int code, const char *msg, void *arg) {
  (void)code, (void)msg, (void)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nh_set_error_handler(quiet, NULL);
  const uint8_t *nul = memchr(data, 0, size);
  size_t ini = nul ? (size_t)(nul - data) : size;
  int fd = memfd_create("nheap-fuzz.ini", MFD_CLOEXEC);
  if (fd < 0 || write(fd, data, ini) != (ssize_t)ini)
    abort();
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  /* The environment: lines after the NUL, each made NHEAP_<line>. */
  enum { MAX_ENV = 32 };
  char *env[MAX_ENV + 1], *text = NULL;
  size_t nenv = 0;
  if (nul) {
    size_t n = size - ini - 1;
    text = malloc(n + 1);
    memcpy(text, nul + 1, n);
    text[n] = 0;
    for (char *save, *line = strtok_r(text, "\n", &save); line && nenv < MAX_ENV; line = strtok_r(NULL, "\n", &save)) {
      size_t len = strlen(line) + 7;
      env[nenv] = malloc(len);
      snprintf(env[nenv++], len, "NHEAP_%s", line);
    }
  }
  env[nenv] = NULL;
  nh_options o;
  nh_options_init(&o);
  o.config_path = path;
  nh_config_t cfg;
  (void)options_load(&cfg, &o, env);
  (void)options_load(&cfg, NULL, env);   /* the environment alone, NHEAP_CONFIG included */
  char why[128];
  int64_t bytes;
  char *sz = strndup((const char *)data, ini < 64 ? ini : 64);
  (void)options_parse_size(sz, &bytes, why, sizeof why);
  free(sz);
  for (size_t i = 0; i < nenv; i++)
    free(env[i]);
  free(text);
  close(fd);
  nh_set_error_handler(NULL, NULL);
  return 0;
}

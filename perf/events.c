/*
 * events.c — event names through libpfm4.
 *
 * Names are whatever libpfm4 knows for the host's PMUs (perf::PAGE-FAULTS, task-clock,
 * cycles, raw PMU events), encoded with pfm_get_os_event_encoding(PFM_OS_PERF_EVENT_EXT).
 * An unknown name is a user error naming the event and up to five close known names (edit
 * distance on the event name, or containment), drawn from every PMU libpfm4 reports present.
 * pfm_initialize runs once per process.
 *
 * This file includes <perfmon/pfmlib_perf_event.h> and so must never include
 * <linux/perf_event.h>: libpfm4 ships its own copy and the two conflict.
 */
#include <errno.h>
#include <pthread.h>
#include <perfmon/pfmlib_perf_event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "core/internal.h"
#include "core/text.h"
#include "perf/events.h"

static pthread_once_t pfm_once = PTHREAD_ONCE_INIT;
static int pfm_status;

static void pfm_init_once(void) { pfm_status = pfm_initialize(); }

/* Appends up to five known "pmu::event" names close to want (its part after "::"). */
static void close_matches(const char *want, char *out, size_t n) {
  const char *sep = strstr(want, "::");
  const char *base = sep ? sep + 2 : want;
  size_t off = 0, found = 0;
  out[0] = 0;
  pfm_pmu_t pmu;
  pfm_for_all_pmus(pmu) {
    pfm_pmu_info_t pinfo = {.size = sizeof pinfo};
    if (pfm_get_pmu_info(pmu, &pinfo) != PFM_SUCCESS || !pinfo.is_present)
      continue;
    for (int i = pinfo.first_event; i != -1 && found < 5; i = pfm_get_event_next(i)) {
      pfm_event_info_t e = {.size = sizeof e};
      if (pfm_get_event_info(i, PFM_OS_PERF_EVENT_EXT, &e) != PFM_SUCCESS)
        continue;
      size_t d = text_edit_distance(base, e.name);
      if (d > 3 && !strcasestr(e.name, base))
        continue;
      off += (size_t)snprintf(out + off, off < n ? n - off : 0, "%s%s::%s", found ? ", " : "", pinfo.name, e.name);
      found++;
    }
  }
}

int perf_events_check(const char *list, const char *where) {
  if (!list[0])
    return 0;
  pthread_once(&pfm_once, pfm_init_once);
  if (pfm_status != PFM_SUCCESS) {
    nh_error(-EINVAL, "%s: perf.events: libpfm4 failed to initialise (%s)", where, pfm_strerror(pfm_status));
    return -EINVAL;
  }
  char buf[512];
  snprintf(buf, sizeof buf, "%s", list);
  char *save = NULL;
  for (char *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    pfm_perf_encode_arg_t arg;
    memset(&arg, 0, sizeof arg);
    arg.attr = &attr;
    arg.size = sizeof arg;
    int rc = pfm_get_os_event_encoding(name, PFM_PLM3, PFM_OS_PERF_EVENT_EXT, &arg);
    if (rc == PFM_SUCCESS)
      continue;
    char near[400];
    close_matches(name, near, sizeof near);
    nh_error(-EINVAL, "%s: perf.events: unknown event '%s' (%s)%s%s", where, name, pfm_strerror(rc),
             near[0] ? "; close matches: " : "; `perf list` or libpfm4's showevtinfo list the names",
             near);
    return -EINVAL;
  }
  return 0;
}

#!/usr/bin/env bash
# Installs the Debian packages nheap needs to build, test and benchmark, when they are absent.
# Idempotent and quiet when everything is there; runs apt-get with no prompt as root; when not
# root it names what is missing and the command to run, and fails.
set -euo pipefail

packages=(
  build-essential cmake pkg-config   # compilers (g++ for the benchmark shim) and the build
  liburing-dev                        # io_uring: batched madvise for the scavenger
  libnuma-dev numactl                 # NUMA topology, mbind, move_pages
  libpfm4-dev                         # perf event names -> perf_event_attr
  libinih-dev                         # configs/*.ini
  libcmocka-dev                       # unit tests
  libbenchmark-dev                    # micro-benchmarks
  libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev  # the peers in bench/
  libgc-dev                           # bdwgc: the collector peer in bench/
  w3m mmv                             # Debian programs linked to libgc.so.1, run on nheap (tests/gcabi)
  golang-go                           # Go 1.19: the collector peer in bench/go
  gnuplot-nox                         # the report's plots (make run)
  qemu-system-x86 busybox-static cpio # the multi-node NUMA guest (tests/numa-vm)
  python3 sqlite3                     # programs the malloc replacement is tested under
  python3-prometheus-client           # the OpenMetrics parser the statistics tests use (tests/stats)
  valgrind                            # memcheck runs (tests/valgrind) and its client-request headers
  clang libclang-rt-14-dev            # the sanitizer builds of make test, and make fuzz (libFuzzer)
)

# bdwgc's own tests run against nheap in make test (scripts/bdwgc-tests.sh), built from Debian's
# source package of the installed libgc: apt-get source needs a deb-src line for this suite.
have_deb_src() {
  grep -rqsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/
}
if ! have_deb_src; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "nheap: no deb-src line for apt (bdwgc's tests are built from Debian's source package);" >&2
    echo "nheap: as root, add one for $(. /etc/os-release && echo "$VERSION_CODENAME") and run apt-get update" >&2
    exit 1
  fi
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$codename" >/etc/apt/sources.list.d/nheap-deb-src.sources
  echo "nheap: added the deb-src line for $codename (bdwgc's tests)" >&2
  apt-get update -qq
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "nheap: missing Debian packages: ${missing[*]}" >&2
  echo "nheap: install them as root:  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "nheap: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

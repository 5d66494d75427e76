#!/bin/sh
# tests/numa-vm/run.sh BINARY NODES CACHE_DIR [ARG...]
#
# Proof on a real multi-node machine: boots Debian's stock kernel under QEMU (software
# emulation, no KVM needed) with NODES NUMA nodes (one CPU and 256 MiB each, distance 20
# between any two), runs the statically linked BINARY (with the ARGs: simple words) as the
# guest's one task, prints every console line that starts with "NHEAP-", and passes on its
# verdict: exit 0 when the guest's console says "NHEAP-NUMA: PASS", 1 when it does not,
# 77 (skipped, with the reason) when this machine cannot run the guest: qemu-system-x86_64,
# a static busybox or cpio missing, or no kernel image (NHEAP_NUMA_KERNEL, or one unpacked in
# CACHE_DIR from the package linux-image-amd64 depends on, which it downloads with apt-get
# the first time). The console goes to CACHE_DIR/console-NODES.log.
set -u
BIN=${1:?static test binary}
NODES=${2:?node count}
CACHE=${3:?cache directory}
shift 3
skip() { echo "numa-vm: $*: skipped"; exit 77; }

for tool in qemu-system-x86_64 busybox cpio gzip; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed (scripts/deps.sh installs it)"
done
BUSYBOX=$(command -v busybox)
ldd "$BUSYBOX" >/dev/null 2>&1 && skip "$BUSYBOX is not static (Debian's busybox-static is)"
mkdir -p "$CACHE" || skip "cannot make $CACHE"

KERNEL=${NHEAP_NUMA_KERNEL:-}
if [ -z "$KERNEL" ]; then
  KERNEL=$(ls "$CACHE"/kimg/boot/vmlinuz-* 2>/dev/null | head -n 1)
fi
if [ -z "$KERNEL" ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n 1)
  if [ -n "$pkg" ] && (cd "$CACHE" && timeout 600 apt-get download "$pkg" >/dev/null 2>&1); then
    dpkg-deb -x "$CACHE"/"$pkg"_*.deb "$CACHE/kimg" && rm -f "$CACHE"/"$pkg"_*.deb
    KERNEL=$(ls "$CACHE"/kimg/boot/vmlinuz-* 2>/dev/null | head -n 1)
  fi
fi
[ -n "$KERNEL" ] && [ -r "$KERNEL" ] || skip "no kernel image (set NHEAP_NUMA_KERNEL, or let apt-get download one)"

ROOT=$(mktemp -d) || exit 1
trap 'rm -rf "$ROOT" "$ROOT.cpio.gz"' EXIT
mkdir -p "$ROOT/bin" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
cp "$BUSYBOX" "$ROOT/bin/busybox"
cp "$BIN" "$ROOT/bin/test"
echo "$*" > "$ROOT/args"
cat > "$ROOT/init" <<'EOI'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "NHEAP-NUMA: guest nodes online: $(cat /sys/devices/system/node/online)"
/bin/test $(cat /args)
echo "NHEAP-NUMA: guest test exit $?"
poweroff -f
EOI
chmod +x "$ROOT/init"
(cd "$ROOT" && find . | cpio -o -H newc 2>/dev/null | gzip) > "$ROOT.cpio.gz"

set --   # from here on: QEMU's NUMA arguments
n=0
while [ "$n" -lt "$NODES" ]; do
  set -- "$@" -object "memory-backend-ram,id=m$n,size=256M" -numa "node,nodeid=$n,cpus=$n,memdev=m$n"
  n=$((n + 1))
done
i=0
while [ "$i" -lt "$NODES" ]; do
  j=$((i + 1))
  while [ "$j" -lt "$NODES" ]; do
    set -- "$@" -numa "dist,src=$i,dst=$j,val=20"
    j=$((j + 1))
  done
  i=$((i + 1))
done
LOG="$CACHE/console-$NODES.log"
timeout 600 qemu-system-x86_64 -accel tcg -machine q35 -cpu max -smp "$NODES" -m $((NODES * 256)) "$@" \
  -kernel "$KERNEL" -initrd "$ROOT.cpio.gz" -append "console=ttyS0 rdinit=/init quiet panic=-1" \
  -nographic -no-reboot < /dev/null 2>&1 | tr -d '\r' > "$LOG"
grep '^NHEAP-' "$LOG"
grep -q '^NHEAP-NUMA: PASS' "$LOG" && exit 0
echo "numa-vm: no PASS from the guest; its console: $LOG"
exit 1

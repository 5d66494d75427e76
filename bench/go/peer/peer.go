// Package peer is the report's side of the Go peers, as bench/gc_peer.h is for the C ones:
// Begin marks where the measured part starts (cycles, pauses and collection time count from
// there) and, with NH_BENCH_TIMELINE=path, samples the heap in use and the cycle count every
// 10 ms into path ("seconds MiB cycles" per line); End(check, format, args...) stops the
// sampler, writes the pauses with NH_BENCH_PAUSES=path (ms, one per line, in order) and prints
//
//	RESULT system=go check=<check> cycles=N pause_p50_ms=.. pause_p99_ms=.. pause_max_ms=..
//	  pauses=N [gc_ms=..] thp_mib=.. hugetlb_mib=.. pauses_exact=0|1 <format's pairs> go_version=..
//
// check is the workload's own result (NH_BENCH_WRONG_CHECK=1 adds one, as gc_peer.h does);
// thp_mib and hugetlb_mib are the process's transparent and hugetlb huge pages when the measured
// part ends (/proc/self/smaps_rollup).
//
// Pauses: with GODEBUG=gctrace=1 (the report sets it), pauses_exact=1: each cycle's two
// stop-the-world pauses (sweep termination and mark termination: A and C of the trace's
// "A+B+C ms clock") and gc_ms, the sum of its "X+Y/Z/W+V ms cpu" (stop-the-world CPU, assist,
// background and idle marking; each printed value taken as the middle of its step), for every
// cycle that ends after Begin (the trace's cycle N > the cycle count at Begin). The trace prints
// two significant digits, truncated (0.018, 0.12, 1.2, 12: steps of 1 µs to 1 ms); the runtime's
// exact total pause of each cycle (debug.ReadGCStats: a lock, no stop; read every 128 cycles,
// before its record of 256 rolls over, and at End) pins them down: each pause is the middle of
// what the trace and the total allow, so it is off by at most half the finer of the cycle's two
// steps (0.5 µs where either pause is under 0.1 ms), and a cycle's pauses add up to its exact
// total (a cycle whose mark termination restarted, the runtime's rare extra stop, gets that stop
// as a third pause, as the histogram has it).
// The trace is read at init: fd 2 becomes a pipe to a copy of this program (started with
// NH_PEER_TEE=1) that forwards every byte to the original stderr and the trace's lines back
// here; as a separate process it forwards everything, a crash's last words too.
// Without the trace (or if it cannot be read), pauses_exact=0: the pauses are runtime/metrics'
// /gc/pauses:seconds histogram, each its bucket's upper bound (up to 6.25% high), and there is
// no gc_ms (Go 1.19 has no metric of the collector's CPU time).
package peer

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	mu      sync.Mutex // Begin and End
	t0      time.Time
	cycles0 uint64
	hist0   *metrics.Float64Histogram
	stop    chan struct{}
	done    chan struct{}
)

func read(names ...string) []metrics.Sample {
	s := make([]metrics.Sample, len(names))
	for i, n := range names {
		s[i].Name = n
	}
	metrics.Read(s)
	return s
}

func cycles() uint64 { return read("/gc/cycles/total:gc-cycles")[0].Value.Uint64() }

func pauseHistogram() *metrics.Float64Histogram {
	return read("/gc/pauses:seconds")[0].Value.Float64Histogram()
}

// ---------------------------------------------------------------------------------------------
// The trace.

const teeEnv = "NH_PEER_TEE"

// A printed value of the trace (runtime.fmtNSAsMS): v ms, the true value in [v, v+step).
type printed struct{ v, step float64 }

// One cycle's line: its two pauses, its CPU time, and its exact total pause (ns; -1 unknown).
type cycle struct {
	a, c  printed
	cpuMS float64
	total int64
}

var (
	tracing  bool // the trace is read
	traceMu  sync.Mutex
	traced   = map[uint64]*cycle{}
	unpinned []uint64 // cycles whose exact total is not read yet
	gcStats  debug.GCStats
)

func init() {
	if os.Getenv(teeEnv) == "1" {
		tee()
		os.Exit(0)
	}
	if gctrace() {
		tracing = startTrace()
	}
}

// gctrace says whether GODEBUG turns the trace on (its last gctrace= setting wins).
func gctrace() bool {
	on := false
	for _, kv := range strings.Split(os.Getenv("GODEBUG"), ",") {
		if v := strings.TrimPrefix(strings.TrimSpace(kv), "gctrace="); v != strings.TrimSpace(kv) {
			n, err := strconv.Atoi(v)
			on = err == nil && n > 0
		}
	}
	return on
}

// startTrace makes fd 2 a pipe into the tee process, whose trace lines come back on another.
func startTrace() bool {
	var p [2]int
	if syscall.Pipe2(p[:], syscall.O_CLOEXEC) != nil {
		return false
	}
	const setPipeSize = 1031 // F_SETPIPE_SZ: room, so the runtime's prints never wait on the tee
	syscall.Syscall(syscall.SYS_FCNTL, uintptr(p[1]), setPipeSize, 1<<20)
	in, out := os.NewFile(uintptr(p[0]), "stderr-pipe"), os.NewFile(uintptr(p[1]), "stderr-pipe")
	back, backW, err := os.Pipe()
	if err != nil {
		in.Close()
		out.Close()
		return false
	}
	env := []string{teeEnv + "=1", "GOMAXPROCS=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") && !strings.HasPrefix(kv, "GOMAXPROCS=") &&
			!strings.HasPrefix(kv, teeEnv+"=") {
			env = append(env, kv)
		}
	}
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{os.Args[0] + " (stderr tee)"}, Env: env,
		Stdin: in, Stderr: os.Stderr, ExtraFiles: []*os.File{backW}}
	started := cmd.Start() == nil
	in.Close()
	backW.Close()
	if started && syscall.Dup3(p[1], 2, 0) != nil {
		started = false // the tee sees the end of its input and goes
	}
	out.Close()
	if !started {
		back.Close()
		return false
	}
	go readTrace(back)
	return true
}

// tee is the copy of this program that forwards fd 0 to fd 2 and sends the trace's lines to
// fd 3. Raw writes: a broken pipe is an error here, never a signal that ends it.
func tee() {
	buf := make([]byte, 64<<10)
	var line []byte
	toErr, toBack := true, true
	for {
		n, err := syscall.Read(0, buf)
		if err == syscall.EINTR {
			continue
		}
		if n <= 0 {
			return
		}
		if toErr && writeAll(2, buf[:n]) != nil {
			toErr = false // keep reading: the program must never block on its stderr
		}
		for rest := buf[:n]; len(rest) > 0; {
			i := indexByte(rest, '\n')
			if i < 0 {
				line = append(line, rest...)
				break
			}
			line = append(line, rest[:i+1]...)
			rest = rest[i+1:]
			if toBack && len(line) > 3 && string(line[:3]) == "gc " && writeAll(3, line) != nil {
				toBack = false
			}
			line = line[:0]
		}
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func readTrace(f *os.File) {
	s := bufio.NewScanner(f)
	for s.Scan() {
		n, c, ok := parseTrace(s.Text())
		if !ok {
			continue
		}
		traceMu.Lock()
		traced[n] = c
		unpinned = append(unpinned, n)
		if len(unpinned) >= 128 { // long before the runtime's 256 totals roll over
			pinLocked()
		}
		traceMu.Unlock()
	}
}

// parseTrace reads "gc N @Ts P%: A+B+C ms clock, X+Y/Z/W+V ms cpu, ..." (runtime/mgc.go,
// gcMarkTermination), forced cycles' " (forced)" too.
func parseTrace(line string) (uint64, *cycle, bool) {
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "gc" {
		return 0, nil, false
	}
	n, err := strconv.ParseUint(f[1], 10, 64)
	i, j, k := strings.Index(line, "%: "), strings.Index(line, " ms clock, "), strings.Index(line, " ms cpu")
	if err != nil || i < 0 || j < i || k < j {
		return 0, nil, false
	}
	clock := strings.Split(line[i+3:j], "+")
	cpu := strings.FieldsFunc(line[j+len(" ms clock, "):k], func(r rune) bool { return r == '+' || r == '/' })
	if len(clock) != 3 || len(cpu) != 5 {
		return 0, nil, false
	}
	c := &cycle{total: -1}
	var ok1, ok2 bool
	c.a, ok1 = parsePrinted(clock[0])
	c.c, ok2 = parsePrinted(clock[2])
	if !ok1 || !ok2 {
		return 0, nil, false
	}
	for _, s := range cpu {
		p, ok := parsePrinted(s)
		if !ok {
			return 0, nil, false
		}
		c.cpuMS += p.v + p.step/2
	}
	return n, c, true
}

// parsePrinted reads runtime.fmtNSAsMS: "0" (under 1 µs), two significant digits truncated
// with at most three decimals ("0.018", "0.12", "1.2"), or whole ms from 10 ms ("12").
func parsePrinted(s string) (printed, bool) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return printed{}, false
	}
	step := 1.0
	if d := strings.IndexByte(s, '.'); d >= 0 {
		step = math.Pow(10, -float64(len(s)-d-1))
	} else if v == 0 {
		step = 0.001
	}
	return printed{v, step}, true
}

// pinLocked records the runtime's exact total pause of every unpinned cycle it still keeps.
func pinLocked() {
	debug.ReadGCStats(&gcStats)
	for _, n := range unpinned {
		if back := uint64(gcStats.NumGC) - n; n <= uint64(gcStats.NumGC) && back < uint64(len(gcStats.Pause)) {
			traced[n].total = int64(gcStats.Pause[back])
		}
	}
	unpinned = unpinned[:0]
}

// pauses gives a cycle's pauses, ms: the middle of what the printed values and the exact
// total allow.
func (c *cycle) pauses() []float64 {
	a, cc := c.a.v+c.a.step/2, c.c.v+c.c.step/2
	if c.total < 0 {
		return []float64{a, cc}
	}
	s := float64(c.total) / 1e6
	if s >= c.a.v+c.a.step+c.c.v+c.c.step { // more stopped than the two: a restarted mark termination
		return []float64{a, cc, s - a - cc}
	}
	lo, hi := math.Max(c.a.v, s-c.c.v-c.c.step), math.Min(c.a.v+c.a.step, s-c.c.v)
	if lo > hi {
		return []float64{a, cc}
	}
	a = (lo + hi) / 2
	return []float64{a, s - a}
}

// tracedPauses waits (2 s at most) for the trace of cycles from..to, and gives their pauses
// and CPU time; false if some never came.
func tracedPauses(from, to uint64) ([]float64, float64, bool) {
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		traceMu.Lock()
		missing := uint64(0)
		for n := from; n <= to; n++ {
			if traced[n] == nil {
				missing++
			}
		}
		if missing == 0 {
			pinLocked()
			var ms []float64
			var cpu float64
			for n := from; n <= to; n++ {
				ms = append(ms, traced[n].pauses()...)
				cpu += traced[n].cpuMS
			}
			traceMu.Unlock()
			return ms, cpu, true
		}
		traceMu.Unlock()
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "peer: the trace of %d of cycles %d..%d never came: pauses from the histogram\n",
				missing, from, to)
			return nil, 0, false
		}
	}
}

// ---------------------------------------------------------------------------------------------
// The report's side.

func stopSampler() {
	if stop != nil {
		close(stop)
		<-done
		stop, done = nil, nil
	}
}

// Begin starts the measured part (again, if called again).
func Begin() {
	mu.Lock()
	defer mu.Unlock()
	stopSampler()
	t0 = time.Now()
	cycles0 = cycles()
	hist0 = pauseHistogram()
	path := os.Getenv("NH_BENCH_TIMELINE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	stop, done = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		defer f.Close()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			s := read("/memory/classes/heap/objects:bytes", "/gc/cycles/total:gc-cycles")
			fmt.Fprintf(f, "%.3f %.2f %d\n", time.Since(t0).Seconds(), float64(s[0].Value.Uint64())/(1<<20),
				s[1].Value.Uint64())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}(stop, done)
}

// hugePages gives the process's transparent and hugetlb huge pages now, MiB.
func hugePages() (thp, hugetlb float64) {
	f, err := os.Open("/proc/self/smaps_rollup")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		kib, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "AnonHugePages:":
			thp += kib / 1024
		case "Private_Hugetlb:", "Shared_Hugetlb:":
			hugetlb += kib / 1024
		}
	}
	return thp, hugetlb
}

// histogramPauses gives the pauses since Begin from the histogram, each its bucket's upper bound.
func histogramPauses() []float64 {
	h := pauseHistogram()
	var ms []float64
	for i, c := range h.Counts {
		if hist0 != nil && i < len(hist0.Counts) {
			c -= hist0.Counts[i]
		}
		upper := h.Buckets[i+1]
		if math.IsInf(upper, 1) {
			upper = h.Buckets[i]
		}
		for ; c > 0; c-- {
			ms = append(ms, upper*1e3)
		}
	}
	return ms
}

// End finishes the measured part and prints the RESULT line with the workload's check, then
// format's pairs.
func End(check uint64, format string, args ...interface{}) {
	mu.Lock()
	defer mu.Unlock()
	stopSampler()
	n := cycles() - cycles0
	var ms []float64
	gcMS, exact := math.NaN(), false
	if tracing {
		ms, gcMS, exact = tracedPauses(cycles0+1, cycles0+n)
	}
	if !exact {
		ms, gcMS = histogramPauses(), math.NaN()
	}
	thp, hugetlb := hugePages()
	if path := os.Getenv("NH_BENCH_PAUSES"); path != "" {
		if f, err := os.Create(path); err == nil {
			w := bufio.NewWriter(f)
			for _, p := range ms {
				fmt.Fprintf(w, "%.4f\n", p)
			}
			w.Flush()
			f.Close()
		}
	}
	sort.Float64s(ms)
	var p50, p99, max float64
	if k := len(ms); k > 0 {
		p50, p99, max = ms[(k-1)/2], ms[(k*99+99)/100-1], ms[k-1]
	}
	if strings.HasPrefix(os.Getenv("NH_BENCH_WRONG_CHECK"), "1") {
		check++
	}
	fmt.Printf("RESULT system=go check=%d cycles=%d pause_p50_ms=%.4f pause_p99_ms=%.4f pause_max_ms=%.4f pauses=%d",
		check, n, p50, p99, max, len(ms))
	if !math.IsNaN(gcMS) {
		fmt.Printf(" gc_ms=%.1f", gcMS)
	}
	exactFlag := 0
	if exact {
		exactFlag = 1
	}
	fmt.Printf(" thp_mib=%.1f hugetlb_mib=%.1f pauses_exact=%d", thp, hugetlb, exactFlag)
	if format != "" {
		fmt.Printf(" "+format, args...)
	}
	fmt.Printf(" go_version=%s\n", runtime.Version())
}
